"""The desktop wallet's tests: Qt offscreen, pages built on real services.

QT_QPA_PLATFORM is set before anything imports Qt: without a display, Qt's default xcb
platform aborts the process. The live services (anvil + escrow, market, tracker/DHT, two
proxies) are tests.wallet.conftest's, started once per module. Windows are built with
`build_window` and an injected fast-KDF account store; the Twisted reactor is never
installed in the test process (tests/gui/test_app.py runs the real bin/wallet instead).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from cpchain.config import load_config
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.qt.app import build_window
from cpchain.wallet.qt.window import MainWindow
from tests.proxy.conftest import chain  # noqa: F401
from tests.wallet.conftest import Services, password, services  # noqa: F401

__all__ = ["WindowFactory", "fresh_home", "password"]

WindowFactory = Callable[..., MainWindow]


def fresh_home(live: Services, name: str, *, market_url: str | None = None) -> Path:
    """A wallet home with the services' config and no account in it."""
    template = live.home("buyer", market_url=market_url)
    home = live.base / f"gui-{name}"
    home.mkdir(exist_ok=True)
    text = (template / "cpchain.toml").read_text().replace(str(template), str(home))
    (home / "cpchain.toml").write_text(text)
    return home


@pytest.fixture
def make_window(qtbot: QtBot) -> Iterator[WindowFactory]:
    """Build a shown main window on a wallet home (closed, and its wallet locked, afterwards)."""
    built: list[MainWindow] = []

    def make(home: Path, *, automate: bool = False) -> MainWindow:
        config = load_config(home / "cpchain.toml")
        window = build_window(config, store=AccountStore(config.path("account.keystore_dir"), fast_kdf=True),
                              automate=automate)  # fmt: skip
        window.session.proxy_timeout = 60.0
        qtbot.addWidget(window)
        window.show()
        built.append(window)
        return window

    yield make
    for window in built:
        window.session.shutdown(timeout=10)
        window.worker.shutdown(wait=True)


def party_home(live: Services, party: str, name: str, *, market_url: str | None = None) -> Path:
    """A copy of the world account `party`'s wallet home (keystore and config), its own database."""
    import shutil

    template = live.home(party)
    home = live.base / f"gui-{name}"
    if not home.exists():
        shutil.copytree(template / "keystore", home / "keystore")
    text = (template / "cpchain.toml").read_text().replace(str(template), str(home))
    if market_url is not None:
        text = text.replace(live.market.url, market_url)
    (home / "cpchain.toml").write_text(text)
    return home


def unlock_window(qtbot: QtBot, window: MainWindow, party: str, timeout: int = 30_000) -> None:
    """Unlock the window's only account with the world account `party`'s password, through the widgets."""
    from PyQt5.QtCore import Qt

    page = window.accounts
    qtbot.waitUntil(lambda: page.unlock_button.isEnabled() and window.worker.pending == 0, timeout=timeout)
    qtbot.keyClicks(page.unlock_password, password(party))
    qtbot.mouseClick(page.unlock_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.session.wallet is not None, timeout=timeout)

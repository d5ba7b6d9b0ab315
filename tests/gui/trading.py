"""Steps shared by the order and purchased-data tests: unlock a role's wallet in a window,
list a product as its seller, buy it through the product page."""

from __future__ import annotations

import secrets
from pathlib import Path

from PyQt5.QtCore import Qt
from pytestqt.qtbot import QtBot

from cpchain.wallet.db import ProductRecord, UploadRecord
from cpchain.wallet.qt.window import MainWindow
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.gui.conftest import WindowFactory
from tests.wallet.conftest import Services, password, random_file

WAIT = 30_000


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def banner(qtbot: QtBot, window: MainWindow, kind: str, contains: str) -> str:
    qtbot.waitUntil(lambda: window.banner.kind == kind and contains in window.banner.text(), timeout=WAIT)
    return window.banner.text()


def notice(qtbot: QtBot, window: MainWindow, kind: str, order_id: int, contains: str) -> str:
    """Wait for the window's notification of `kind` about the order containing `contains`; its text."""
    feed = window.feed

    def found() -> list[str]:
        return [n.text for n in feed.notices if n.kind == kind and n.order_id == order_id and contains in n.text]

    qtbot.waitUntil(lambda: bool(found()), timeout=WAIT)
    return found()[0]


def unlock(qtbot: QtBot, make_window: WindowFactory, services: Services, name: str, *,
           automate: bool) -> MainWindow:  # fmt: skip
    """A window on the role's wallet home, unlocked through the account page."""
    window = make_window(services.home(name), automate=automate)
    window.session.automation_interval = 0.3
    page = window.accounts
    qtbot.waitUntil(lambda: bool(page.account_combo.currentData()) and page.unlock_button.isEnabled(), timeout=WAIT)
    qtbot.keyClicks(page.unlock_password, password(name))
    click(qtbot, page.unlock_button)
    qtbot.waitUntil(lambda: window.session.wallet is not None, timeout=WAIT)
    opened = window.session.wallet
    assert opened is not None
    opened.ctx.proxy_client.retry_delay = 0.05
    return window


Listed = tuple[ProductRecord, UploadRecord, Path]


def list_product(services: Services, tmp_path: Path, size: int, price: int = ETHER) -> Listed:
    """The seller publishes a random file (through the core): (product, upload, source file)."""
    seller = Seller(services.open("seller"))
    source = random_file(tmp_path / f"data-{secrets.token_hex(3)}.bin", size)
    upload = seller.upload(source)
    product = seller.publish(upload.id, title=f"Readings {secrets.token_hex(3)}", price=price, category="Weather")
    return product, upload, source


def buy(qtbot: QtBot, window: MainWindow, market_hash: str) -> int:
    """Buy the product through the product page (best proxies); the new order's id."""
    window.show_product(market_hash)
    product = window.product
    qtbot.waitUntil(lambda: product.view is not None and product.buy_button.isEnabled(), timeout=WAIT)
    click(qtbot, product.buy_button)
    qtbot.waitUntil(lambda: product.review_balance.text().endswith("CPC"), timeout=WAIT)
    click(qtbot, product.pay_button)
    text = banner(qtbot, window, "info", "placed")
    return int(text.split()[1])


def show(qtbot: QtBot, window: MainWindow, title: str) -> None:
    """Open a page by clicking its navigation item."""
    for i in range(window.nav.count()):
        item = window.nav.item(i)
        if item is not None and item.text() == title:
            qtbot.mouseClick(window.nav.viewport(), Qt.MouseButton.LeftButton,
                             pos=window.nav.visualItemRect(item).center())  # fmt: skip
            return
    raise AssertionError(f"no page {title!r} in the navigation")

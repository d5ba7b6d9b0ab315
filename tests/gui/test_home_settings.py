"""Home and Settings on live services, driven through their widgets: Home shows the seller's
balance, open orders, listings, the latest order and the newest products from the chain and
the market; Settings saves the endpoints to the user's config file (atomically, other keys
kept), refuses a bad URL with a message in the window, and is reachable while locked."""

from __future__ import annotations

import tomllib
from pathlib import Path

from PyQt5.QtCore import Qt
from pytestqt.qtbot import QtBot

from cpchain.config import load_config
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.funds import format_amount
from cpchain.wallet.qt.window import MainWindow
from tests.chain.conftest import ETHER
from tests.gui.conftest import WindowFactory, party_home, unlock_window
from tests.wallet.conftest import Services, random_file

WAIT = 30_000


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def banner(qtbot: QtBot, window: MainWindow, kind: str, contains: str) -> str:
    qtbot.waitUntil(lambda: window.banner.kind == kind and contains in window.banner.text(), timeout=WAIT)
    return window.banner.text()


def test_home_shows_live_data(services: Services, make_window: WindowFactory, qtbot: QtBot, tmp_path: Path) -> None:
    window = make_window(party_home(services, "seller", "home"))
    unlock_window(qtbot, window, "seller")
    opened = window.session.wallet
    assert opened is not None
    upload = opened.seller.upload(random_file(tmp_path / "air.csv", 20_000))
    record = opened.seller.publish(upload.id, title="Air quality, hourly", price=ETHER, category="Environment",
                                   tags=("air", "pm25"))  # fmt: skip
    order = Buyer(services.open("buyer")).buy(record.market_hash)

    window.show_page(window.home)
    home = window.home
    assert window.current_page() is home
    qtbot.waitUntil(lambda: home.overview is not None and home.showcase is not None, timeout=WAIT)
    balance = services.chain.world.w3.eth.get_balance(opened.address)
    assert home.values["balance"].text() == format_amount(balance, 4)
    assert home.values["selling"].text() == "1" and home.values["buying"].text() == "0"
    assert home.values["listings"].text() == str(len(opened.seller.market_products()))
    first = home.activity_list.item(0).text()
    assert first.startswith(f"Order {order.order_id} (sold, 1 CPC): “Air quality, hourly”") and "placed" in first
    titles = [home.products.item(r, 0).text() for r in range(home.products.rowCount())]
    assert titles[0] == "Air quality, hourly"
    assert "#air (1)" in home.tags_label.text() and "product(s) on the market" in home.market_label.text()
    home.products.selectRow(0)
    click(qtbot, home.open_button)
    assert window.current_page() is window.product
    qtbot.waitUntil(lambda: window.product.title_label.text() == "Air quality, hourly", timeout=WAIT)


def test_settings_saves_checked_endpoints(services: Services, make_window: WindowFactory, qtbot: QtBot) -> None:
    home_dir = party_home(services, "seller", "settings")
    path = home_dir / "cpchain.toml"
    window = make_window(home_dir)
    nav = [window.nav.item(i).text() for i in range(window.nav.count()) if not window.nav.item(i).isHidden()]
    assert "Settings" in nav and window.session.wallet is None  # reachable while locked
    window.show_page(window.settings)
    page = window.settings
    assert window.current_page() is page
    assert page.market_url.text() == services.market.url and page.chain_url.text() == services.chain.anvil.url
    assert page.tracker.text() == f"{services.tracker[0]}:{services.tracker[1]}"
    assert str(path) in page.where_label.text() and "next time an account is unlocked" in page.where_label.text()

    before = path.read_text()
    for field, text, message in ((page.market_url, "market.example", "Market URL must be an http or https URL"),
                                 (page.chain_url, "ftp://node", "Chain node URL must be"),
                                 (page.tracker, "127.0.0.1", "Proxy tracker must be host:port")):  # fmt: skip
        original = field.text()
        field.setText(text)
        click(qtbot, page.save_button)
        assert message in banner(qtbot, window, "error", "Settings not saved")
        assert path.read_text() == before and window.session.config.get("market.market_url") == services.market.url
        field.setText(original)

    page.market_url.setText("http://127.0.0.1:18083")
    page.storage_default.setCurrentIndex(page.storage_default.findData("ipfs"))
    page.ipfs_api.setText("http://127.0.0.1:15001")
    click(qtbot, page.save_button)
    assert "apply at the next unlock" in banner(qtbot, window, "info", "Settings saved")
    saved = tomllib.loads(path.read_text())
    assert saved["market"]["market_url"] == "http://127.0.0.1:18083"
    assert saved["wallet"]["storage"]["default"] == "ipfs" and saved["wallet"]["storage"]["ipfs"]["api"] == \
        "http://127.0.0.1:15001"  # fmt: skip
    assert saved["chain"]["registrar_json"] == str(services.chain.registrar)  # other keys kept
    reloaded = load_config(path)
    assert reloaded.get("market.market_url") == "http://127.0.0.1:18083"
    assert window.session.config.get("market.market_url") == "http://127.0.0.1:18083"  # used at the next unlock
    assert not list(home_dir.glob(".cpchain.toml-*"))  # no temp file left behind

    # Revert: the form shows the file again.
    page.market_url.setText("http://elsewhere:1")
    click(qtbot, page.revert_button)
    assert page.market_url.text() == "http://127.0.0.1:18083"
    assert page.storage_default.currentData() == "ipfs"

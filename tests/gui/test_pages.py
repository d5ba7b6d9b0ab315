"""The pages on live services, driven through their widgets: a new account is created,
backed up, unlocked, funded, sends CPC, searches the market and buys a product through a
chosen proxy; and the bad paths (weak or wrong password, no funds, market down) end in a
message in the window."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from PyQt5.QtCore import Qt
from pytestqt.qtbot import QtBot

from cpchain.crypto.keystore import BACKUP_TYPE
from cpchain.types import OrderState
from cpchain.wallet.automation import Automation
from cpchain.wallet.qt.window import MainWindow
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.gui.conftest import WindowFactory, fresh_home
from tests.gui.trading import show
from tests.wallet.conftest import Services, random_file

GOOD_PASSWORD = "correct horse 42"
WAIT = 30_000


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def idle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.worker.pending == 0, timeout=WAIT)


def banner(qtbot: QtBot, window: MainWindow, kind: str, contains: str) -> str:
    qtbot.waitUntil(lambda: window.banner.kind == kind and contains in window.banner.text(), timeout=WAIT)
    return window.banner.text()


LOCKED_PAGES = ["Account", "Settings"]  # settings apply at the next unlock: reachable while locked
UNLOCKED_PAGES = ["Account", "Home", "Wallet", "Market", "Publish", "My data", "Purchased data", "Orders", "Settings"]


def visible_pages(window: MainWindow) -> list[str]:
    return [window.nav.item(i).text() for i in range(window.nav.count()) if not window.nav.item(i).isHidden()]


def create_and_unlock(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> str:
    page = window.accounts
    idle(qtbot, window)
    assert "No account yet" in page.state_label.text()
    assert visible_pages(window) == LOCKED_PAGES
    qtbot.keyClicks(page.new_password, "short1")
    assert not page.create_button.isEnabled() and "at least 10 characters" in page.rules_label.text()
    page.new_password.clear()
    qtbot.keyClicks(page.new_password, GOOD_PASSWORD)
    qtbot.keyClicks(page.new_repeat, GOOD_PASSWORD + "x")
    assert not page.create_button.isEnabled() and "both entries the same" in page.rules_label.text()
    page.new_repeat.clear()
    qtbot.keyClicks(page.new_repeat, GOOD_PASSWORD)
    assert page.create_button.isEnabled()
    click(qtbot, page.create_button)
    banner(qtbot, window, "info", "created")
    idle(qtbot, window)
    address = page.account_combo.currentData()
    assert address and address in window.banner.text()

    # Back up keystore and encryption key together.
    backup = tmp_path / "backup.json"
    page.backup_path.setText(str(backup))
    click(qtbot, page.backup_button)
    banner(qtbot, window, "info", "Backup of")
    document = json.loads(backup.read_text())
    assert document["type"] == BACKUP_TYPE and document["address"] == address
    assert document["keystore"] and document["encryption_key"]

    # A wrong password leaves the wallet locked, with the reason in the window.
    qtbot.keyClicks(page.unlock_password, "not the password 1")
    click(qtbot, page.unlock_button)
    assert "wrong password" in banner(qtbot, window, "error", "Unlock failed")
    assert window.session.wallet is None and visible_pages(window) == LOCKED_PAGES

    page.unlock_password.clear()
    qtbot.keyClicks(page.unlock_password, GOOD_PASSWORD)
    click(qtbot, page.unlock_button)
    qtbot.waitUntil(lambda: window.session.wallet is not None, timeout=WAIT)
    assert window.current_page() is window.wallet
    assert visible_pages(window) == UNLOCKED_PAGES
    return str(address)


def test_account_wallet_market_and_buying(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                          tmp_path: Path) -> None:  # fmt: skip
    window = make_window(fresh_home(services, "alice"))
    address = create_and_unlock(qtbot, window, tmp_path)

    # Wallet: an empty account, its QR code; sending without funds is refused before signing.
    wallet = window.wallet
    idle(qtbot, window)
    assert wallet.balance_label.text() == "0 CPC"
    assert wallet.address_label.text() == address and not wallet.qr_label.pixmap().isNull()
    assert wallet.history_label.text() == "No transactions yet."
    other = services.chain.world.address("other")
    qtbot.keyClicks(wallet.to_field, other)
    qtbot.keyClicks(wallet.amount_field, "1")
    click(qtbot, wallet.review_button)
    assert "cannot pay" in banner(qtbot, window, "error", "Cannot send")
    assert wallet.review_box.isHidden()

    # Funded (the test is the faucet): the balance and the history show it.
    services.chain.world.bank.send_value(address, 100 * ETHER)
    click(qtbot, wallet.refresh_button)
    qtbot.waitUntil(lambda: wallet.balance_label.text() == "100 CPC", timeout=WAIT)
    idle(qtbot, window)
    assert wallet.history.rowCount() == 1 and wallet.history.item(0, 1).text() == "Received"
    assert wallet.history.item(0, 3).text() == "+100 CPC"

    # Send: fee and total shown before confirming.
    wallet.amount_field.clear()
    qtbot.keyClicks(wallet.amount_field, "1.5")
    click(qtbot, wallet.review_button)
    qtbot.waitUntil(lambda: not wallet.review_box.isHidden(), timeout=WAIT)
    assert wallet.review_to.text() == other and wallet.review_amount.text() == "1.5 CPC"
    assert "21000 gas" in wallet.review_fee.text()
    before = services.chain.world.balance("other")
    click(qtbot, wallet.confirm_button)
    banner(qtbot, window, "info", "Sent 1.5 CPC")
    assert services.chain.world.balance("other") == before + 3 * ETHER // 2
    idle(qtbot, window)
    assert wallet.history.rowCount() == 2 and wallet.history.item(0, 1).text() == "Sent"
    assert wallet.history.item(0, 5).text() == "confirmed" and wallet.history.item(0, 6).text().startswith("0x")

    # A seller lists products (through the core).
    sctx = services.open("seller")
    seller = Seller(sctx)
    tag = secrets.token_hex(3)
    titles = {}
    for i, (category, price) in enumerate([("Weather", 3), ("Weather", 2), ("Finance", 1)]):
        upload = seller.upload(random_file(tmp_path / f"data{i}.csv", 50_000))
        record = seller.publish(upload.id, title=f"Readings {tag} {i}", price=price * ETHER, category=category,
                                description=f"Sensor readings, set {i}")  # fmt: skip
        titles[record.market_hash] = record.title

    # Market: keyword, category filter, sorting, pages.
    show(qtbot, window, "Market")
    market = window.market
    assert window.current_page() is market
    market.page_size = 2
    qtbot.keyClicks(market.keyword, f"Readings {tag}")
    market.sort.setCurrentIndex(market.sort.findData("price"))
    click(qtbot, market.search_button)
    qtbot.waitUntil(lambda: market.page_label.text() == "Page 1 of 2 (3 products)", timeout=WAIT)
    assert [market.table.item(r, 0).text() for r in range(2)] == [f"Readings {tag} 2", f"Readings {tag} 1"]
    assert market.table.item(0, 3).text() == "1 CPC" and market.table.item(0, 1).text() == "Finance"
    assert not market.prev_button.isEnabled()
    click(qtbot, market.next_button)
    qtbot.waitUntil(lambda: market.page_label.text().startswith("Page 2 of 2"), timeout=WAIT)
    assert market.table.rowCount() == 1 and market.table.item(0, 0).text() == f"Readings {tag} 0"
    market.category.setCurrentIndex(market.category.findData("Weather"))
    click(qtbot, market.search_button)
    qtbot.waitUntil(lambda: market.page_label.text() == "Page 1 of 1 (2 products)", timeout=WAIT)
    market.min_price.setText("2.5")
    click(qtbot, market.search_button)
    qtbot.waitUntil(lambda: market.page_label.text() == "Page 1 of 1 (1 product)", timeout=WAIT)
    assert market.table.item(0, 0).text() == f"Readings {tag} 0"

    # Product detail: verified listing, proxies with deposit and credit, no reviews yet; buy.
    market.table.selectRow(0)
    click(qtbot, market.open_button)
    product = window.product
    assert window.current_page() is product
    qtbot.waitUntil(lambda: product.title_label.text() == f"Readings {tag} 0", timeout=WAIT)
    qtbot.waitUntil(lambda: product.buy_button.isEnabled(), timeout=WAIT)
    assert product.fields["price"].text() == "3 CPC" and product.fields["category"].text() == "Weather"
    assert "signed by the seller" in product.fields["verified"].text()
    assert product.reviews_list.item(0).text() == "No reviews yet."
    proxies = [product.proxy_combo.itemText(i) for i in range(product.proxy_combo.count())]
    assert len(proxies) == 3 and proxies[0].startswith("Best available")
    assert all("deposit 5 CPC" in p and "no ratings yet" in p for p in proxies[1:])
    product.proxy_combo.setCurrentIndex(2)
    chosen = product.proxy_combo.currentData()
    click(qtbot, product.buy_button)
    qtbot.waitUntil(lambda: product.review_balance.text().endswith("CPC"), timeout=WAIT)
    assert product.review_price.text().startswith("3 CPC")
    assert product.review_fee.text() == "up to 0.06 CPC (0.03 CPC to each proxy)"
    click(qtbot, product.pay_button)
    text = banner(qtbot, window, "info", "placed")
    order_id = int(text.split()[1])
    order = services.chain.world.escrow.order(order_id)
    assert order.terms.buyer == address and order.terms.proxy == chosen and order.terms.price == 3 * ETHER
    qtbot.waitUntil(lambda: product.orders_list.item(0).text().startswith(f"Order {order_id}: placed"), timeout=WAIT)
    assert not product.buy_button.isEnabled() and "open order" in product.buy_note.text()

    # The seller's automation accepts and delivers; the page follows the order's state.
    auto = Automation(sctx)
    for _ in range(100):
        auto.step()
        if services.chain.world.escrow.status(order_id).state is OrderState.PROXY_FETCHED:
            break
    product.activate()
    qtbot.waitUntil(lambda: "ready to receive" in product.orders_list.item(0).text(), timeout=WAIT)

    # Locking hides every page but the account page.
    click(qtbot, window.lock_button)
    assert window.session.wallet is None and visible_pages(window) == LOCKED_PAGES
    assert window.current_page() is window.accounts


def test_market_down_is_shown_in_the_window(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                            tmp_path: Path) -> None:  # fmt: skip
    dead = f"http://127.0.0.1:{services.chain.nobody}"
    window = make_window(fresh_home(services, "bob", market_url=dead))
    create_and_unlock(qtbot, window, tmp_path)
    window.show_page(window.market)
    assert "unreachable" in banner(qtbot, window, "error", "Search failed")
    assert window.market.search_button.isEnabled()

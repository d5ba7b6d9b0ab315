"""The orders centre on live services, both wallets running their automation: the seller's
window is notified of the new order and delivers it, the buyer's receives it in the
background (progress reported to its purchased-data page), the deadline counts down on the
chain's clock, each button is enabled exactly when the lifecycle allows its action (the
others say why), and a dispute raised from the buyer's window reaches the seller's."""

from __future__ import annotations

import re
from pathlib import Path

from pytestqt.qtbot import QtBot

from cpchain.types import OrderState
from cpchain.wallet.qt.widgets import when
from tests.gui.conftest import WindowFactory
from tests.gui.trading import WAIT, banner, buy, click, list_product, notice, show, unlock
from tests.wallet.conftest import Services


def test_live_orders_actions_and_a_dispute(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                           tmp_path: Path) -> None:  # fmt: skip
    seller_window = unlock(qtbot, make_window, services, "seller", automate=True)
    window = unlock(qtbot, make_window, services, "buyer", automate=True)
    progress: list[tuple[int, str, int, int]] = []
    window.session.receive_progress.connect(lambda *args: progress.append(args))
    product, upload, _source = list_product(services, tmp_path, 3 << 20)
    escrow = services.chain.world.escrow

    order_id = buy(qtbot, window, product.market_hash)
    show(qtbot, window, "Orders")
    page = window.orders
    page.select(order_id)
    qtbot.waitUntil(lambda: page.selected() is not None, timeout=WAIT)

    # The seller's window: notified, and its automation accepts and delivers.
    assert notice(qtbot, seller_window, "order", order_id, f"New order {order_id} for “{product.title}”")
    seller_page = seller_window.orders
    show(qtbot, seller_window, "Orders")
    seller_page.select(order_id)
    qtbot.waitUntil(lambda: seller_page.selected() is not None, timeout=WAIT)
    assert seller_page.table.item(0, 1).text() == "Seller" and seller_page.table.item(0, 2).text() == product.title
    for key in ("confirm", "dispute", "withdraw"):
        assert seller_page.buttons[key].toolTip() == "Only the buyer can do this."

    # The buyer's automation receives in the background, reporting its progress.
    assert notice(qtbot, window, "delivery", order_id, "Delivery ready")
    qtbot.waitUntil(lambda: escrow.status(order_id).state is OrderState.PROXY_DELIVERED, timeout=WAIT)
    assert notice(qtbot, window, "delivery", order_id, "downloaded, verified and decrypted")
    assert [p for p in progress if p[1] == "download"][-1][2:] == (upload.cipher_size, upload.cipher_size)
    assert progress[-1][1] == "decrypt"

    # The buyer's orders centre: live state, the chain's deadline counting down, the actions allowed.
    page.feed.refresh()
    qtbot.waitUntil(lambda: page.buttons["dispute"].isEnabled(), timeout=WAIT)
    end_time = escrow.status(order_id).end_time
    deadline = page.fields["deadline"].text()
    assert deadline.startswith(when(end_time)) and deadline.endswith("left")
    row = next(r for r in range(page.table.rowCount()) if page.table.item(r, 0).text() == str(order_id))
    assert page.table.item(row, 4).text() == "delivered: check the data, then confirm or dispute"
    first = page.table.item(row, 5).text()
    # the 24 h the order allows, begun (exactly 24 h when every block so far fell in one second)
    assert re.fullmatch(r"23 h \d\d min left|1 d 0 h left", first), first
    page.table.item(row, 5).setText("")
    qtbot.waitUntil(lambda: page.table.item(row, 5).text() != "", timeout=3000)  # the countdown ticks
    assert page.table.item(row, 7).text() == "data received and verified"
    assert page.buttons["confirm"].isEnabled()
    assert page.buttons["accept"].toolTip() == "Only the seller can do this."
    assert page.buttons["withdraw"].toolTip() == "Not possible while the order is delivered: check the data, " \
                                                 "then confirm or dispute."  # fmt: skip
    assert page.buttons["claim"].toolTip() == f"Possible once the deadline passes ({when(end_time)})."
    assert page.buttons["agree"].toolTip() == "Not possible while the order is delivered: check the data, " \
                                              "then confirm or dispute."  # fmt: skip
    assert not any(page.buttons[k].isEnabled() for k in ("accept", "deliver", "withdraw", "claim", "agree"))

    # Dispute, after the inline question (Cancel first: nothing happens).
    click(qtbot, page.buttons["dispute"])
    assert page.confirm_bar.isVisible() and "proxy rules first" in page.confirm_bar.question.text()
    click(qtbot, page.confirm_bar.no_button)
    assert not page.confirm_bar.isVisible() and escrow.status(order_id).state is OrderState.PROXY_DELIVERED
    click(qtbot, page.buttons["dispute"])
    click(qtbot, page.confirm_bar.yes_button)
    banner(qtbot, window, "info", f"Order {order_id}: disputed")
    assert escrow.status(order_id).state is OrderState.DISPUTED
    assert notice(qtbot, window, "dispute", order_id, "You disputed")

    # The seller's window is told; the verdict is the proxy's to give first.
    assert notice(qtbot, seller_window, "dispute", order_id, f"The buyer disputed order {order_id}")
    qtbot.waitUntil(lambda: seller_page.fields["state"].text().startswith("disputed"), timeout=WAIT)
    assert seller_page.fields["state"].text().endswith("no verdict yet")
    for key in ("agree", "appeal"):
        button = seller_page.buttons[key]
        assert not button.isEnabled() and button.toolTip() == "The proxy has not ruled on the dispute yet."
    dispute_end = escrow.status(order_id).dispute_end
    assert seller_page.fields["deadline"].text().startswith(when(dispute_end))
    assert seller_window.feed.unread >= 2
    click(qtbot, seller_window.feed.button)
    assert seller_window.feed.panel.isVisible() and seller_window.feed.unread == 0
    assert seller_window.feed.button.text() == "Notifications"
    assert "disputed" in seller_window.feed.list.item(0).text()

"""The purchased-data page on live services: a file bought through the product page is
delivered by the seller's automation (the seller's window notified of the new order), the
buyer's window is told the delivery is ready, the download fails while the proxy cannot be
reached and then resumes from the interrupted part with its progress on the bar, the hash
is verified, the file and its folder open through the hook, the delivery is confirmed (the
order completed in the orders centre, the seller notified of the sale), a review is
posted, and a stale action on the completed order ends in a message in the window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PyQt5.QtCore import QUrl
from pytestqt.qtbot import QtBot

from cpchain.proxy.protocol import Endpoint
from cpchain.types import OrderState
from cpchain.wallet.qt.pages import purchases as purchases_module
from cpchain.wallet.rules import download_names
from tests.gui.conftest import WindowFactory
from tests.gui.trading import WAIT, banner, buy, click, list_product, notice, show, unlock
from tests.wallet.conftest import Services

SIZE = 6 << 20


def test_download_verify_open_confirm_and_review(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    seller_window = unlock(qtbot, make_window, services, "seller", automate=True)
    window = unlock(qtbot, make_window, services, "buyer", automate=False)
    product, upload, source = list_product(services, tmp_path, SIZE)
    escrow = services.chain.world.escrow

    order_id = buy(qtbot, window, product.market_hash)
    assert notice(qtbot, seller_window, "order", order_id, "New order")
    assert seller_window.feed.button.text().startswith("Notifications (")
    qtbot.waitUntil(lambda: escrow.status(order_id).state is OrderState.PROXY_FETCHED, timeout=WAIT)
    assert notice(qtbot, window, "delivery", order_id, "Delivery ready")

    show(qtbot, window, "Purchased data")
    page = window.purchases
    assert window.current_page() is page
    page.select(order_id)
    qtbot.waitUntil(lambda: page.download_button.isEnabled(), timeout=WAIT)
    assert page.data_label.text() == "ready to download"
    assert not page.open_file_button.isEnabled() and "not downloaded" in page.open_file_button.toolTip()
    assert "Not possible while" in page.confirm_button.toolTip() and not page.confirm_button.isEnabled()
    assert not page.rate_button.isEnabled() and "not complete" in page.rate_button.toolTip()

    # The proxies cannot be reached: the failure is shown, nothing is marked received.
    opened = window.session.wallet
    assert opened is not None
    order = opened.buyer.book.mine(order_id)
    dead = services.chain.nobody
    for proxy in {order.proxy, order.proxy2}:
        opened.ctx.proxies.remember(Endpoint(proxy, "127.0.0.1", dead, dead, "00" * 32))
    click(qtbot, page.download_button)
    error = banner(qtbot, window, "error", f"Download of order {order_id} failed")
    assert "unreachable" in error or "refused" in error, error
    qtbot.waitUntil(lambda: page.download_button.isEnabled(), timeout=WAIT)
    window.banner.dismiss()

    # An interrupted download (half the ciphertext in the partial file) is resumed from there.
    cipher_name, _ = download_names(order_id, opened.ctx.contract, product.title)
    part = opened.ctx.download_dir / (cipher_name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    stored = Path(json.loads(upload.locator)["path"])
    with stored.open("rb") as src, part.open("wb") as dst:
        dst.write(src.read(upload.cipher_size // 2))
    page.feed.refresh()
    qtbot.waitUntil(lambda: page.download_button.text() == "Resume download", timeout=WAIT)
    assert page.data_label.text() == "interrupted after 3.0 MiB: resume to continue"
    seen: list[tuple[int, str, int, int]] = []
    page.relay.progress.connect(lambda *args: seen.append(args))
    click(qtbot, page.download_button)
    assert not page.download_button.isEnabled() and page.download_button.toolTip() == "Downloading…"
    banner(qtbot, window, "info", f"Order {order_id}: downloaded, SHA-256 verified")
    downloads = [done for oid, phase, done, total in seen if phase == "download" and oid == order_id]
    assert downloads and upload.cipher_size // 2 < downloads[0] < upload.cipher_size
    assert downloads[-1] == upload.cipher_size
    assert [p for _o, p, _d, _t in seen][-1] == "decrypt" and seen[-1][2] == seen[-1][3]
    qtbot.waitUntil(lambda: page.data_label.text() == "downloaded, verified and decrypted", timeout=WAIT)
    assert page.progress_bar.value() == 1000
    assert page.verified_label.text().startswith("verified: the file's SHA-256 is the order's data hash")
    assert "Delivery" not in page.verified_label.text() and product.market_hash in page.title_label.text()
    decrypted = Path(page.path_label.text())
    assert decrypted.read_bytes() == source.read_bytes()
    assert notice(qtbot, window, "delivery", order_id, "downloaded, verified and decrypted")

    # Open the file and its folder (through the hook, not a desktop application).
    opened_urls: list[QUrl] = []
    monkeypatch.setattr(purchases_module, "open_url", lambda url: opened_urls.append(url) or True)
    click(qtbot, page.open_file_button)
    click(qtbot, page.open_folder_button)
    assert opened_urls == [QUrl.fromLocalFile(str(decrypted)), QUrl.fromLocalFile(str(decrypted.parent))]
    shutil.copy(decrypted, tmp_path / "kept")

    # Confirm once the proxy has attested the delivery: the order completes.
    qtbot.waitUntil(lambda: escrow.status(order_id).state is OrderState.PROXY_DELIVERED, timeout=WAIT)
    page.feed.refresh()
    qtbot.waitUntil(lambda: page.confirm_button.isEnabled(), timeout=WAIT)
    click(qtbot, page.confirm_button)
    banner(qtbot, window, "info", f"Order {order_id}: delivery confirmed")
    assert escrow.status(order_id).state is OrderState.FINISHED
    assert notice(qtbot, seller_window, "sale", order_id, "completed: you were paid")

    orders = window.orders
    show(qtbot, window, "Orders")
    orders.select(order_id)
    qtbot.waitUntil(lambda: orders.fields["state"].text() == "completed", timeout=WAIT)
    row = next(r for r in range(orders.table.rowCount()) if orders.table.item(r, 0).text() == str(order_id))
    assert orders.table.item(row, 4).text() == "completed" and orders.table.item(row, 5).text() == "—"
    assert orders.fields["deadline"].text() == "none (the order is closed)"
    confirm = orders.buttons["confirm"]
    assert not confirm.isEnabled() and confirm.toolTip() == "Not possible while the order is completed."

    # A stale click (the order moved on since the page was drawn) is refused by the core, shown.
    orders.act("confirm", order_id)
    assert "wrong state" in banner(qtbot, window, "error", "Confirm delivery failed")
    window.banner.dismiss()

    # Review the purchase on the market.
    services.index_market()
    show(qtbot, window, "Purchased data")
    page.select(order_id)
    qtbot.waitUntil(lambda: page.rate_button.isEnabled(), timeout=WAIT)
    page.rating.setCurrentIndex(page.rating.findData(4))
    qtbot.keyClicks(page.comment, "Clean readings")
    click(qtbot, page.rate_button)
    banner(qtbot, window, "info", f"Review of order {order_id} posted: 4 / 5")
    assert not page.rate_button.isEnabled() and page.rate_button.toolTip() == "You reviewed this purchase."
    reviews = services.open("buyer").market.get("/comment/v1/comments/", {"market_hash": product.market_hash},
                                                 auth=False)  # fmt: skip
    assert [(r["rating"], r["content"]) for r in reviews["results"]] == [(4, "Clean readings")]

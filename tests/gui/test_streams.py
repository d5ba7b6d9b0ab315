"""Streams in the desktop wallet, on live services whose proxies run stream servers on a real
tansu broker: the seller publishes a stream through the Publish page (on a proxy chosen from
the list), the buyer buys it on the product page (only the channel's proxy offered), both
automations bind the order and hand over the key, the seller publishes records through the
core's stream publisher, the buyer's Purchased data page shows exactly those records (read
on the worker) and the delivery is confirmed; My data shows the channel and ends it. Without
a proxy tracker in the config the Stream mode is not offered at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from cpchain.config import load_config
from cpchain.proxy.streams.wire import StreamLocator
from cpchain.types import OrderState
from cpchain.wallet.qt.pages.publish import streams_available
from cpchain.wallet.seller import Seller
from tests.gui.conftest import WindowFactory, fresh_home
from tests.gui.trading import WAIT, banner, buy, click, show, unlock
from tests.proxy.conftest import Chain
from tests.streams.conftest import Broker, records
from tests.streams.conftest import broker as broker  # the session's tansu
from tests.wallet.conftest import Services, start_services


@pytest.fixture(scope="module")
def services(chain: Chain, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The wallet tests' services with the proxies' stream servers on the tansu broker."""
    with start_services(chain, tmp_path_factory.mktemp("gui-streams"), kafka_brokers=[broker.address]) as running:
        yield running


def test_sell_buy_read_confirm_and_end_a_stream(services: Services, make_window: WindowFactory,
                                                qtbot: QtBot) -> None:  # fmt: skip
    seller_window = unlock(qtbot, make_window, services, "seller", automate=True)
    window = unlock(qtbot, make_window, services, "buyer", automate=True)

    # Publish: Stream mode, a listed proxy, the channel shown afterwards.
    seller_window.show_page(seller_window.publish)
    page = seller_window.publish
    assert page.mode_row.isVisible()
    page.mode_combo.setCurrentIndex(page.mode_combo.findData("stream"))
    assert page.stream_box.isVisible() and not page.files_box.isVisible()
    assert page.publish_button.text() == "Open channel and publish"
    host = services.proxies["proxy2"].address
    qtbot.waitUntil(lambda: page.stream_proxy_combo.findData(host) >= 0, timeout=WAIT)
    assert page.stream_proxy_combo.itemData(0) is None  # best available first
    page.stream_proxy_combo.setCurrentIndex(page.stream_proxy_combo.findData(host))
    page.title_field.setText("Tide gauge, every second")
    page.price_field.setText("3")
    page.category_combo.setCurrentIndex(1)
    page.tags_field.setText("sea, tide")
    assert page.publish_button.isEnabled()
    click(qtbot, page.publish_button)
    text = banner(qtbot, seller_window, "info", "Published stream")
    assert host in text and host in page.channel_label.text()
    sopened = seller_window.session.wallet
    assert sopened is not None
    product = next(p for p in sopened.seller.products() if p.title == "Tide gauge, every second")
    upload = sopened.ctx.db.upload(product.upload_id)
    assert upload is not None and upload.storage_type == "stream"
    channel = StreamLocator.from_json(upload.locator).channel
    assert page.channel_label.text().startswith(channel)

    # Buy: only the channel's proxy is offered; the automations bind the order and hand over the key.
    window.show_product(product.market_hash)
    product_page = window.product
    qtbot.waitUntil(lambda: product_page.view is not None and product_page.buy_button.isEnabled(),
                    timeout=WAIT)  # fmt: skip
    assert [product_page.proxy_combo.itemData(i) for i in range(product_page.proxy_combo.count())] == [host]
    order_id = buy(qtbot, window, product.market_hash)
    opened = window.session.wallet
    assert opened is not None

    def key_received() -> bool:
        found = opened.ctx.db.purchase(opened.ctx.contract, opened.ctx.address, order_id)
        return bool(found and found.received)

    qtbot.waitUntil(key_received, timeout=WAIT)

    # The seller publishes records through the core; the buyer's page shows exactly those.
    sent = records(5, size=24)
    with Seller(services.open("seller")).stream_publisher(product.market_hash) as publisher:
        publisher.publish_many(sent)
    show(qtbot, window, "Purchased data")
    purchases = window.purchases
    purchases.select(order_id)
    qtbot.waitUntil(lambda: purchases.records_button.isEnabled(), timeout=WAIT)
    assert purchases.records_button.isVisible() and not purchases.download_button.isVisible()
    assert channel in purchases.path_label.text() and purchases.records_count.text() == "Not read yet."
    assert not purchases.confirm_button.isEnabled()  # nothing delivered yet
    click(qtbot, purchases.records_button)
    assert not purchases.records_button.isEnabled()  # read on the worker, the window stays live
    qtbot.waitUntil(lambda: purchases.records_count.text() == "5 records", timeout=WAIT)
    lines = purchases.records_view.toPlainText().splitlines()
    assert lines == [f"#{i}  {data.decode()}" for i, data in enumerate(sent)]
    assert purchases.records_view.isReadOnly() and "5 records read" in purchases.data_label.text()

    # The first read was the delivery: confirm it, as for a file.
    escrow = services.chain.world.escrow
    qtbot.waitUntil(lambda: escrow.status(order_id).state is OrderState.PROXY_DELIVERED, timeout=WAIT)
    purchases.feed.refresh()
    qtbot.waitUntil(lambda: purchases.confirm_button.isEnabled(), timeout=WAIT)
    click(qtbot, purchases.confirm_button)
    click(qtbot, purchases.confirm_bar.yes_button)
    qtbot.waitUntil(lambda: escrow.status(order_id).state is OrderState.FINISHED, timeout=WAIT)

    # My data: the channel's details and state; ending it after a confirmation.
    show(qtbot, seller_window, "My data")
    mydata = seller_window.mydata
    qtbot.waitUntil(lambda: mydata.select(product.market_hash), timeout=WAIT)
    assert mydata.channel_box.isVisible() and mydata.channel_id_label.text() == channel
    assert mydata.channel_proxy_label.text().startswith(host)
    qtbot.waitUntil(lambda: mydata.channel_state_label.text() == "open: 5 records published", timeout=WAIT)
    questions: list[str] = []
    mydata.confirm = lambda q: questions.append(q) is not None  # says no
    click(qtbot, mydata.end_channel_button)
    assert len(questions) == 1 and "Tide gauge" in questions[0]
    mydata.confirm = lambda q: True
    click(qtbot, mydata.end_channel_button)
    banner(qtbot, seller_window, "info", "has ended")
    qtbot.waitUntil(lambda: mydata.channel_state_label.text().startswith("ended"), timeout=WAIT)
    assert not mydata.end_channel_button.isEnabled()
    # The buyer still reads what is there.
    click(qtbot, purchases.records_button)
    qtbot.waitUntil(lambda: purchases.records_count.text() == "5 records" and purchases.records_button.isEnabled(),
                    timeout=WAIT)  # fmt: skip


def test_no_stream_mode_without_a_tracker(services: Services, make_window: WindowFactory, tmp_path: Path) -> None:
    home = fresh_home(services, "no-tracker")
    config_file = home / "cpchain.toml"
    lines = [line for line in config_file.read_text().splitlines() if not line.startswith("tracker =")]
    config_file.write_text("\n".join(lines).replace("[proxy]", '[proxy]\ntracker = ""') + "\n")
    assert not streams_available(load_config(config_file))
    page = make_window(home).publish  # locked: the page is built and activated, not shown
    page.activate()
    assert not page.mode_row.isVisibleTo(page) and not page.stream_mode
    assert page.files_box.isVisibleTo(page) and not page.stream_box.isVisibleTo(page)
    assert page.publish_button.text() == "Encrypt, upload and publish"

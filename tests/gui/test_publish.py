"""The Publish page on live services, driven through its widgets: a bad price is refused
before anything is encrypted; a batch of two files is encrypted, uploaded with progress and
listed with a cover image; with the market down the upload is kept, the error is shown, and
My data publishes it once the market is back."""

from __future__ import annotations

from pathlib import Path

import requests
from PIL import Image
from PyQt5.QtCore import Qt
from pytestqt.qtbot import QtBot

from cpchain.wallet.qt.pages.publish import storage_choices
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


def cover_png(path: Path) -> Path:
    Image.new("RGB", (64, 40), (30, 120, 200)).save(path, "PNG")
    return path


def fill(qtbot: QtBot, window: MainWindow, files: list[Path], *, title: str, price: str) -> None:
    page = window.publish
    page.ask_files = lambda: [str(f) for f in files]
    click(qtbot, page.add_button)
    page.title_field.setText(title)
    page.price_field.setText(price)


def test_batch_publish_with_cover_and_a_bad_price(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                                  tmp_path: Path) -> None:  # fmt: skip
    window = make_window(party_home(services, "seller", "publisher"))
    unlock_window(qtbot, window, "seller")
    window.show_page(window.publish)
    page = window.publish
    assert window.current_page() is page
    assert [page.storage_combo.itemData(i) for i in range(page.storage_combo.count())] == \
        [k for k, _ in storage_choices(window.session.config)] and page.storage_combo.currentData() == "local"
    assert not page.publish_button.isEnabled()  # no file chosen yet

    files = [random_file(tmp_path / "north.csv", 40_000), random_file(tmp_path / "south.csv", 70_000)]
    fill(qtbot, window, files, title="Station readings", price="two")
    assert page.files_list.count() == 2 and page.publish_button.isEnabled()
    opened = window.session.wallet
    assert opened is not None
    before = len(opened.seller.uploads())
    click(qtbot, page.publish_button)
    assert "Price: not an amount" in banner(qtbot, window, "error", "Price")
    page.price_field.setText("0")
    click(qtbot, page.publish_button)
    banner(qtbot, window, "error", "more than 0")
    assert len(opened.seller.uploads()) == before and page.job is None

    page.price_field.setText("2.5")
    page.category_combo.setCurrentIndex(page.category_combo.findData("Weather"))
    page.description_field.setPlainText("Hourly temperature and humidity")
    page.tags_field.setText("weather, hourly, weather")
    page.ask_image = lambda: str(cover_png(tmp_path / "cover.png"))
    click(qtbot, page.cover_button)
    assert page.cover_label.text() == "cover.png" and page.cover_clear.isEnabled()
    seen: list[str] = []
    page.progressed.connect(lambda phase, done, total: seen.append(phase))
    click(qtbot, page.publish_button)
    assert not page.publish_button.isEnabled() and not page.add_button.isEnabled()
    text = banner(qtbot, window, "info", "Published")
    assert "“Station readings — north.csv”" in text and "“Station readings — south.csv”" in text
    assert "2.5 CPC each" in text
    assert {"encrypt", "upload"} <= set(seen)
    assert page.files_list.count() == 0 and page.title_field.text() == "" and page.cover is None

    records = opened.seller.products()[-2:]
    assert all(r.published for r in records)
    for record in records:
        listed = requests.get(f"{services.market.url}/product/v1/products/{record.market_hash}/", timeout=10).json()
        assert listed["price"] == str(5 * ETHER // 2) and listed["category"] == "Weather"
        assert listed["tags"] == ["weather", "hourly"] and listed["cover_url"]
        cover = requests.get(services.market.url + listed["cover_url"], timeout=10)
        assert cover.status_code == 200 and cover.headers["Content-Type"] == "image/png"


def test_market_down_keeps_the_upload_and_my_data_publishes_it_later(
    services: Services, make_window: WindowFactory, qtbot: QtBot, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{services.chain.nobody}"
    window = make_window(party_home(services, "seller", "offline-publisher", market_url=dead))
    unlock_window(qtbot, window, "seller")
    window.show_page(window.publish)
    page = window.publish
    fill(qtbot, window, [random_file(tmp_path / "late.csv", 30_000)], title="Late readings", price="1")
    click(qtbot, page.publish_button)
    text = banner(qtbot, window, "error", "Publishing late.csv failed")
    assert "unreachable" in text and "kept" in text
    assert page.job is None and page.publish_button.isEnabled() is False and page.files_list.count() == 0
    opened = window.session.wallet
    assert opened is not None
    [upload] = opened.seller.uploads()
    [record] = opened.seller.products()
    assert record.upload_id == upload.id and not record.published

    # The market is back: My data lists the pending listing and publishes it.
    opened.ctx.market.base_url = services.market.url
    window.show_page(window.mydata)
    mydata = window.mydata
    qtbot.waitUntil(lambda: mydata.select(record.market_hash), timeout=WAIT)
    row = mydata.table.currentRow()
    assert mydata.table.item(row, 0).text() == "Late readings"
    assert mydata.table.item(row, 2).text() == "Not published yet"
    assert mydata.uploads_table.rowCount() == 1
    assert mydata.uploads_table.item(0, 0).text() == "late.csv" and mydata.uploads_table.item(0, 4).text() == "1"
    assert mydata.retry_button.isEnabled() and not mydata.edit_button.isEnabled()
    click(qtbot, mydata.retry_button)
    banner(qtbot, window, "info", "“Late readings” is published")
    qtbot.waitUntil(lambda: mydata.select(record.market_hash) and mydata.current() is not None
                    and mydata.current().status == "visible", timeout=WAIT)  # fmt: skip
    assert mydata.table.item(mydata.table.currentRow(), 2).text() == "Listed"
    listed = requests.get(f"{services.market.url}/product/v1/products/{record.market_hash}/", timeout=10)
    assert listed.status_code == 200 and listed.json()["title"] == "Late readings"

"""My data on live services, driven through its widgets: a listing is hidden and shown again,
edited (a new signed version replaces it on the market), given a new cover, and deleted —
each checked on the market itself; a refused edit is shown in the window."""

from __future__ import annotations

from pathlib import Path

import requests
from PIL import Image
from PyQt5.QtCore import Qt
from pytestqt.qtbot import QtBot

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


def status(window: MainWindow, market_hash: str) -> str:
    """The listing's status as its owner's market view has it."""
    opened = window.session.wallet
    assert opened is not None
    for p in opened.seller.market_products():
        if p["market_hash"] == market_hash:
            return str(p["status"]).lower()
    return "gone"


def public(services: Services, market_hash: str) -> requests.Response:
    return requests.get(f"{services.market.url}/product/v1/products/{market_hash}/", timeout=10)


def test_hide_show_edit_cover_and_delete(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                         tmp_path: Path) -> None:  # fmt: skip
    window = make_window(party_home(services, "seller", "mydata"))
    unlock_window(qtbot, window, "seller")
    opened = window.session.wallet
    assert opened is not None
    upload = opened.seller.upload(random_file(tmp_path / "tides.csv", 20_000))
    record = opened.seller.publish(upload.id, title="Tide gauges", price=2 * ETHER, category="Environment",
                                   description="Tide levels every 10 minutes", tags=("tides",))  # fmt: skip
    mh = record.market_hash

    window.show_page(window.mydata)
    page = window.mydata
    qtbot.waitUntil(lambda: page.select(mh), timeout=WAIT)
    row = page.table.currentRow()
    assert [page.table.item(row, c).text() for c in range(4)] == ["Tide gauges", "2 CPC", "Listed", "0"]
    assert page.uploads_table.item(0, 0).text() == "tides.csv" and page.uploads_table.item(0, 5).toolTip() == \
        upload.data_hash  # fmt: skip
    assert page.edit_button.isEnabled() and page.visibility_button.text() == "Hide"
    assert not page.retry_button.isEnabled() and page.open_button.isEnabled()

    # Hide, then show again.
    click(qtbot, page.visibility_button)
    banner(qtbot, window, "info", "hidden from the market's lists")
    assert status(window, mh) == "hidden" and public(services, mh).status_code == 404
    qtbot.waitUntil(lambda: page.select(mh) and page.visibility_button.text() == "Show", timeout=WAIT)
    assert not page.open_button.isEnabled()
    click(qtbot, page.visibility_button)
    banner(qtbot, window, "info", "listed again")
    assert status(window, mh) == "visible" and public(services, mh).status_code == 200

    # A new cover image.
    qtbot.waitUntil(lambda: page.select(mh), timeout=WAIT)
    cover = tmp_path / "tides.jpg"
    Image.new("RGB", (80, 50), (10, 90, 60)).save(cover, "JPEG")
    page.ask_image = lambda: str(cover)
    click(qtbot, page.cover_button)
    banner(qtbot, window, "info", "cover of “Tide gauges” was updated")
    cover_url = public(services, mh).json()["cover_url"]
    assert requests.get(services.market.url + cover_url, timeout=10).headers["Content-Type"] == "image/jpeg"

    # Edit: a bad price is refused in the window; then a new version replaces the listing.
    qtbot.waitUntil(lambda: page.select(mh), timeout=WAIT)
    click(qtbot, page.edit_button)
    assert not page.edit_box.isHidden()
    assert page.edit_title.text() == "Tide gauges" and page.edit_price.text() == "2"
    assert page.edit_category.currentData() == "Environment" and page.edit_tags.text() == "tides"
    page.edit_price.setText("-1")
    click(qtbot, page.save_button)
    banner(qtbot, window, "error", "Price:")
    page.edit_title.setText("Tide gauges (2024)")
    page.edit_price.setText("3.25")
    page.edit_tags.setText("tides, sea level")
    click(qtbot, page.save_button)
    text = banner(qtbot, window, "info", "new version")
    assert "“Tide gauges (2024)”" in text and "3.25 CPC" in text
    new = [p for p in opened.seller.products() if p.upload_id == upload.id and p.market_hash != mh]
    assert len(new) == 1 and new[0].published
    listed = public(services, new[0].market_hash).json()
    assert listed["title"] == "Tide gauges (2024)" and listed["price"] == str(13 * ETHER // 4)
    assert listed["tags"] == ["tides", "sea level"] and listed["cover_url"]  # the cover carries over
    assert public(services, mh).json()["superseded_by"] == new[0].market_hash
    qtbot.waitUntil(lambda: page.select(new[0].market_hash), timeout=WAIT)
    assert not page.select(mh)  # the old version is no longer one of the listings
    assert page.uploads_table.item(0, 4).text() == "1"

    # Delete: nothing happens unless confirmed.
    questions: list[str] = []
    page.confirm = lambda q: questions.append(q) is not None
    click(qtbot, page.delete_button)
    assert questions and "Tide gauges (2024)" in questions[0] and status(window, new[0].market_hash) == "visible"
    page.confirm = lambda q: True
    click(qtbot, page.delete_button)
    banner(qtbot, window, "info", "was deleted from the market")
    assert status(window, new[0].market_hash) == "gone" and public(services, new[0].market_hash).status_code == 404
    qtbot.waitUntil(lambda: page.data is not None and not page.select(new[0].market_hash) and
                    window.worker.pending == 0, timeout=WAIT)  # fmt: skip
    assert not page.edit_button.isEnabled() and not page.delete_button.isEnabled()


def test_market_down_is_shown(services: Services, make_window: WindowFactory, qtbot: QtBot) -> None:
    dead = f"http://127.0.0.1:{services.chain.nobody}"
    window = make_window(party_home(services, "seller", "mydata-offline", market_url=dead))
    unlock_window(qtbot, window, "seller")
    window.show_page(window.mydata)
    assert "unreachable" in banner(qtbot, window, "error", "My data:")
    assert window.mydata.refresh_button.isEnabled()

"""Cover images on the market page (a thumbnail per result that has one) and on the product
page (larger), fetched on the worker; a product without a cover shows no image. The market
client's cover fetch refuses missing, non-image and oversized replies with None."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import requests
from PIL import Image
from pytestqt.qtbot import QtBot

from cpchain.market.client import MarketClient
from cpchain.wallet.qt.pages.market import THUMBNAIL, CoverCache
from cpchain.wallet.qt.pages.product import COVER_WIDTH
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.gui.conftest import WindowFactory, party_home, unlock_window
from tests.gui.trading import show
from tests.wallet.conftest import Services, random_file

WAIT = 30_000


class FakeReply:
    def __init__(self, status: int, kind: str, body: bytes) -> None:
        self.status_code = status
        self.headers = {"Content-Type": kind}
        self.body = body

    def __enter__(self) -> FakeReply:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, size: int) -> Any:
        for i in range(0, len(self.body), size):
            yield self.body[i : i + size]


class FakeSession:
    def __init__(self, reply: FakeReply) -> None:
        self.reply = reply

    def get(self, url: str, **kw: Any) -> FakeReply:
        return self.reply


def test_client_cover_refuses_non_images_and_oversized_replies() -> None:
    def client(status: int, kind: str, body: bytes) -> MarketClient:
        return MarketClient("http://market", session=FakeSession(FakeReply(status, kind, body)))  # type: ignore[arg-type]

    assert client(200, "image/png", b"\x89PNG...").cover("ab") == b"\x89PNG..."
    assert client(200, "text/html; charset=utf-8", b"<html>").cover("ab") is None
    assert client(404, "application/json", b"{}").cover("ab") is None
    assert client(200, "image/jpeg", b"x" * 100_000).cover("ab", max_bytes=50_000) is None
    cache = CoverCache()
    assert cache.fetch(client(200, "image/png", b"not really a png"), "ab") is None and "ab" in cache


def test_covers_on_market_and_product_pages(services: Services, make_window: WindowFactory, qtbot: QtBot,
                                            tmp_path: Path) -> None:  # fmt: skip
    seller = Seller(services.open("seller"))
    tag = secrets.token_hex(3)
    hashes = []
    for i in range(2):
        upload = seller.upload(random_file(tmp_path / f"cov{i}.csv", 5_000))
        record = seller.publish(upload.id, title=f"Covered {tag} {i}", price=(i + 1) * ETHER, category="Weather",
                                description="Cover test")  # fmt: skip
        hashes.append(record.market_hash)
    image = tmp_path / "cover.png"
    Image.new("RGB", (400, 200), (200, 40, 40)).save(image, "PNG")
    seller.set_cover(hashes[0], image)

    # The market client reads the cover, and refuses it when larger than allowed.
    client = MarketClient(services.market.url)
    data = client.cover(hashes[0])
    assert data is not None and data.startswith(b"\x89PNG")
    assert client.cover(hashes[0], max_bytes=10) is None and client.cover(hashes[1]) is None
    assert requests.get(f"{services.market.url}/product/v1/products/{hashes[1]}/", timeout=10).json()["cover_url"] \
        is None  # fmt: skip

    window = make_window(party_home(services, "buyer", "covers"))
    unlock_window(qtbot, window, "buyer")
    show(qtbot, window, "Market")
    market = window.market
    qtbot.waitUntil(lambda: window.worker.pending == 0, timeout=WAIT)
    market.keyword.setText(f"Covered {tag}")
    market.sort.setCurrentIndex(market.sort.findData("price"))
    market.search()
    qtbot.waitUntil(lambda: market.page_label.text() == "Page 1 of 1 (2 products)", timeout=WAIT)
    qtbot.waitUntil(lambda: market.cover(0) is not None and window.worker.pending == 0, timeout=WAIT)
    assert [r["market_hash"] for r in market.results] == hashes
    thumb = market.cover(0)
    assert thumb is not None and (thumb.width(), thumb.height()) == (THUMBNAIL, THUMBNAIL // 2)
    assert market.cover(1) is None and hashes[0] in market.covers and hashes[1] not in market.covers

    window.show_product(hashes[0])
    product = window.product
    qtbot.waitUntil(lambda: product.cover() is not None, timeout=WAIT)
    big = product.cover()
    assert big is not None and (big.width(), big.height()) == (COVER_WIDTH, COVER_WIDTH // 2)

    window.show_product(hashes[1])
    qtbot.waitUntil(lambda: product.title_label.text() == f"Covered {tag} 1" and window.worker.pending == 0,
                    timeout=WAIT)  # fmt: skip
    assert product.cover() is None

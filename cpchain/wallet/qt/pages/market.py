"""Market page: keyword search with category, type and price filters, sorting and pages."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QImage, QPixmap
from PyQt5.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from cpchain.market.client import MarketClient
from cpchain.wallet.errors import BadInput
from cpchain.wallet.funds import parse_amount
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.widgets import cpc, heading, rating_text, read_only_table, short

__all__ = ["CATEGORIES", "PAGE_SIZE", "SORTS", "THUMBNAIL", "CoverCache", "MarketPage", "cover_pixmap"]

PAGE_SIZE = 20
CATEGORIES = [
    "Advertising", "Agriculture", "Automotive", "Business", "Education", "Energy", "Entertainment", "Environment",
    "Finance", "Government", "Health", "IoT", "Logistics", "Media", "Real estate", "Science", "Social", "Weather",
]  # fmt: skip
SORTS = [
    ("Best match", "relevance"), ("Newest", "newest"), ("Price: low to high", "price"),
    ("Price: high to low", "-price"), ("Best selling", "sales"), ("Best rated", "rating"),
]  # fmt: skip
THUMBNAIL = 64
COVER_BYTES = 2_000_000  # one cover at most
CACHE_BYTES = 16_000_000  # all cached covers together
COLUMNS = ["Title", "Category", "Type", "Price", "Seller", "Sales", "Rating", "Listed"]


class CoverCache:
    """Cover image bytes by market hash, fetched on the worker: the least recently used are
    dropped past `limit` bytes; a cover that could not be had (none, not an image, too big)
    is remembered as None. Thread-safe (filled on pool threads, read on the GUI thread)."""

    def __init__(self, limit: int = CACHE_BYTES, max_bytes: int = COVER_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes | None] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __contains__(self, market_hash: str) -> bool:
        with self._lock:
            return market_hash in self._items

    def get(self, market_hash: str) -> bytes | None:
        with self._lock:
            if market_hash in self._items:
                self._items.move_to_end(market_hash)
            return self._items.get(market_hash)

    def put(self, market_hash: str, data: bytes | None) -> None:
        with self._lock:
            old = self._items.pop(market_hash, None)
            self._size -= len(old or b"")
            if data is not None and len(data) > self.limit:
                data = None
            self._items[market_hash] = data
            self._size += len(data or b"")
            while self._size > self.limit:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped or b"")

    def fetch(self, market: MarketClient, market_hash: str) -> bytes | None:
        """The cover's bytes, from the cache or the market (call on the worker); None: no image."""
        if market_hash in self:
            return self.get(market_hash)
        data = market.cover(market_hash, max_bytes=self.max_bytes)
        if data is not None and QImage.fromData(data).isNull():
            data = None  # not an image Qt can show
        self.put(market_hash, data)
        return data


def cover_pixmap(data: bytes | None, width: int, height: int) -> QPixmap | None:
    """The image scaled down (aspect kept) to fit width x height; None when there is none (GUI thread)."""
    if not data:
        return None
    pixmap = QPixmap()
    if not pixmap.loadFromData(data) or pixmap.isNull():
        return None
    if pixmap.width() > width or pixmap.height() > height:
        pixmap = pixmap.scaled(width, height, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)  # fmt: skip
    return pixmap


class MarketPage(Page):
    title = "Market"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Market"))
        row = QHBoxLayout()
        self.keyword = QLineEdit()
        self.keyword.setPlaceholderText("Search titles, descriptions and tags")
        self.keyword.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        row.addWidget(self.keyword, 1)
        row.addWidget(self.search_button)
        layout.addLayout(row)

        filters = QHBoxLayout()
        self.category = QComboBox()
        self.category.addItem("Any category", "")
        for name in CATEGORIES:
            self.category.addItem(name, name)
        self.ptype = QComboBox()
        for label, value in (("Any type", ""), ("Files", "file"), ("Streams", "stream")):
            self.ptype.addItem(label, value)
        self.min_price = QLineEdit()
        self.min_price.setPlaceholderText("min CPC")
        self.max_price = QLineEdit()
        self.max_price.setPlaceholderText("max CPC")
        for field in (self.min_price, self.max_price):
            field.setMaximumWidth(110)
            field.returnPressed.connect(self.search)
        self.sort = QComboBox()
        for label, value in SORTS:
            self.sort.addItem(label, value)
        for combo in (self.category, self.ptype, self.sort):
            combo.activated.connect(self.search)
        filters.addWidget(QLabel("Category"))
        filters.addWidget(self.category)
        filters.addWidget(QLabel("Type"))
        filters.addWidget(self.ptype)
        filters.addWidget(QLabel("Price"))
        filters.addWidget(self.min_price)
        filters.addWidget(QLabel("to"))
        filters.addWidget(self.max_price)
        filters.addWidget(QLabel("Sort"))
        filters.addWidget(self.sort)
        filters.addStretch(1)
        layout.addLayout(filters)

        self.table = read_only_table(COLUMNS, stretch=0)
        self.table.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.table.cellActivated.connect(self._open_row)
        self.table.cellDoubleClicked.connect(self._open_row)
        layout.addWidget(self.table, 1)

        pager = QHBoxLayout()
        self.open_button = QPushButton("Open product")
        self.open_button.clicked.connect(lambda: self._open_row(self.table.currentRow(), 0))
        self.table.itemSelectionChanged.connect(lambda: self.open_button.setEnabled(self.table.currentRow() >= 0))
        self.prev_button = QPushButton("‹ Previous")
        self.prev_button.clicked.connect(lambda: self.search(self.page - 1))
        self.next_button = QPushButton("Next ›")
        self.next_button.clicked.connect(lambda: self.search(self.page + 1))
        self.page_label = QLabel()
        pager.addWidget(self.open_button)
        pager.addStretch(1)
        pager.addWidget(self.prev_button)
        pager.addWidget(self.page_label)
        pager.addWidget(self.next_button)
        layout.addLayout(pager)

        self.page_size = PAGE_SIZE
        self.page = 1
        self.pages = 1
        self.count = 0
        self.results: list[dict[str, Any]] = []
        self._searched = False
        self.covers = CoverCache()
        self._update_pager(0)

    def activate(self) -> None:
        if not self._searched:
            self.search()

    def filters(self) -> dict[str, Any]:
        """The market's search parameters from the controls (BadInput for a bad price)."""
        params: dict[str, Any] = {"keyword": self.keyword.text().strip(), "category": self.category.currentData(),
                                  "ptype": self.ptype.currentData(), "sort": self.sort.currentData()}  # fmt: skip
        for name, field in (("min_price", self.min_price), ("max_price", self.max_price)):
            text = field.text().strip()
            if text:
                params[name] = str(0 if text in ("0", "0.0") else parse_amount(text))
        return params

    def search(self, page: int | bool = 1) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        page = 1 if isinstance(page, bool) else max(1, page)
        try:
            params = self.filters()
        except BadInput as exc:
            self.ui.banner.error(f"Price filter: {exc}")
            return
        self._searched = True
        self.search_button.setEnabled(False)
        self.page_label.setText("Searching…")

        def found(reply: dict[str, Any]) -> None:
            self.search_button.setEnabled(True)
            self.page = page
            self._show(reply)

        def failed(exc: BaseException) -> None:
            self.search_button.setEnabled(True)
            self._update_pager(self.count)
            self.ui.banner.error(f"Search failed: {exc}")

        self.run(opened.buyer.search, page=page, page_size=self.page_size, **params, done=found, error=failed)

    def _show(self, reply: dict[str, Any]) -> None:
        self.results = list(reply.get("results", []))
        self.table.setRowCount(len(self.results))
        for row, p in enumerate(self.results):
            rating = p.get("rating") or {}
            cells = [
                p["title"], p.get("category") or "—", "Stream" if p.get("ptype") == "stream" else "File",
                cpc(p["price"]), p.get("seller_name") or short(p["seller"]), str(p.get("sales", 0)),
                rating_text(rating.get("average"), int(rating.get("count", 0))), str(p.get("created", ""))[:10],
            ]  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 4:
                    item.setToolTip(p["seller"])
                self.table.setItem(row, col, item)
        self._update_pager(int(reply.get("count", 0)))
        opened = self.session.wallet
        for p in self.results:
            if p.get("cover_url") and opened is not None:
                self._fetch_cover(opened.ctx.market, str(p["market_hash"]))

    def _fetch_cover(self, market: MarketClient, market_hash: str) -> None:
        self.run(self.covers.fetch, market, market_hash,
                 done=lambda data: self._show_cover(market_hash, data), error=lambda _exc: None)  # fmt: skip

    def _show_cover(self, market_hash: str, data: bytes | None) -> None:
        """Put a fetched cover on the rows (still) showing that product; no cover, no image."""
        pixmap = cover_pixmap(data, THUMBNAIL, THUMBNAIL)
        if pixmap is None:
            return
        for row, p in enumerate(self.results):
            item = self.table.item(row, 0)
            if p.get("market_hash") == market_hash and item is not None:
                item.setData(Qt.ItemDataRole.DecorationRole, pixmap)
                self.table.resizeRowToContents(row)

    def cover(self, row: int) -> QPixmap | None:
        """The thumbnail shown on a result row, if any."""
        item = self.table.item(row, 0)
        value = item.data(Qt.ItemDataRole.DecorationRole) if item is not None else None
        return value if isinstance(value, QPixmap) and not value.isNull() else None

    def _update_pager(self, count: int) -> None:
        self.count = count
        self.pages = max(1, math.ceil(count / self.page_size))
        self.page_label.setText(f"Page {self.page} of {self.pages} ({count} product{'s' if count != 1 else ''})")
        self.prev_button.setEnabled(self.page > 1)
        self.next_button.setEnabled(self.page < self.pages)
        self.open_button.setEnabled(self.table.currentRow() >= 0)

    def _open_row(self, row: int, _col: int) -> None:
        if 0 <= row < len(self.results):
            self.ui.show_product(self.results[row]["market_hash"])

"""Market page: keyword search with category, type and price filters, sorting and pages."""

from __future__ import annotations

import math
from typing import Any

from PyQt5.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from cpchain.wallet.errors import BadInput
from cpchain.wallet.funds import parse_amount
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.widgets import columns, cpc, heading, hide_row_numbers, rating_text, short

__all__ = ["CATEGORIES", "PAGE_SIZE", "SORTS", "MarketPage"]

PAGE_SIZE = 20
CATEGORIES = [
    "Advertising", "Agriculture", "Automotive", "Business", "Education", "Energy", "Entertainment", "Environment",
    "Finance", "Government", "Health", "IoT", "Logistics", "Media", "Real estate", "Science", "Social", "Weather",
]  # fmt: skip
SORTS = [
    ("Best match", "relevance"), ("Newest", "newest"), ("Price: low to high", "price"),
    ("Price: high to low", "-price"), ("Best selling", "sales"), ("Best rated", "rating"),
]  # fmt: skip
COLUMNS = ["Title", "Category", "Type", "Price", "Seller", "Sales", "Rating", "Listed"]


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

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        hide_row_numbers(self.table)
        columns(self.table).setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        columns(self.table).setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
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

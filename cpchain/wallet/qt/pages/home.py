"""Home: the account at a glance, all from live data — balance, open orders as buyer and as
seller, listings and purchases, the latest orders, the newest products on the market and
its trending tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from cpchain.wallet.db import OrderRecord
from cpchain.wallet.errors import translated
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.product import state_text
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import cpc, heading, read_only_table, short, when
from cpchain.wallet.rules import ROLE_BUYER, ROLE_SELLER

__all__ = ["HomePage", "Overview", "Showcase"]

RECENT_ORDERS = 6
NEWEST = 8
PRODUCT_COLUMNS = ["Title", "Category", "Price", "Seller", "Listed"]


@dataclass
class Overview:
    """The account's side, from the chain and the wallet's database."""

    balance: int
    buying: int
    selling: int
    purchases: int
    orders: list[OrderRecord]
    titles: dict[str, str]  # market hash -> title, where the wallet knows it


@dataclass
class Showcase:
    """The market's side."""

    newest: list[dict[str, Any]]
    total: int
    tags: list[dict[str, Any]]
    listings: int


class HomePage(Page):
    title = "Home"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.greeting = heading("Home")
        top.addWidget(self.greeting, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.activate)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        grid = QGridLayout()
        self.values: dict[str, QLabel] = {}
        tiles = (("balance", "Balance"), ("buying", "Open orders as buyer"), ("selling", "Open orders as seller"),
                 ("listings", "My listings on the market"), ("purchases", "Purchases"))  # fmt: skip
        for col, (key, label) in enumerate(tiles):
            box = QGroupBox(label)
            bl = QVBoxLayout(box)
            value = QLabel("…")
            font = value.font()
            font.setPointSizeF(font.pointSizeF() * 1.5)
            font.setBold(True)
            value.setFont(font)
            bl.addWidget(value)
            self.values[key] = value
            grid.addWidget(box, 0, col)
        self.wallet_button = QPushButton("Open wallet")
        self.wallet_button.clicked.connect(lambda: self.ui.show_page(self.ui.wallet))
        self.mydata_button = QPushButton("Open My data")
        self.mydata_button.clicked.connect(lambda: self.ui.show_page(self.ui.mydata))
        grid.addWidget(self.wallet_button, 1, 0)
        grid.addWidget(self.mydata_button, 1, 3)
        layout.addLayout(grid)

        row = QHBoxLayout()
        activity = QGroupBox("Latest orders")
        al = QVBoxLayout(activity)
        self.activity_list = QListWidget()
        self.activity_list.setWordWrap(True)
        al.addWidget(self.activity_list)
        row.addWidget(activity, 3)
        tags = QGroupBox("Trending tags")
        tl = QVBoxLayout(tags)
        self.tags_label = QLabel()
        self.tags_label.setWordWrap(True)
        self.tags_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        tl.addWidget(self.tags_label, 1)
        row.addWidget(tags, 2)
        layout.addLayout(row, 2)

        newest = QGroupBox("Newest on the market")
        nl = QVBoxLayout(newest)
        self.products = read_only_table(PRODUCT_COLUMNS, stretch=0)
        self.products.cellDoubleClicked.connect(self._open_row)
        self.products.cellActivated.connect(self._open_row)
        nl.addWidget(self.products)
        buttons = QHBoxLayout()
        self.market_label = QLabel()
        self.open_button = QPushButton("Open product")
        self.open_button.clicked.connect(lambda: self._open_row(self.products.currentRow(), 0))
        self.products.itemSelectionChanged.connect(
            lambda: self.open_button.setEnabled(bool(self.products.selectedItems()))
        )
        self.market_button = QPushButton("Browse the market")
        self.market_button.clicked.connect(lambda: self.ui.show_page(self.ui.market))
        buttons.addWidget(self.market_label, 1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.market_button)
        nl.addLayout(buttons)
        layout.addWidget(newest, 3)

        self.overview: Overview | None = None
        self.showcase: Showcase | None = None
        self.open_button.setEnabled(False)

    # ------------------------------------------------------------------ loading

    def activate(self) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        self.greeting.setText(f"Home — {short(opened.address)}")
        self.greeting.setToolTip(opened.address)
        self.run(self._read_overview, opened, done=self._show_overview,
                 error=lambda exc: self.ui.banner.error(f"Home: {exc}"))  # fmt: skip
        self.market_label.setText("Reading the market…")
        self.run(self._read_showcase, opened, done=self._show_showcase, error=self._market_failed)

    @staticmethod
    def _read_overview(opened: Opened) -> Overview:
        balance = opened.funds.balance()
        opened.buyer.book.sync()
        orders = opened.buyer.book.orders()
        titles = {p.market_hash: p.title for p in opened.seller.products()}
        purchases = opened.buyer.purchases()
        titles.update({p.market_hash: p.title for p in purchases if p.title})
        orders.sort(key=lambda o: (o.updated, o.order_id), reverse=True)
        return Overview(
            balance=balance,
            buying=sum(1 for o in orders if o.role == ROLE_BUYER and not o.state.is_final),
            selling=sum(1 for o in orders if o.role == ROLE_SELLER and not o.state.is_final),
            purchases=len(purchases), orders=orders[:RECENT_ORDERS], titles=titles,
        )  # fmt: skip

    @staticmethod
    def _read_showcase(opened: Opened) -> Showcase:
        found = opened.buyer.search(sort="newest", page=1, page_size=NEWEST)
        with translated("trending tags"):
            tags = opened.ctx.market.get("/main/v1/trending_tags/", {"limit": 12}, auth=False)
        listings = len(opened.seller.market_products())
        return Showcase(list(found.get("results", [])), int(found.get("count", 0)), list(tags), listings)

    def _show_overview(self, o: Overview) -> None:
        self.overview = o
        self.values["balance"].setText(cpc(o.balance, 4))
        self.values["buying"].setText(str(o.buying))
        self.values["selling"].setText(str(o.selling))
        self.values["purchases"].setText(str(o.purchases))
        self.activity_list.clear()
        for order in o.orders:
            title = o.titles.get(order.market_hash) or f"product {order.market_hash[:10]}…"
            role = "bought" if order.role == ROLE_BUYER else "sold"
            self.activity_list.addItem(
                f"Order {order.order_id} ({role}, {cpc(order.price)}): “{title}” — {state_text(order.state)}\n"
                f"last change seen {when(order.updated)}, deadline {when(order.end_time)}"
            )
        if not o.orders:
            self.activity_list.addItem("No orders yet: buy on the market, or publish data to sell.")

    def _show_showcase(self, s: Showcase) -> None:
        self.showcase = s
        self.values["listings"].setText(str(s.listings))
        self.products.setRowCount(len(s.newest))
        for r, p in enumerate(s.newest):
            cells = [p["title"], p.get("category") or "—", cpc(p["price"]), p.get("seller_name") or short(p["seller"]),
                     str(p.get("created", ""))[:10]]  # fmt: skip
            for c, text in enumerate(cells):
                self.products.setItem(r, c, QTableWidgetItem(text))
        self.market_label.setText(f"{s.total} product(s) on the market" if s.total else
                                  "No products on the market yet.")  # fmt: skip
        if s.tags:
            self.tags_label.setText("   ".join(f"#{t['tag']} ({t['products']})" for t in s.tags))
        else:
            self.tags_label.setText("No tags yet.")
        self.open_button.setEnabled(bool(self.products.selectedItems()))

    def _market_failed(self, exc: BaseException) -> None:
        self.market_label.setText("")
        self.ui.banner.error(f"Market: {exc}")

    def _open_row(self, row: int, _col: int) -> None:
        if self.showcase is not None and 0 <= row < len(self.showcase.newest):
            self.ui.show_product(self.showcase.newest[row]["market_hash"])

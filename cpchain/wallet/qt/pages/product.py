"""Product detail: the verified listing, its reviews, this account's orders for it, and
buying it through a chosen proxy (deposit and credit shown), with the cost confirmed first.
A stream is bought through the proxy that hosts its channel (the only one offered)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cpchain.proxy.tracker import ProxyStanding
from cpchain.types import OrderState, ProductType
from cpchain.wallet.buyer import Listing
from cpchain.wallet.db import OrderRecord
from cpchain.wallet.errors import translated
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.market import CoverCache, cover_pixmap
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import cpc, heading, rating_text, short, when
from cpchain.wallet.rules import default_fee, stream_proxy

__all__ = ["COVER_WIDTH", "STATE_TEXT", "ProductPage", "ProductView"]

COVER_WIDTH = 240
COVER_HEIGHT = 240

STATE_TEXT = {
    OrderState.CREATED: "placed: waiting for the seller to accept",
    OrderState.SELLER_CONFIRMED: "accepted: the seller is delivering to the proxy",
    OrderState.PROXY_FETCHED: "the proxy holds the data: ready to receive",
    OrderState.PROXY_DELIVERED: "delivered: check the data, then confirm or dispute",
    OrderState.FINISHED: "completed",
    OrderState.DISPUTED: "disputed: the proxy and then the arbiter rule",
    OrderState.SETTLED: "dispute settled",
    OrderState.WITHDRAWN: "withdrawn (refunded)",
}


def state_text(state: OrderState) -> str:
    return STATE_TEXT.get(state, state.name.replace("_", " ").lower())


@dataclass
class ProductView:
    """What the page shows of a product, read off the GUI thread in one go."""

    listing: Listing
    reviews: list[dict[str, Any]]
    orders: list[OrderRecord]


def standing_text(s: ProxyStanding) -> str:
    credit = f"credit {s.credit:.1f}/5 ({s.rating_count} ratings)" if s.credit is not None else "no ratings yet"
    return f"{short(s.address)} — deposit {cpc(s.deposit)}, {credit}"


class ProductPage(Page):
    title = "Product"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.back_button = QPushButton("‹ Market")
        self.back_button.clicked.connect(lambda: self.ui.show_page(self.ui.market))
        self.title_label = heading("")
        self.title_label.setWordWrap(True)
        top.addWidget(self.back_button)
        top.addWidget(self.title_label, 1)
        layout.addLayout(top)

        self.details = QWidget()
        form = QFormLayout(self.details)
        self.cover_label = QLabel()
        self.cover_label.hide()
        form.addRow(self.cover_label)
        self.fields: dict[str, QLabel] = {}
        rows = (("price", "Price"), ("seller", "Seller"), ("category", "Category"), ("ptype", "Type"),
                ("size", "Size"), ("tags", "Tags"), ("created", "Listed"), ("sales", "Sales"), ("rating", "Rating"),
                ("verified", "Signature"), ("market_hash", "Market hash"))  # fmt: skip
        for key, label in rows:
            value = QLabel()
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            form.addRow(label, value)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Description", self.description)
        layout.addWidget(self.details)

        row = QHBoxLayout()
        buy = QGroupBox("Buy")
        bl = QVBoxLayout(buy)
        self.buy_note = QLabel()
        self.buy_note.setWordWrap(True)
        self.proxy_combo = QComboBox()
        self.proxy_label = QLabel("Proxy (holds the data in escrow, paid a fee from the price)")
        self.buy_button = QPushButton("Buy…")
        self.buy_button.clicked.connect(self.review)
        bl.addWidget(self.buy_note)
        bl.addWidget(self.proxy_label)
        bl.addWidget(self.proxy_combo)
        bl.addWidget(self.buy_button)
        self.review_box = QWidget()
        rv = QFormLayout(self.review_box)
        self.review_price = QLabel()
        self.review_fee = QLabel()
        self.review_proxy = QLabel()
        self.review_proxy.setWordWrap(True)
        self.review_balance = QLabel()
        buttons = QHBoxLayout()
        self.pay_button = QPushButton("Pay into escrow")
        self.pay_button.clicked.connect(self.buy)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.review_box.hide)
        buttons.addWidget(self.pay_button)
        buttons.addWidget(self.cancel_button)
        rv.addRow("You pay", self.review_price)
        rv.addRow("Of which proxy fees", self.review_fee)
        rv.addRow("Proxy", self.review_proxy)
        rv.addRow("Your balance", self.review_balance)
        rv.addRow(buttons)
        self.review_box.hide()
        bl.addWidget(self.review_box)
        bl.addWidget(QLabel("<b>Your orders for this product</b>"))
        self.orders_list = QListWidget()
        bl.addWidget(self.orders_list, 1)
        row.addWidget(buy, 1)

        reviews = QGroupBox("Reviews")
        rl = QVBoxLayout(reviews)
        self.reviews_list = QListWidget()
        self.reviews_list.setWordWrap(True)
        rl.addWidget(self.reviews_list)
        row.addWidget(reviews, 1)
        layout.addLayout(row, 1)

        self.market_hash = ""
        self.view: ProductView | None = None
        self.standings: list[ProxyStanding] = []
        self._all_standings: list[ProxyStanding] = []

    # ------------------------------------------------------------------ loading

    def load(self, market_hash: str) -> None:
        self.market_hash = market_hash
        self.view = None
        self.title_label.setText("Loading…")
        self._clear_cover()
        self.review_box.hide()
        self.details.hide()
        self._update_buy()
        self.activate()

    def activate(self) -> None:
        opened = self.session.wallet
        if opened is None or not self.market_hash:
            return
        wanted = self.market_hash
        self.run(self._read, opened, wanted, done=lambda v: self._show(wanted, v),
                 error=lambda exc: self._failed(wanted, exc))  # fmt: skip
        self.run(opened.ctx.proxies.standings, done=self._show_proxies,
                 error=lambda exc: self._proxies_failed(str(exc)))  # fmt: skip

    @staticmethod
    def _read(opened: Opened, market_hash: str) -> ProductView:
        listing = opened.buyer.show(market_hash)
        with translated("reviews"):
            page = opened.ctx.market.get("/comment/v1/comments/", {"market_hash": market_hash}, auth=False)
        opened.buyer.book.sync()
        orders = [o for o in opened.buyer.book.orders() if o.market_hash == market_hash]
        return ProductView(listing, list(page.get("results", [])), orders)

    def _failed(self, market_hash: str, exc: BaseException) -> None:
        if market_hash == self.market_hash:
            self.title_label.setText("This product could not be shown")
            self.ui.banner.error(f"Product: {exc}")

    def _show(self, market_hash: str, view: ProductView) -> None:
        if market_hash != self.market_hash:
            return
        self.view = view
        info, product = view.listing.info, view.listing.product
        rating = info.get("rating") or {}
        self.title_label.setText(product.title)
        f = self.fields
        f["price"].setText(cpc(product.price, 18))
        seller_name = info.get("seller_name") or ""
        f["seller"].setText(f"{seller_name} ({product.seller})" if seller_name else product.seller)
        f["category"].setText(product.category or "—")
        f["ptype"].setText(product.ptype.value)
        stream = product.ptype is ProductType.STREAM
        f["size"].setText("records as the seller publishes them" if stream else f"{product.size:,} bytes (encrypted)")
        f["tags"].setText(", ".join(product.tags) or "—")
        f["created"].setText(str(info.get("created", ""))[:19].replace("T", " ") + " UTC")
        f["sales"].setText(str(info.get("sales", 0)))
        f["rating"].setText(rating_text(rating.get("average"), int(rating.get("count", 0))))
        f["verified"].setText("signed by the seller; description and data hash check out")
        f["market_hash"].setText(product.market_hash())
        self.description.setText(product.description or "—")
        self.details.show()
        opened = self.session.wallet
        if info.get("cover_url") and opened is not None:
            self.run(self._covers().fetch, opened.ctx.market, market_hash,
                     done=lambda data: self._show_cover(market_hash, data), error=lambda _exc: None)  # fmt: skip
        else:
            self._clear_cover()

        self.reviews_list.clear()
        for r in view.reviews:
            stars = "★" * int(r["rating"]) + "☆" * (5 - int(r["rating"]))
            author = r.get("author_name") or short(str(r.get("author", "")))
            self.reviews_list.addItem(f"{stars}  {author}, {str(r.get('created', ''))[:10]}\n{r.get('content', '')}")
        if not view.reviews:
            self.reviews_list.addItem("No reviews yet.")

        self.orders_list.clear()
        for o in view.orders:
            self.orders_list.addItem(f"Order {o.order_id}: {state_text(o.state)} (deadline {when(o.end_time)})")
        if not view.orders:
            self.orders_list.addItem("None.")
        self._show_proxies(self._all_standings)

    def _covers(self) -> CoverCache:
        """The market page's cover cache (one per window), or this page's own."""
        market = getattr(self.ui, "market", None)
        covers = getattr(market, "covers", None)
        if isinstance(covers, CoverCache):
            return covers
        if not hasattr(self, "_own_covers"):
            self._own_covers = CoverCache()
        return self._own_covers

    def _clear_cover(self) -> None:
        self.cover_label.clear()
        self.cover_label.hide()

    def _show_cover(self, market_hash: str, data: bytes | None) -> None:
        if market_hash != self.market_hash:
            return
        pixmap = cover_pixmap(data, COVER_WIDTH, COVER_HEIGHT)
        if pixmap is None:
            self._clear_cover()
            return
        self.cover_label.setPixmap(pixmap)
        self.cover_label.show()

    def cover(self) -> QPixmap | None:
        """The cover shown, if any."""
        pixmap = self.cover_label.pixmap()
        return pixmap if pixmap is not None and not pixmap.isNull() and self.cover_label.isVisibleTo(self) else None

    def _show_proxies(self, standings: list[ProxyStanding]) -> None:
        self._all_standings = standings
        self.standings = [s for s in standings if s.eligible]
        view = self.view
        if view is not None and view.listing.product.ptype is ProductType.STREAM:
            host = stream_proxy(view.listing.product, [s.address for s in self.standings])
            self.standings = [s for s in self.standings if s.address == host]
        self.proxy_combo.clear()
        if len(self.standings) > 1:
            self.proxy_combo.addItem("Best available (the first below, the second as backup)", None)
        for s in self.standings:
            self.proxy_combo.addItem(standing_text(s), s.address)
        self._update_buy()

    def _proxies_failed(self, message: str) -> None:
        self.standings = []
        self._all_standings = []
        self.proxy_combo.clear()
        self.ui.banner.error(f"Proxies: {message}")
        self._update_buy()

    def _update_buy(self) -> None:
        opened, view = self.session.wallet, self.view
        reason = ""
        if opened is None or view is None:
            reason = "Loading…"
        elif view.listing.product.seller.lower() == opened.address.lower():
            reason = "This is your own product."
        elif any(not o.state.is_final for o in view.orders):
            reason = "You have an open order for this product (below)."
        elif not self.standings and view.listing.product.ptype is ProductType.STREAM:
            reason = "The proxy that hosts this stream's channel is not available right now."
        elif not self.standings:
            reason = "No proxy is available for a new order right now."
        self.buy_note.setText(reason or "Pay the price into escrow; the seller is paid when you confirm the delivery.")
        self.buy_button.setEnabled(not reason)
        self.proxy_combo.setEnabled(not reason)

    # ------------------------------------------------------------------ buying

    def review(self) -> None:
        opened, view = self.session.wallet, self.view
        if opened is None or view is None:
            return
        product = view.listing.product
        fee = default_fee(product.price)
        chosen = self.proxy_combo.currentData()
        self.review_price.setText(f"{cpc(product.price, 18)} plus the network fee of the order transaction")
        self.review_fee.setText(f"up to {cpc(2 * fee, 18)} ({cpc(fee, 18)} to each proxy)")
        self.review_proxy.setText(self.proxy_combo.currentText() if chosen else
                                  "; ".join(standing_text(s) for s in self.standings[:2]))  # fmt: skip
        self.review_balance.setText("reading…")
        self.run(opened.funds.balance, done=lambda wei: self.review_balance.setText(cpc(wei, 18)))
        self.review_box.show()

    def buy(self) -> None:
        opened, view = self.session.wallet, self.view
        if opened is None or view is None:
            return
        chosen = self.proxy_combo.currentData()
        market_hash = self.market_hash
        self.pay_button.setEnabled(False)
        self.buy_button.setEnabled(False)

        def placed(order: OrderRecord) -> None:
            self.pay_button.setEnabled(True)
            self.review_box.hide()
            self.ui.banner.info(f"Order {order.order_id} placed: {cpc(order.price, 18)} paid into escrow. "
                                "The data arrives once the seller delivers.")  # fmt: skip
            if market_hash == self.market_hash:
                self.activate()

        def failed(exc: BaseException) -> None:
            self.pay_button.setEnabled(True)
            self.review_box.hide()
            self._update_buy()
            self.ui.banner.error(f"Buying failed: {exc}")

        self.run(opened.buyer.buy, market_hash, proxy=chosen, done=placed, error=failed)

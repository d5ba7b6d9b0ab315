"""The account's orders as the window sees them, kept live, and the notices drawn from them.

Owns `OrderFeed`: every few seconds while a wallet is unlocked (and at once after each
automation report or action), the core's OrderBook sync and a read of the account's
orders, purchases and the chain's clock, off the GUI thread, as one `Snapshot` that the
orders and purchased-data pages draw. Comparing each snapshot with the previous one gives
the notices: a new order (seller), a delivery ready or received (buyer), a dispute, a
dispute settled, a sale completed. They go to the header's notification button (with the
count of unread ones), its list, and the window's banner. Must not take order actions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PyQt5.QtCore import QObject, QTimer, pyqtSignal
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from cpchain.chain.lifecycle import Windows, next_deadline
from cpchain.types import OrderState, OrderStatus
from cpchain.wallet.db import OrderRecord, PurchaseRecord
from cpchain.wallet.errors import WalletClosed
from cpchain.wallet.qt.widgets import cpc, when
from cpchain.wallet.rules import ROLE_BUYER, ROLE_SELLER, download_names, seller_refusal

if TYPE_CHECKING:
    from cpchain.wallet.qt.session import Opened
    from cpchain.wallet.qt.window import MainWindow

__all__ = ["Notice", "OrderFeed", "Snapshot", "changes", "countdown", "read_snapshot"]

REFRESH_MS = 3000


@dataclass(frozen=True)
class Snapshot:
    """The account's orders, purchases and the chain's clock, read together."""

    address: str
    orders: list[OrderRecord]
    statuses: dict[int, OrderStatus]  # the chain's full status of every open order
    purchases: dict[int, PurchaseRecord]
    titles: dict[str, str]  # market hash -> title, where the wallet knows it
    partial: dict[int, int]  # order id -> bytes of an interrupted download
    seller_refusals: dict[int, str]  # seller: why a new order will not be accepted
    automated: bool
    chain_now: int
    windows: Windows
    read_at: float = field(default_factory=time.time)

    def now(self) -> int:
        """The chain's clock now: its latest block time (or the wall clock, whichever is
        later: a quiet chain mines no blocks), plus the time since the snapshot was read."""
        return int(max(self.chain_now, self.read_at) + (time.time() - self.read_at))

    def status(self, order: OrderRecord) -> OrderStatus:
        return self.statuses.get(order.order_id) or OrderStatus(order.state, order.end_time, order.dispute_end)

    def order(self, order_id: int) -> OrderRecord | None:
        return next((o for o in self.orders if o.order_id == order_id), None)

    def title(self, order: OrderRecord) -> str:
        purchase = self.purchases.get(order.order_id)
        return (purchase.title if purchase else "") or self.titles.get(order.market_hash) or order.market_hash[:16]


def read_snapshot(opened: Opened, automated: bool = False) -> Snapshot:
    """Sync the account's orders with the chain and read everything the pages show (blocking)."""
    ctx, buyer, seller = opened.ctx, opened.buyer, opened.seller
    buyer.book.sync()
    orders = sorted(buyer.book.orders(), key=lambda o: o.order_id, reverse=True)
    chain_now = ctx.escrow.now()
    windows = ctx.escrow.windows
    statuses = {o.order_id: ctx.escrow.status(o.order_id) for o in orders if not o.state.is_final}
    purchases = {p.order_id: p for p in buyer.purchases()}
    titles = {p.market_hash: p.title for p in seller.products()}
    partial: dict[int, int] = {}
    refusals: dict[int, str] = {}
    for o in orders:
        if o.role == ROLE_BUYER and o.order_id in purchases and not purchases[o.order_id].decrypted:
            cipher, _ = download_names(o.order_id, ctx.contract, purchases[o.order_id].title)
            part = ctx.download_dir / (cipher + ".part")
            if part.is_file():
                partial[o.order_id] = part.stat().st_size
        if o.role == ROLE_SELLER and o.state is OrderState.CREATED:
            reason = seller_refusal(o.terms, seller.product_for(o), ctx.address)
            if reason is not None:
                refusals[o.order_id] = reason
    return Snapshot(address=ctx.address, orders=orders, statuses=statuses, purchases=purchases, titles=titles,
                    partial=partial, seller_refusals=refusals, automated=automated, chain_now=chain_now,
                    windows=windows)  # fmt: skip


def countdown(snapshot: Snapshot, order: OrderRecord) -> tuple[str, int | None]:
    """("2 h 03 min left" / "passed" / "", the deadline as a unix time or None when final)."""
    now = snapshot.now()
    deadline = next_deadline(snapshot.status(order), snapshot.windows, now)
    if deadline is None:
        return "", None
    left = deadline - now
    if left <= 0:
        return "passed", deadline
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        text = f"{days} d {hours} h left"
    elif hours:
        text = f"{hours} h {minutes:02d} min left"
    else:
        text = f"{minutes} min {seconds:02d} s left"
    return text, deadline


# --------------------------------------------------------------------------- notices


@dataclass(frozen=True)
class Notice:
    kind: str  # "order", "delivery", "dispute", "settled", "sale"
    order_id: int
    text: str
    at: float = field(default_factory=time.time)


def changes(before: Snapshot, after: Snapshot) -> list[Notice]:
    """What happened to the account's orders between two snapshots, as notices."""
    if before.address != after.address:
        return []
    old = {o.order_id: o for o in before.orders}
    notices: list[Notice] = []
    for o in sorted(after.orders, key=lambda o: o.order_id):
        prev = old.get(o.order_id)
        title = after.title(o)
        if prev is None:
            if o.role == ROLE_SELLER:
                notices.append(Notice("order", o.order_id, f"New order {o.order_id} for “{title}”: "
                                                           f"{cpc(o.price)} paid into escrow"))  # fmt: skip
            prev_state = None
        else:
            prev_state = prev.state
        if o.state is prev_state:
            pass
        elif o.state is OrderState.DISPUTED:
            who = "You disputed" if o.role == ROLE_BUYER else "The buyer disputed"
            text = f"{who} order {o.order_id} (“{title}”): the proxy rules first"
            notices.append(Notice("dispute", o.order_id, text))
        elif o.state is OrderState.SETTLED and prev_state is not None:
            notices.append(Notice("settled", o.order_id, f"The dispute on order {o.order_id} (“{title}”) is settled"))
        elif (
            o.role == ROLE_BUYER
            and o.state in (OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED)
            and (prev_state is None or prev_state < OrderState.PROXY_FETCHED)
        ):
            notices.append(Notice("delivery", o.order_id, f"Delivery ready: the data of order {o.order_id} "
                                                          f"(“{title}”) is at the proxy"))  # fmt: skip
        elif o.role == ROLE_SELLER and o.state is OrderState.FINISHED and prev_state is not None:
            notices.append(Notice("sale", o.order_id, f"Order {o.order_id} (“{title}”) completed: you were paid"))
        was = before.purchases.get(o.order_id)
        now = after.purchases.get(o.order_id)
        if o.role == ROLE_BUYER and now is not None and now.decrypted and (was is None or not was.decrypted):
            notices.append(Notice("delivery", o.order_id, f"Order {o.order_id} (“{title}”) downloaded, "
                                                          "verified and decrypted"))  # fmt: skip
    return notices


class OrderFeed(QObject):
    """Live snapshots of the account's orders, and the notices drawn from them."""

    updated = pyqtSignal(object)
    """The new Snapshot, or None once the wallet is locked."""
    noticed = pyqtSignal(object)
    """A new Notice."""

    def __init__(self, ui: MainWindow, interval_ms: int = REFRESH_MS) -> None:
        super().__init__(ui)
        self.ui = ui
        self.session = ui.session
        self.worker = ui.worker
        self.snapshot: Snapshot | None = None
        self.notices: list[Notice] = []
        self.unread = 0
        self._busy = False
        self._again = False
        self._error = ""
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)

        self.button = QPushButton()
        self.button.setCheckable(True)
        self.button.toggled.connect(self._toggle)
        self.panel = QWidget()
        layout = QVBoxLayout(self.panel)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Notifications</b> (newest first; double-click one to open its order)"), 1)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        top.addWidget(self.clear_button)
        layout.addLayout(top)
        self.list = QListWidget()
        self.list.setMaximumHeight(140)
        self.list.itemDoubleClicked.connect(self._open)
        layout.addWidget(self.list)
        self.panel.hide()
        self._update_button()

        self.session.changed.connect(self._session_changed)
        self.session.automation_report.connect(lambda _report: self.refresh())
        self._session_changed()

    # ------------------------------------------------------------------ reading

    def _session_changed(self) -> None:
        opened = self.session.wallet
        if opened is None:
            self.timer.stop()
            self.snapshot = None
            self._error = ""
            self.updated.emit(None)
        elif self.snapshot is None or self.snapshot.address != opened.address:
            self.snapshot = None
            self.timer.start()
            self.refresh()

    def refresh(self) -> None:
        """Read a new snapshot off the GUI thread (once the one being read, if any, is in)."""
        opened = self.session.wallet
        if opened is None:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        automated = self.session.automate
        self.worker.run(read_snapshot, opened, automated, done=lambda s: self._read(opened, s),
                        error=self._failed)  # fmt: skip

    def _read(self, opened: Opened, snapshot: Snapshot) -> None:
        self._busy = False
        if self.session.wallet is not opened:
            return
        self._error = ""
        previous, self.snapshot = self.snapshot, snapshot
        if previous is not None:
            for notice in changes(previous, snapshot):
                self.add(notice)
        self.updated.emit(snapshot)
        if self._again:
            self._again = False
            self.refresh()

    def _failed(self, exc: BaseException) -> None:
        self._busy = False
        if isinstance(exc, WalletClosed):  # the wallet was locked during the read: nothing to report
            return
        message = f"Orders could not be read: {exc}"
        if message != self._error:  # once, not every few seconds while the chain is down
            self._error = message
            self.ui.banner.error(message)

    # ------------------------------------------------------------------ notices

    def add(self, notice: Notice) -> None:
        self.notices.insert(0, notice)
        item = QListWidgetItem(f"{when(notice.at)}  {notice.text}")
        item.setData(256, notice.order_id)
        self.list.insertItem(0, item)
        if not self.panel.isVisible():
            self.unread += 1
        self._update_button()
        if self.ui.banner.kind != "error":  # an error stays until dismissed
            self.ui.banner.info(notice.text)
        self.noticed.emit(notice)

    def clear(self) -> None:
        self.notices.clear()
        self.list.clear()
        self.unread = 0
        self._update_button()

    def _toggle(self, shown: bool) -> None:
        self.panel.setVisible(shown)
        if shown:
            self.unread = 0
        self._update_button()

    def _update_button(self) -> None:
        self.button.setText(f"Notifications ({self.unread} new)" if self.unread else "Notifications")
        self.button.setToolTip(f"{len(self.notices)} notification(s)" if self.notices else "No notifications yet")
        self.clear_button.setEnabled(bool(self.notices))

    def _open(self, item: QListWidgetItem) -> None:
        order_id = item.data(256)
        if isinstance(order_id, int):
            self.ui.orders.select(order_id)
            self.ui.show_page(self.ui.orders)

"""Orders centre: every order of the account, as buyer or seller, with its live state, the
deadline counting down on the chain's clock, and the actions its state allows now.

The orders come from the window's OrderFeed (the core's OrderBook sync on a timer, off the
GUI thread). Which action is possible is decided by the contract's lifecycle rules
(cpchain.chain.lifecycle.refusal, the same check the core makes before sending) and the
wallet's own (a seller accepts only fair orders for its products); a button whose action
is not possible is disabled, with the reason as its tooltip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cpchain.chain.lifecycle import Action, refusal
from cpchain.types import OrderState
from cpchain.wallet.db import OrderRecord
from cpchain.wallet.qt.notifications import Snapshot, countdown
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.product import state_text
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import Cell, cpc, fill_keyed_rows, heading, read_only_table, selected_key, short, when
from cpchain.wallet.rules import ROLE_BUYER, ROLE_SELLER

__all__ = ["ACTIONS", "COLUMNS", "ConfirmBar", "OrderAction", "OrdersPage", "action_refusal"]

COLUMNS = ["Order", "Role", "Product", "Price", "State", "Deadline", "Counterparty", "Note"]
FILTERS = [("All orders", ""), ("Buying", ROLE_BUYER), ("Selling", ROLE_SELLER), ("Open orders", "open")]


@dataclass(frozen=True)
class OrderAction:
    key: str
    label: str
    action: Action
    role: str  # "" for both
    confirm: str = ""  # asked first (inline) when not empty
    automatic: bool = False  # done by the seller's automation while it runs


ACTIONS = [
    OrderAction("accept", "Accept order", Action.SELLER_CONFIRM, ROLE_SELLER, automatic=True),
    OrderAction("deliver", "Deliver to proxy", Action.PROXY_FETCHED, ROLE_SELLER, automatic=True),
    OrderAction("confirm", "Confirm delivery", Action.BUYER_CONFIRM, ROLE_BUYER),
    OrderAction("dispute", "Dispute…", Action.BUYER_DISPUTE, ROLE_BUYER,
                confirm="Dispute this delivery? The order's proxy rules first; either party may then appeal "
                        "to the arbiter. The payment stays in escrow meanwhile."),
    OrderAction("withdraw", "Withdraw (refund)", Action.BUYER_WITHDRAW, ROLE_BUYER,
                confirm="Cancel this order and take the payment back?"),
    OrderAction("claim", "Claim timeout", Action.CLAIM_TIMEOUT, ""),
    OrderAction("agree", "Accept verdict", Action.ANSWER_VERDICT, ""),
    OrderAction("appeal", "Appeal to arbiter", Action.ANSWER_VERDICT, "",
                confirm="Appeal the proxy's verdict? The arbiter then rules, and its ruling is final."),
]  # fmt: skip
DONE_TEXT = {
    "accept": "accepted (deposit paid)", "deliver": "delivered to the proxy", "confirm": "delivery confirmed",
    "dispute": "disputed", "withdraw": "withdrawn, payment refunded", "claim": "timeout claimed",
    "agree": "verdict accepted", "appeal": "appealed to the arbiter",
}  # fmt: skip
ROLE_NAME = {ROLE_BUYER: "the buyer", ROLE_SELLER: "the seller"}


def _explain(reason: str, order: OrderRecord, snapshot: Snapshot) -> str:
    """The contract's terse reason as a sentence for this order."""
    _text, deadline = countdown(snapshot, order)
    at = f" ({when(deadline)})" if deadline else ""
    return {
        "only buyer": "Only the buyer can do this.",
        "only seller": "Only the seller can do this.",
        "only buyer or seller": "Only the buyer or the seller can do this.",
        "wrong state": f"Not possible while the order is {state_text(order.state)}.",
        "deadline passed": f"The deadline for this passed{at}.",
        "deadline not reached": f"Possible once the deadline passes{at}.",
        "no verdict yet": "The proxy has not ruled on the dispute yet.",
        "already agreed": "You already accepted the verdict.",
    }.get(reason, reason[:1].upper() + reason[1:] + ("" if reason.endswith(".") else "."))


def action_refusal(spec: OrderAction, order: OrderRecord, snapshot: Snapshot) -> str | None:
    """Why `spec` cannot be taken on `order` now (a sentence), or None if it can."""
    if spec.role and order.role != spec.role:
        return f"Only {ROLE_NAME[spec.role]} can do this."
    now = snapshot.now()
    status = snapshot.status(order)
    if spec.key == "deliver":  # not a contract call: SELLER_DATA to the proxy, which claims proxyFetched
        if order.state is not OrderState.SELLER_CONFIRMED:
            reason: str | None = "wrong state"
        else:
            reason = "deadline passed" if now >= order.end_time else None
    else:
        reason = refusal(spec.action, order.terms, status, snapshot.address, now, snapshot.windows)
    if reason is not None:
        return _explain(reason, order, snapshot)
    if spec.key == "accept" and order.order_id in snapshot.seller_refusals:
        return f"Not accepted: {snapshot.seller_refusals[order.order_id]}."
    if spec.automatic and snapshot.automated and not order.last_error:
        return "The wallet does this automatically while it is unlocked."
    return None


class ConfirmBar(QWidget):
    """An inline question with Yes/Cancel, for actions that cannot be undone."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.question = QLabel()
        self.question.setWordWrap(True)
        self.yes_button = QPushButton()
        self.no_button = QPushButton("Cancel")
        self.no_button.clicked.connect(self.cancel)
        layout.addWidget(self.question, 1)
        layout.addWidget(self.yes_button)
        layout.addWidget(self.no_button)
        self._then: Callable[[], None] | None = None
        self.yes_button.clicked.connect(self._yes)
        self.hide()

    def ask(self, question: str, answer: str, then: Callable[[], None]) -> None:
        self.question.setText(question)
        self.yes_button.setText(answer)
        self._then = then
        self.show()

    def cancel(self) -> None:
        self._then = None
        self.hide()

    def _yes(self) -> None:
        then, self._then = self._then, None
        self.hide()
        if then is not None:
            then()


class OrdersPage(Page):
    title = "Orders"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        self.feed = ui.feed
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(heading("Orders"))
        top.addStretch(1)
        self.filter = QComboBox()
        for label, value in FILTERS:
            self.filter.addItem(label, value)
        self.filter.activated.connect(lambda _i: self._render())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.feed.refresh)
        top.addWidget(self.filter)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        self.table = read_only_table(COLUMNS)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)
        self.summary = QLabel()
        layout.addWidget(self.summary)

        box = QGroupBox("Selected order")
        bl = QVBoxLayout(box)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in (("order", "Order"), ("product", "Product"), ("amounts", "Price and fees"),
                           ("parties", "Buyer / seller"), ("proxies", "Proxies"), ("state", "State"),
                           ("deadline", "Deadline"), ("note", "Note")):  # fmt: skip
            value = QLabel()
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            form.addRow(label, value)
        bl.addLayout(form)
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for spec in ACTIONS:
            button = QPushButton(spec.label)
            button.clicked.connect(lambda _checked=False, s=spec: self._clicked(s))
            self.buttons[spec.key] = button
            buttons.addWidget(button)
        buttons.addStretch(1)
        bl.addLayout(buttons)
        self.confirm_bar = ConfirmBar()
        bl.addWidget(self.confirm_bar)
        layout.addWidget(box)

        self.snapshot: Snapshot | None = None
        self.selected_id: int | None = None
        self.working: set[int] = set()
        self.feed.updated.connect(self._updated)
        self.clock = QTimer(self)
        self.clock.setInterval(1000)
        self.clock.timeout.connect(self._tick)
        self.clock.start()
        self._render()

    # ------------------------------------------------------------------ showing

    def activate(self) -> None:
        self.feed.refresh()
        self._updated(self.feed.snapshot)

    def select(self, order_id: int) -> None:
        """Select the order (once it is listed)."""
        self.selected_id = order_id
        if self.snapshot is not None and all(o.order_id != order_id for o in self._visible()):
            self.filter.setCurrentIndex(0)
        self._render()

    def _updated(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        self._render()

    def _visible(self) -> list[OrderRecord]:
        if self.snapshot is None:
            return []
        wanted = self.filter.currentData()
        return [o for o in self.snapshot.orders
                if not wanted or o.role == wanted or (wanted == "open" and not o.state.is_final)]  # fmt: skip

    def _render(self) -> None:
        snapshot = self.snapshot
        orders = self._visible()
        rows: list[tuple[int, list[Cell]]] = []
        for o in orders:
            counterparty = o.seller if o.role == ROLE_BUYER else o.buyer
            assert snapshot is not None
            rows.append((o.order_id, [str(o.order_id), o.role.capitalize(), snapshot.title(o), cpc(o.price),
                                      state_text(o.state), countdown(snapshot, o)[0] or "—",
                                      (short(counterparty), counterparty), self._note(o)]))  # fmt: skip
        fill_keyed_rows(self.table, rows, self.selected_id)
        if snapshot is None:
            self.summary.setText("Reading the account's orders from the chain…" if self.session.wallet else "")
        elif not snapshot.orders:
            self.summary.setText("No orders yet: buy a product in the market, or publish data to sell.")
        else:
            open_count = sum(1 for o in snapshot.orders if not o.state.is_final)
            self.summary.setText(f"{len(snapshot.orders)} order(s), {open_count} open; chain time "
                                 f"{when(snapshot.chain_now)}, read {when(snapshot.read_at)}")  # fmt: skip
        self._show_selected()

    def _note(self, o: OrderRecord) -> str:
        if o.last_error:
            return f"last attempt failed: {o.last_error}"
        if o.ignored:
            return f"not accepted: {o.ignored}"
        purchase = self.snapshot.purchases.get(o.order_id) if self.snapshot else None
        if purchase is not None and purchase.decrypted:
            return "data received and verified"
        if o.role == ROLE_SELLER and o.delivered:
            return "delivered to the proxy"
        return ""

    def _selection_changed(self) -> None:
        key = selected_key(self.table)
        if key is not None:
            self.selected_id = key
        self.confirm_bar.cancel()
        self._show_selected()

    def selected(self) -> OrderRecord | None:
        if self.snapshot is None or self.selected_id is None:
            return None
        return self.snapshot.order(self.selected_id)

    def _show_selected(self) -> None:
        order, snapshot = self.selected(), self.snapshot
        f = self.fields
        if order is None or snapshot is None:
            for label in f.values():
                label.setText("—")
            f["order"].setText("Select an order above.")
            for button in self.buttons.values():
                button.setEnabled(False)
                button.setToolTip("Select an order first.")
            return
        f["order"].setText(f"{order.order_id} (you are its {order.role})")
        f["product"].setText(f"{snapshot.title(order)} — {order.market_hash}")
        f["amounts"].setText(f"{cpc(order.price, 18)}, of which up to {cpc(2 * order.fee, 18)} to the proxies")
        f["parties"].setText(f"{order.buyer} / {order.seller}")
        f["proxies"].setText(order.proxy if order.proxy.lower() == order.proxy2.lower() else
                             f"{order.proxy} (backup {order.proxy2})")  # fmt: skip
        status = snapshot.status(order)
        state = state_text(order.state)
        if order.state is OrderState.DISPUTED:
            verdict = {1: "the proxy found the buyer at fault", 2: "the proxy found the seller at fault"}
            state += "; " + verdict.get(int(status.verdict), "no verdict yet")
            state += "; appealed" if status.appealed else ""
        f["state"].setText(state)
        self._show_deadline(order, snapshot)
        f["note"].setText(self._note(order) or "—")
        for spec in ACTIONS:
            button = self.buttons[spec.key]
            reason = "Working on this order…" if order.order_id in self.working else \
                action_refusal(spec, order, snapshot)  # fmt: skip
            button.setEnabled(reason is None)
            button.setToolTip(reason or f"{spec.label.rstrip('…')} (order {order.order_id})")

    def _show_deadline(self, order: OrderRecord, snapshot: Snapshot) -> None:
        text, deadline = countdown(snapshot, order)
        self.fields["deadline"].setText(f"{when(deadline)} — {text}" if deadline else "none (the order is closed)")

    def _tick(self) -> None:
        """The countdown, every second (and the buttons: a deadline may have passed)."""
        if not self.isVisible() or self.snapshot is None:
            return
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            order = self.snapshot.order(item.data(Qt.ItemDataRole.UserRole)) if item else None
            if order is not None:
                cell = self.table.item(row, 5)
                if cell is not None:
                    cell.setText(countdown(self.snapshot, order)[0] or "—")
        self._show_selected()

    # ------------------------------------------------------------------ acting

    def _clicked(self, spec: OrderAction) -> None:
        order = self.selected()
        if order is None:
            return
        if spec.confirm:
            self.confirm_bar.ask(f"Order {order.order_id}: {spec.confirm}", spec.label.rstrip("…"),
                                 lambda: self.act(spec.key, order.order_id))  # fmt: skip
        else:
            self.act(spec.key, order.order_id)

    def act(self, key: str, order_id: int) -> None:
        """Take action `key` on the order through the core (its own checks run again there)."""
        opened = self.session.wallet
        if opened is None:
            return
        spec = next(s for s in ACTIONS if s.key == key)
        self.working.add(order_id)
        self._show_selected()

        def finished() -> None:
            self.working.discard(order_id)
            self.feed.refresh()
            self._show_selected()

        def done(_result: object) -> None:
            finished()
            self.ui.banner.info(f"Order {order_id}: {DONE_TEXT[key]}.")

        def failed(exc: BaseException) -> None:
            finished()
            self.ui.banner.error(f"{spec.label.rstrip('…')} failed: {exc}")

        self.run(_call, opened, key, order_id, done=done, error=failed)


def _call(opened: Opened, key: str, order_id: int) -> object:
    """The core call behind action `key` (on a worker thread)."""
    buyer, seller = opened.buyer, opened.seller
    order = buyer.book.mine(order_id)
    party = seller if order.role == ROLE_SELLER else buyer
    calls: dict[str, Callable[[], object]] = {
        "accept": lambda: seller.confirm(order_id),
        "deliver": lambda: seller.deliver(order_id),
        "confirm": lambda: buyer.confirm(order_id),
        "dispute": lambda: buyer.dispute(order_id),
        "withdraw": lambda: buyer.withdraw(order_id),
        "claim": lambda: party.claim_timeout(order_id),
        "agree": lambda: party.answer_verdict(order_id, True),
        "appeal": lambda: party.answer_verdict(order_id, False),
    }
    return calls[key]()

"""Purchased data: every purchase with its data — download with progress and resume, the
SHA-256 check against the order's data hash, opening the file or its folder — and the
buyer's closing steps: confirm, dispute, and a review (1-5 and a comment) on the market.

Downloads run on a Worker thread (Buyer.receive, resumable); its progress reaches the bar
through a ProgressRelay, as does the progress of a delivery the background automation
receives. Files are opened through `open_url` (QDesktopServices), which tests replace.

A stream purchase has no file: once the seller bound the order (the automation stores the
stream key), "Show records" reads the channel's records available so far on the worker
(Buyer.subscribe from the channel's start, ending after a short idle time) into a read-only
view with their count; the first read is the delivery, after which the buyer confirms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt5.QtCore import Qt, QUrl
from PyQt5.QtGui import QDesktopServices
from PyQt5.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cpchain.proxy.streams.records import Record
from cpchain.proxy.streams.wire import StreamLocator, WireError
from cpchain.wallet.db import OrderRecord, PurchaseRecord
from cpchain.wallet.qt.notifications import Snapshot
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.orders import ACTIONS, ConfirmBar, action_refusal
from cpchain.wallet.qt.pages.product import state_text
from cpchain.wallet.qt.progress import ProgressRelay
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import cpc, fill_keyed_rows, heading, read_only_table, selected_key
from cpchain.wallet.rules import ROLE_BUYER, rate_refusal, receive_refusal

__all__ = ["COLUMNS", "IDLE_SECONDS", "PurchasesPage", "open_url", "read_records", "record_text"]

COLUMNS = ["Order", "Product", "Price", "State", "Data"]
RATINGS = [(5, "★★★★★ Excellent"), (4, "★★★★ Good"), (3, "★★★ Average"), (2, "★★ Poor"), (1, "★ Terrible")]
PHASES = {"download": "Downloading", "decrypt": "Decrypting"}
IDLE_SECONDS = 1.5
"""How long "Show records" waits for a further record before it shows what it has."""


def read_records(opened: Opened, order_id: int, idle: float = IDLE_SECONDS) -> list[Record]:
    """Every record of a stream purchase available so far, opened and checked (blocking: on the worker)."""
    return list(opened.buyer.subscribe(order_id, resume=False, idle_timeout=idle))


def record_text(record: Record) -> str:
    """One line for a record: its text if it is UTF-8, else its bytes in hex."""
    try:
        text = record.data.decode("utf-8")
    except UnicodeDecodeError:
        text = "0x" + record.data.hex()
    return f"#{record.seq}  {text}"


def open_url(url: QUrl) -> bool:
    """Open a file or folder with the desktop's application for it (tests replace this)."""
    return QDesktopServices.openUrl(url)


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class PurchasesPage(Page):
    title = "Purchased data"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        self.feed = ui.feed
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(heading("Purchased data"))
        top.addStretch(1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.feed.refresh)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        self.table = read_only_table(COLUMNS)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)
        self.summary = QLabel()
        layout.addWidget(self.summary)

        box = QGroupBox("Selected purchase")
        bl = QVBoxLayout(box)
        form = QFormLayout()
        self.title_label = QLabel()
        self.state_label = QLabel()
        self.data_label = QLabel()
        self.verified_label = QLabel()
        self.path_label = QLabel()
        for field in (self.title_label, self.state_label, self.data_label, self.verified_label, self.path_label):
            field.setWordWrap(True)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        form.addRow("Product", self.title_label)
        form.addRow("Order", self.state_label)
        form.addRow("Data", self.data_label)
        form.addRow("Progress", self.progress_bar)
        form.addRow("Integrity", self.verified_label)
        form.addRow("File", self.path_label)
        bl.addLayout(form)
        self.form = form

        row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download)
        self.open_file_button = QPushButton("Open file")
        self.open_file_button.clicked.connect(lambda: self._open(folder=False))
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.clicked.connect(lambda: self._open(folder=True))
        self.records_button = QPushButton("Show records")
        self.records_button.clicked.connect(self.show_records)
        self.confirm_button = QPushButton("Confirm delivery")
        self.confirm_button.clicked.connect(lambda: self._order_action("confirm"))
        self.dispute_button = QPushButton("Dispute…")
        self.dispute_button.clicked.connect(lambda: self._order_action("dispute"))
        for button in (self.download_button, self.open_file_button, self.open_folder_button, self.records_button,
                       self.confirm_button, self.dispute_button):  # fmt: skip
            row.addWidget(button)
        row.addStretch(1)
        bl.addLayout(row)
        self.records_box = QWidget()
        rl = QVBoxLayout(self.records_box)
        rl.setContentsMargins(0, 0, 0, 0)
        self.records_count = QLabel()
        self.records_view = QPlainTextEdit()
        self.records_view.setReadOnly(True)
        self.records_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.records_view.setMinimumHeight(90)
        rl.addWidget(self.records_count)
        rl.addWidget(self.records_view)
        bl.addWidget(self.records_box)
        self.confirm_bar = ConfirmBar()
        bl.addWidget(self.confirm_bar)

        review = QHBoxLayout()
        self.rating = QComboBox()
        for value, label in RATINGS:
            self.rating.addItem(label, value)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Your review of the data (shown on the market)")
        self.rate_button = QPushButton("Post review")
        self.rate_button.clicked.connect(self.rate)
        review.addWidget(QLabel("Review"))
        review.addWidget(self.rating)
        review.addWidget(self.comment, 1)
        review.addWidget(self.rate_button)
        bl.addLayout(review)
        layout.addWidget(box)

        self.snapshot: Snapshot | None = None
        self.selected_id: int | None = None
        self.progress: dict[int, tuple[str, int, int]] = {}
        self.downloading: set[int] = set()
        self.reviewed: set[int] = set()
        self.records: dict[int, list[Record]] = {}  # stream order id -> its records as last read
        self.reading: set[int] = set()
        self._records_shown: int | None = None
        self.relay = ProgressRelay(self)
        self.relay.progress.connect(self._progress)
        self.session.receive_progress.connect(self._progress)
        self.feed.updated.connect(self._updated)
        self._render()

    # ------------------------------------------------------------------ showing

    def activate(self) -> None:
        self.feed.refresh()
        self._updated(self.feed.snapshot)

    def select(self, order_id: int) -> None:
        self.selected_id = order_id
        self._render()

    def _updated(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        self._render()

    def _purchases(self) -> list[tuple[OrderRecord, PurchaseRecord | None]]:
        if self.snapshot is None:
            return []
        return [(o, self.snapshot.purchases.get(o.order_id)) for o in self.snapshot.orders if o.role == ROLE_BUYER]

    def _render(self) -> None:
        rows = self._purchases()
        snapshot = self.snapshot
        cells = [
            (o.order_id, [str(o.order_id), snapshot.title(o), cpc(o.price), state_text(o.state), self._data_text(o)])
            for o, _purchase in rows
        ] if snapshot else []  # fmt: skip
        fill_keyed_rows(self.table, cells, self.selected_id)
        if self.snapshot is None:
            self.summary.setText("Reading your purchases…" if self.session.wallet else "")
        elif not rows:
            self.summary.setText("No purchases yet: buy a product in the market.")
        else:
            ready = sum(1 for _o, p in rows if p is not None and p.received)
            self.summary.setText(f"{len(rows)} purchase(s), {ready} received and verified")
        self._show_selected()

    def _data_text(self, order: OrderRecord) -> str:
        """One line about the order's data: received, in progress, partial, or waiting."""
        purchase = self.snapshot.purchases.get(order.order_id) if self.snapshot else None
        if purchase is not None and purchase.decrypted:
            return "downloaded, verified and decrypted"
        if purchase is not None and purchase.is_stream:
            read = self.records.get(order.order_id)
            if order.order_id in self.reading:
                return "stream: reading the records…"
            if read is not None:
                return f"stream: {len(read)} record{'s' if len(read) != 1 else ''} read"
            if purchase.received:
                return "stream: key received, records ready to read"
            reason = receive_refusal(order.state)
            return "stream: ready to read" if reason is None else f"stream: {reason}"
        live = self.progress.get(order.order_id)
        if live is not None and (order.order_id in self.downloading or live[1] < live[2]):
            phase, done, total = live
            return f"{PHASES.get(phase, phase)} {done * 100 // max(total, 1)} % of {mib(total)}"
        part = self.snapshot.partial.get(order.order_id) if self.snapshot else None
        if part:
            return f"interrupted after {mib(part)}: resume to continue"
        reason = receive_refusal(order.state)
        return "ready to download" if reason is None else reason

    def _selection_changed(self) -> None:
        key = selected_key(self.table)
        if key is not None:
            self.selected_id = key
        self.confirm_bar.cancel()
        self._show_selected()

    def selected(self) -> tuple[OrderRecord, PurchaseRecord | None] | None:
        if self.snapshot is None or self.selected_id is None:
            return None
        order = self.snapshot.order(self.selected_id)
        if order is None or order.role != ROLE_BUYER:
            return None
        return order, self.snapshot.purchases.get(order.order_id)

    def _show_selected(self) -> None:
        chosen, snapshot = self.selected(), self.snapshot
        controls = (self.download_button, self.open_file_button, self.open_folder_button, self.records_button,
                    self.confirm_button, self.dispute_button, self.rate_button)  # fmt: skip
        stream = chosen is not None and chosen[1] is not None and chosen[1].is_stream
        for button in (self.download_button, self.open_file_button, self.open_folder_button):
            button.setVisible(not stream)
        self.records_button.setVisible(stream)
        self.records_box.setVisible(stream)
        self.progress_bar.setVisible(not stream)
        progress_label = self.form.labelForField(self.progress_bar)
        path_label = self.form.labelForField(self.path_label)
        if progress_label is not None:
            progress_label.setVisible(not stream)
        if isinstance(path_label, QLabel):
            path_label.setText("Channel" if stream else "File")
        if chosen is None or snapshot is None:
            for label in (self.title_label, self.state_label, self.data_label, self.verified_label, self.path_label):
                label.setText("—")
            self.title_label.setText("Select a purchase above.")
            self.progress_bar.setValue(0)
            for button in controls:
                button.setEnabled(False)
                button.setToolTip("Select a purchase first.")
            return
        order, purchase = chosen
        oid = order.order_id
        self.title_label.setText(f"{snapshot.title(order)} — {order.market_hash}")
        self.state_label.setText(f"{oid}: {state_text(order.state)}")
        self.data_label.setText(self._data_text(order))
        if stream:
            assert purchase is not None
            self._show_stream(order, purchase)
            self._show_order_actions(order, snapshot)
            return
        received = purchase is not None and purchase.decrypted
        live = self.progress.get(oid)
        if received:
            self.progress_bar.setValue(1000)
            self.progress_bar.setFormat("done")
        elif live is not None:
            phase, done, total = live
            self.progress_bar.setValue(done * 1000 // max(total, 1))
            self.progress_bar.setFormat(f"{PHASES.get(phase, phase)} %p%")
        else:
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("%p%")
        if purchase is not None and purchase.verified:
            self.verified_label.setText(f"verified: the file's SHA-256 is the order's data hash {order.data_hash}")
        else:
            self.verified_label.setText(f"not downloaded yet; it must hash (SHA-256) to {order.data_hash}")
        path = purchase.decrypted_path if received and purchase else ""
        self.path_label.setText(path or "—")

        # Download or resume.
        if received:
            why: str | None = "Already downloaded, verified and decrypted."
        elif oid in self.downloading:
            why = "Downloading…"
        else:
            why = receive_refusal(order.state)
            why = why[:1].upper() + why[1:] + "." if why else None
        self.download_button.setText("Resume download" if snapshot.partial.get(oid) and not received else "Download")
        self._enable(self.download_button, why, f"Download order {oid}'s data, check its hash and decrypt it")
        exists = bool(path) and Path(path).is_file()
        missing = None if exists else ("The file is not downloaded yet." if not received else f"{path} is missing.")
        self._enable(self.open_file_button, missing, f"Open {path}")
        self._enable(self.open_folder_button, missing, f"Open {Path(path).parent}" if path else "")
        self._show_order_actions(order, snapshot)

    def _show_order_actions(self, order: OrderRecord, snapshot: Snapshot) -> None:
        oid = order.order_id
        for key, button in (("confirm", self.confirm_button), ("dispute", self.dispute_button)):
            spec = next(s for s in ACTIONS if s.key == key)
            self._enable(button, action_refusal(spec, order, snapshot), f"{spec.label.rstrip('…')} (order {oid})")
        reason = rate_refusal(order.role, order.state)
        if reason is None and oid in self.reviewed:
            reason = "you reviewed this purchase"
        self._enable(self.rate_button, reason[:1].upper() + reason[1:] + "." if reason else None,
                     "Post the rating and comment on the market")  # fmt: skip

    def _show_stream(self, order: OrderRecord, purchase: PurchaseRecord) -> None:
        oid = order.order_id
        try:
            locator = StreamLocator.from_json(purchase.stream_locator)
            where = f"channel {locator.channel} on proxy {locator.endpoint.proxy}"
        except WireError:
            where = "—"
        self.path_label.setText(where)
        self.verified_label.setText("each record is checked as it is read (sealed under the channel's key, in "
                                    f"order, none missing); the channel is the order's data hash {order.data_hash}")
        if oid in self.reading:
            why: str | None = "Reading the records…"
        else:
            refusal = receive_refusal(order.state)
            why = refusal[:1].upper() + refusal[1:] + "." if refusal and not purchase.received else None
        self._enable(self.records_button, why, f"Read the records of order {oid} available so far")
        if self._records_shown != oid:
            self._records_shown = oid
            read = self.records.get(oid)
            self.records_view.setPlainText("\n".join(record_text(r) for r in read) if read is not None else "")
        read = self.records.get(oid)
        self.records_count.setText("Reading…" if oid in self.reading else
                                   "Not read yet." if read is None else
                                   f"{len(read)} record{'s' if len(read) != 1 else ''}")  # fmt: skip

    def show_records(self) -> None:
        opened, chosen = self.session.wallet, self.selected()
        if opened is None or chosen is None or chosen[0].order_id in self.reading:
            return
        oid = chosen[0].order_id
        self.reading.add(oid)
        self._show_selected()

        def done(records: list[Record]) -> None:
            self.reading.discard(oid)
            self.records[oid] = records
            if self._records_shown == oid:
                self._records_shown = None  # show the new records
            self.feed.refresh()  # the first read is the delivery
            self._render()

        def failed(exc: BaseException) -> None:
            self.reading.discard(oid)
            self.ui.banner.error(f"Reading the records of order {oid} failed: {exc}")
            self._render()

        self.run(read_records, opened, oid, done=done, error=failed)

    @staticmethod
    def _enable(button: QPushButton, reason: str | None, tip: str) -> None:
        button.setEnabled(reason is None)
        button.setToolTip(reason or tip)

    def _progress(self, order_id: int, phase: str, done: int, total: int) -> None:
        """A progress report of a receive (on the GUI thread)."""
        self.progress[order_id] = (phase, done, total)
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == order_id and self.snapshot:
                order = self.snapshot.order(order_id)
                cell = self.table.item(row, 4)
                if order is not None and cell is not None:
                    cell.setText(self._data_text(order))
        if order_id == self.selected_id:
            self.progress_bar.setValue(done * 1000 // max(total, 1))
            self.progress_bar.setFormat(f"{PHASES.get(phase, phase)} %p%")
            order = self.snapshot.order(order_id) if self.snapshot else None
            if order is not None:
                self.data_label.setText(self._data_text(order))

    # ------------------------------------------------------------------ acting

    def download(self) -> None:
        opened, chosen = self.session.wallet, self.selected()
        if opened is None or chosen is None:
            return
        oid = chosen[0].order_id
        self.downloading.add(oid)
        self._show_selected()

        def done(purchase: PurchaseRecord) -> None:
            self.downloading.discard(oid)
            self.ui.banner.info(f"Order {oid}: downloaded, SHA-256 verified and decrypted to {purchase.decrypted_path}")
            self.feed.refresh()
            self._show_selected()

        def failed(exc: BaseException) -> None:
            self.downloading.discard(oid)
            self.ui.banner.error(f"Download of order {oid} failed: {exc}. What was downloaded is kept; "
                                 "Resume download continues from there.")  # fmt: skip
            self.feed.refresh()
            self._show_selected()

        self.run(opened.buyer.receive, oid, self.relay.callback(oid), done=done, error=failed)

    def _open(self, *, folder: bool) -> None:
        chosen = self.selected()
        if chosen is None or chosen[1] is None or not chosen[1].decrypted_path:
            return
        path = Path(chosen[1].decrypted_path)
        target = path.parent if folder else path
        if not open_url(QUrl.fromLocalFile(str(target))):
            self.ui.banner.error(f"No application could open {target}")

    def _order_action(self, key: str) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        oid = chosen[0].order_id
        spec = next(s for s in ACTIONS if s.key == key)
        if spec.confirm:
            self.confirm_bar.ask(f"Order {oid}: {spec.confirm}", spec.label.rstrip("…"),
                                 lambda: self.ui.orders.act(key, oid))  # fmt: skip
        else:
            self.ui.orders.act(key, oid)

    def rate(self) -> None:
        opened, chosen = self.session.wallet, self.selected()
        if opened is None or chosen is None:
            return
        oid = chosen[0].order_id
        rating, comment = int(self.rating.currentData()), self.comment.text().strip()
        self.rate_button.setEnabled(False)

        def done(_review: object) -> None:
            self.reviewed.add(oid)
            self.comment.clear()
            self.ui.banner.info(f"Review of order {oid} posted: {rating} / 5.")
            self._show_selected()

        def failed(exc: BaseException) -> None:
            self.ui.banner.error(f"Review failed: {exc}")
            self._show_selected()

        self.run(opened.buyer.rate, oid, rating, comment, done=done, error=failed)

"""Wallet page: balance, receive (address and its QR code), send (fee and total shown and
confirmed before anything is signed), and the account's transaction history."""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QApplication,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cpchain.wallet.funds import Transfer, TransferQuote
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.widgets import cpc, heading, qr_pixmap, read_only_table, short, when

__all__ = ["WalletPage"]

HISTORY_COLUMNS = ["Time", "Type", "Counterparty", "Amount", "Fee", "Status", "Transaction"]


class WalletPage(Page):
    title = "Wallet"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(heading("Wallet"))
        top.addStretch(1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.activate)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        grid = QGridLayout()
        # -- balance and receive
        receive = QGroupBox("Balance and receiving")
        rlayout = QGridLayout(receive)
        self.balance_label = QLabel()
        font = self.balance_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        self.balance_label.setFont(font)
        self.address_label = QLabel()
        self.address_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("Copy address")
        self.copy_button.clicked.connect(self.copy_address)
        self.qr_label = QLabel()
        self.qr_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        rlayout.addWidget(QLabel("Balance"), 0, 0)
        rlayout.addWidget(self.balance_label, 1, 0)
        rlayout.addWidget(QLabel("Your address (to receive CPC):"), 2, 0)
        rlayout.addWidget(self.address_label, 3, 0)
        rlayout.addWidget(self.copy_button, 4, 0, Qt.AlignmentFlag.AlignLeft)
        rlayout.addWidget(self.qr_label, 0, 1, 6, 1)
        rlayout.setRowStretch(5, 1)
        grid.addWidget(receive, 0, 0)

        # -- send
        send = QGroupBox("Send CPC")
        slayout = QVBoxLayout(send)
        form = QFormLayout()
        self.to_field = QLineEdit()
        self.to_field.setPlaceholderText("0x… recipient address")
        self.amount_field = QLineEdit()
        self.amount_field.setPlaceholderText("amount in CPC, e.g. 1.5")
        self.review_button = QPushButton("Review…")
        self.review_button.clicked.connect(self.review)
        form.addRow("To", self.to_field)
        form.addRow("Amount", self.amount_field)
        form.addRow("", self.review_button)
        slayout.addLayout(form)
        self.review_box = QWidget()
        rv = QFormLayout(self.review_box)
        self.review_to = QLabel()
        self.review_to.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.review_amount = QLabel()
        self.review_fee = QLabel()
        self.review_total = QLabel()
        self.review_after = QLabel()
        buttons = QHBoxLayout()
        self.confirm_button = QPushButton("Confirm and send")
        self.confirm_button.clicked.connect(self.send)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_review)
        buttons.addWidget(self.confirm_button)
        buttons.addWidget(self.cancel_button)
        rv.addRow("Send to", self.review_to)
        rv.addRow("Amount", self.review_amount)
        rv.addRow("Network fee (at most)", self.review_fee)
        rv.addRow("Total", self.review_total)
        rv.addRow("Balance afterwards (at least)", self.review_after)
        rv.addRow(buttons)
        self.review_box.hide()
        slayout.addWidget(self.review_box)
        slayout.addStretch(1)
        grid.addWidget(send, 0, 1)
        layout.addLayout(grid)

        # -- history
        layout.addWidget(QLabel("<b>Transactions</b> (this account's, newest first)"))
        self.history = read_only_table(HISTORY_COLUMNS)
        self.history_label = QLabel()
        layout.addWidget(self.history, 1)
        layout.addWidget(self.history_label)
        self._quote: TransferQuote | None = None
        self._qr_for = ""

    # ------------------------------------------------------------------ showing

    def activate(self) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        address = opened.address
        self.address_label.setText(address)
        if self._qr_for != address:
            self.qr_label.setPixmap(qr_pixmap(address))
            self.qr_label.setToolTip(f"QR code of {address}")
            self._qr_for = address
        self.run(opened.funds.balance, done=lambda wei: self.balance_label.setText(cpc(wei)))
        self.history_label.setText("Reading the chain…")
        self.run(opened.funds.history, done=self._show_history, error=self._history_failed)

    def _history_failed(self, exc: BaseException) -> None:
        self.history_label.setText("")
        self.ui.banner.error(f"History: {exc}")

    def _show_history(self, transfers: list[Transfer]) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        me = opened.address
        self.history.setRowCount(len(transfers))
        for row, t in enumerate(transfers):
            direction = t.direction(me)
            kind = {"in": "Received", "out": "Sent", "self": "To self"}[direction]
            if t.action != "transfer":
                kind = f"{kind}: {t.action}"
            other = t.sender if direction == "in" else t.to
            cells = [
                when(t.time), kind, other or "(new contract)",
                ("+" if direction == "in" else "−" if t.value else "") + cpc(t.value),
                cpc(t.fee) if direction != "in" else "", "confirmed" if t.ok else "failed", t.tx_hash,
            ]  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 2:
                    item.setToolTip(other)
                self.history.setItem(row, col, item)
        self.history_label.setText(f"{len(transfers)} transaction(s)" if transfers else "No transactions yet.")

    def copy_address(self) -> None:
        if self.session.wallet is not None:
            clipboard = QApplication.clipboard()
            assert clipboard is not None
            clipboard.setText(self.session.wallet.address)
            self.ui.banner.info("Address copied.")

    # ------------------------------------------------------------------ sending

    def review(self) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        self.review_button.setEnabled(False)

        def quoted(quote: TransferQuote) -> None:
            self.review_button.setEnabled(True)
            self._quote = quote
            self.review_to.setText(quote.to)
            self.review_amount.setText(cpc(quote.value, 18))
            self.review_fee.setText(f"{cpc(quote.fee, 18)} ({quote.gas} gas)")
            self.review_total.setText(cpc(quote.total, 18))
            self.review_after.setText(cpc(quote.balance - quote.total, 18))
            self.review_box.show()

        def failed(exc: BaseException) -> None:
            self.review_button.setEnabled(True)
            self.cancel_review()
            self.ui.banner.error(f"Cannot send: {exc}")

        self.run(opened.funds.quote, self.to_field.text(), self.amount_field.text(), done=quoted, error=failed)

    def cancel_review(self) -> None:
        self._quote = None
        self.review_box.hide()

    def send(self) -> None:
        opened, quote = self.session.wallet, self._quote
        if opened is None or quote is None:
            return
        self.confirm_button.setEnabled(False)

        def sent(transfer: Transfer) -> None:
            self.confirm_button.setEnabled(True)
            self.cancel_review()
            self.to_field.clear()
            self.amount_field.clear()
            self.ui.banner.info(f"Sent {cpc(transfer.value, 18)} to {short(transfer.to)} in {transfer.tx_hash} "
                                f"(fee {cpc(transfer.fee, 18)}).")  # fmt: skip
            self.activate()

        def failed(exc: BaseException) -> None:
            self.confirm_button.setEnabled(True)
            self.cancel_review()
            self.ui.banner.error(f"Sending failed: {exc}")

        self.run(opened.funds.send, quote, done=sent, error=failed)

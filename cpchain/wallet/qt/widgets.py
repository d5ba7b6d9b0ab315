"""Small widgets and formatting shared by the pages: the message banner, QR codes, amounts."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

import segno
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from cpchain.wallet.funds import format_amount

__all__ = ["Banner", "columns", "cpc", "heading", "hide_row_numbers", "qr_pixmap", "rating_text", "short", "when"]


class Banner(QFrame):
    """A one-line message across the top of the window: an error (red) or a notice (green)."""

    STYLES: ClassVar[dict[str, str]] = {
        "error": "QFrame#banner { background: #fde2e1; border: 1px solid #e0a3a0; } QLabel { color: #8a1c14; }",
        "info": "QFrame#banner { background: #e3f4e1; border: 1px solid #a6d1a0; } QLabel { color: #1d5a17; }",
    }
    dismissed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QPushButton("Dismiss")
        self.close_button.clicked.connect(self.dismiss)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button)
        self.kind = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        self.kind = kind
        self.setStyleSheet(self.STYLES[kind])
        self.label.setText(text)
        self.show()

    def error(self, text: str) -> None:
        self.show_message(text, "error")

    def info(self, text: str) -> None:
        self.show_message(text, "info")

    def text(self) -> str:
        """The message shown, "" when none is."""
        return "" if self.isHidden() else self.label.text()

    def dismiss(self) -> None:
        self.kind = ""
        self.label.clear()
        self.hide()
        self.dismissed.emit()


def heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 1.4)
    font.setBold(True)
    label.setFont(font)
    return label


def qr_pixmap(text: str, scale: int = 5) -> QPixmap:
    """A QR code of `text` (error correction M, with its quiet zone) as a pixmap."""
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    pixmap = QPixmap()
    pixmap.loadFromData(buffer.getvalue(), "PNG")
    return pixmap


def cpc(wei: int | str, places: int = 6) -> str:
    return format_amount(int(wei), places)


def short(address: str) -> str:
    return f"{address[:8]}…{address[-6:]}" if len(address) > 16 else address


def when(unix: float) -> str:
    """Local date and time of a unix timestamp."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def rating_text(average: float | Decimal | None, count: int) -> str:
    if not count or average is None:
        return "no ratings yet"
    return f"{float(average):.1f} / 5 ({count} rating{'s' if count != 1 else ''})"


def columns(table: QTableWidget) -> QHeaderView:
    """The table's column header."""
    header = table.horizontalHeader()
    assert header is not None
    return header


def hide_row_numbers(table: QTableWidget) -> None:
    header = table.verticalHeader()
    assert header is not None
    header.hide()


def read_only_table(headers: list[str], stretch: int | None = None) -> QTableWidget:
    """A table of records the user selects one row of but never edits; column `stretch` takes
    the spare width (None: the last one), the others fit their contents."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    hide_row_numbers(table)
    columns(table).setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch is None:
        columns(table).setStretchLastSection(True)
    else:
        columns(table).setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    return table


Cell = str | tuple[str, str]  # text, or (text, tooltip)


def fill_keyed_rows(table: QTableWidget, rows: Sequence[tuple[int, Sequence[Cell]]], selected: int | None) -> None:
    """Replace a read_only_table's rows, each keyed by an id kept in its first cell, and keep
    the row of `selected` selected (none if it is gone), without firing selection signals."""
    table.blockSignals(True)
    table.setRowCount(len(rows))
    selected_row = -1
    for row, (key, cells) in enumerate(rows):
        for col, cell in enumerate(cells):
            text, tip = (cell, "") if isinstance(cell, str) else cell
            item = QTableWidgetItem(text)
            if col == 0:
                item.setData(Qt.ItemDataRole.UserRole, key)
            if tip:
                item.setToolTip(tip)
            table.setItem(row, col, item)
        if key == selected:
            selected_row = row
    if selected_row >= 0:
        table.selectRow(selected_row)
    else:
        table.clearSelection()
    table.blockSignals(False)


def selected_key(table: QTableWidget) -> int | None:
    """The id (fill_keyed_rows) of the selected row, None without a selection."""
    model = table.selectionModel()
    rows = model.selectedRows() if model is not None else []
    item = table.item(rows[0].row(), 0) if rows else None
    return item.data(Qt.ItemDataRole.UserRole) if item else None

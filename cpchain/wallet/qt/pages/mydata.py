"""My data: this account's listings (the market's, joined with the wallet's records) and its
encrypted uploads, with what the seller can do to each listing: edit it (a new signed
version), hide or show it, change its cover, delete it, publish again one the market has not
accepted yet, or open it as buyers see it. A stream listing shows its channel (id, proxy, and
its state as the proxy reports it, read on the worker) and can end the channel."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from cpchain.proxy.streams.client import StreamClient, StreamRefusedError
from cpchain.proxy.streams.wire import STORAGE_TYPE as STREAM_STORAGE
from cpchain.proxy.streams.wire import StreamLocator, WireError
from cpchain.types import ProductDescription
from cpchain.wallet.db import ProductRecord, UploadRecord
from cpchain.wallet.errors import BadInput, translated
from cpchain.wallet.funds import parse_amount
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.market import CATEGORIES
from cpchain.wallet.qt.pages.publish import IMAGE_FILTER, _bytes, parse_tags
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import columns, cpc, heading, read_only_table, when

__all__ = ["MyData", "MyDataPage", "Row", "channel_state"]

LISTING_COLUMNS = ["Title", "Price", "Status", "Sales", "Category", "Listed", "File"]
UPLOAD_COLUMNS = ["Name", "Size", "Storage", "Uploaded", "Listings", "Data hash", "Source file"]
PENDING = "not published yet"


@dataclass
class Row:
    """One listing: the market's view of it (None while not published) and the wallet's record."""

    market_hash: str
    title: str
    price: int
    status: str  # "visible", "hidden" or PENDING
    sales: int
    category: str
    created: str
    description: str
    tags: tuple[str, ...]
    upload: UploadRecord | None
    has_cover: bool

    @property
    def locator(self) -> StreamLocator | None:
        """The stream channel behind the listing (None for a file)."""
        if self.upload is None or self.upload.storage_type != STREAM_STORAGE:
            return None
        try:
            return StreamLocator.from_json(self.upload.locator)
        except WireError:
            return None


def channel_state(opened: Opened, locator: StreamLocator) -> str:
    """The channel's state as its proxy reports it, as a phrase (blocking: on the worker)."""
    client = StreamClient.for_locator(opened.ctx.me.account, opened.ctx.domain, locator)
    with translated(f"channel {locator.channel}"):
        try:
            status = client.publish_status(locator.channel)
        except StreamRefusedError as exc:
            if exc.code == "channel_ended":
                return "ended: no more records; buyers read what is there until the retention ends"
            raise
    seq = int(status.get("next_seq", 0))
    return f"{status.get('state', 'open')}: {seq} record{'s' if seq != 1 else ''} published"


@dataclass
class MyData:
    rows: list[Row]
    uploads: list[UploadRecord]
    listings: dict[int, int]  # upload id -> how many listings (market or pending) use it


class MyDataPage(Page):
    title = "My data"

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(heading("My data"))
        top.addStretch(1)
        self.publish_button = QPushButton("Publish new data…")
        self.publish_button.clicked.connect(lambda: self.ui.show_page(self.ui.publish))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.activate)
        top.addWidget(self.publish_button)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)

        layout.addWidget(QLabel("<b>Listings</b> (hidden ones are out of the market's lists; orders on them stay "
                                "valid)"))  # fmt: skip
        self.table = read_only_table(LISTING_COLUMNS, stretch=0)
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.cellDoubleClicked.connect(lambda row, _c: self.open_listing())
        layout.addWidget(self.table, 3)

        actions = QHBoxLayout()
        self.edit_button = QPushButton("Edit…")
        self.edit_button.clicked.connect(self.start_edit)
        self.visibility_button = QPushButton("Hide")
        self.visibility_button.clicked.connect(self.toggle_visibility)
        self.cover_button = QPushButton("Cover image…")
        self.cover_button.clicked.connect(self.change_cover)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete)
        self.retry_button = QPushButton("Publish again")
        self.retry_button.clicked.connect(self.retry)
        self.open_button = QPushButton("Open in market")
        self.open_button.clicked.connect(self.open_listing)
        for button in (self.edit_button, self.visibility_button, self.cover_button, self.delete_button,
                       self.retry_button, self.open_button):  # fmt: skip
            actions.addWidget(button)
        actions.addStretch(1)
        layout.addLayout(actions)

        self.edit_box = QGroupBox("Edit the listing (publishes a new signed version; orders on the old one stay valid)")
        form = QFormLayout(self.edit_box)
        self.edit_title = QLineEdit()
        self.edit_price = QLineEdit()
        self.edit_category = QComboBox()
        self.edit_category.addItem("No category", "")
        for name in CATEGORIES:
            self.edit_category.addItem(name, name)
        self.edit_description = QPlainTextEdit()
        self.edit_description.setMaximumHeight(80)
        self.edit_tags = QLineEdit()
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Publish new version")
        self.save_button.clicked.connect(self.save_edit)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.edit_box.hide)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        form.addRow("Title", self.edit_title)
        form.addRow("Price (CPC)", self.edit_price)
        form.addRow("Category", self.edit_category)
        form.addRow("Description", self.edit_description)
        form.addRow("Tags", self.edit_tags)
        form.addRow(buttons)
        self.edit_box.hide()
        layout.addWidget(self.edit_box)

        self.channel_box = QGroupBox("Stream channel")
        cf = QFormLayout(self.channel_box)
        self.channel_id_label = QLabel()
        self.channel_proxy_label = QLabel()
        self.channel_state_label = QLabel()
        for label in (self.channel_id_label, self.channel_proxy_label, self.channel_state_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
        self.end_channel_button = QPushButton("End channel…")
        self.end_channel_button.clicked.connect(self.end_channel)
        cf.addRow("Channel", self.channel_id_label)
        cf.addRow("Proxy", self.channel_proxy_label)
        cf.addRow("State", self.channel_state_label)
        cf.addRow(self.end_channel_button)
        self.channel_box.hide()
        layout.addWidget(self.channel_box)

        layout.addWidget(QLabel("<b>Encrypted uploads</b> (the data behind the listings; keys stay in this wallet)"))
        self.uploads_table = read_only_table(UPLOAD_COLUMNS, stretch=0)
        columns(self.uploads_table).setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        columns(self.uploads_table).setSectionResizeMode(len(UPLOAD_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.uploads_table.setTextElideMode(Qt.TextElideMode.ElideLeft)
        layout.addWidget(self.uploads_table, 2)
        self.status_label = QLabel()
        layout.addWidget(self.status_label)

        self.data: MyData | None = None
        self._editing = ""
        self._channel = ""  # the channel shown in the channel box
        self.channel_states: dict[str, str] = {}  # channel id -> its state as last read
        # Replaceable (tests answer without a native dialog).
        self.ask_image: Callable[[], str] = self._ask_image
        self.confirm: Callable[[str], bool] = self._confirm
        self._selected()

    # ------------------------------------------------------------------ loading

    def activate(self) -> None:
        opened = self.session.wallet
        if opened is None:
            return
        self.status_label.setText("Reading the market…")
        self.refresh_button.setEnabled(False)
        self.run(self._read, opened, done=self._show, error=self._failed)

    @staticmethod
    def _read(opened: Opened) -> MyData:
        seller = opened.seller
        uploads = {u.id: u for u in seller.uploads()}
        local = {p.market_hash: p for p in seller.products()}
        rows = []
        listings: dict[int, int] = {}
        for p in seller.market_products():
            record = local.get(p["market_hash"])
            upload = uploads.get(record.upload_id) if record is not None else None
            rows.append(Row(p["market_hash"], p["title"], int(p["price"]), str(p["status"]).lower(),
                            int(p.get("sales", 0)), p.get("category") or "", str(p.get("created", "")),
                            p.get("description") or "", tuple(p.get("tags") or ()), upload,
                            bool(p.get("cover_url"))))  # fmt: skip
            if upload is not None:
                listings[upload.id] = listings.get(upload.id, 0) + 1
        for record in local.values():
            if not record.published:
                upload = uploads.get(record.upload_id)
                desc = _description(record)
                rows.append(Row(record.market_hash, record.title, record.price, PENDING, 0, desc.category, "",
                                desc.description, desc.tags, upload, False))  # fmt: skip
                if upload is not None:
                    listings[upload.id] = listings.get(upload.id, 0) + 1
        return MyData(rows, sorted(uploads.values(), key=lambda u: -u.id), listings)

    def _failed(self, exc: BaseException) -> None:
        self.refresh_button.setEnabled(True)
        self.status_label.setText("")
        self.ui.banner.error(f"My data: {exc}")

    def _show(self, data: MyData) -> None:
        self.refresh_button.setEnabled(True)
        self.data = data
        self.table.setRowCount(len(data.rows))
        for r, row in enumerate(data.rows):
            status = {"visible": "Listed", "hidden": "Hidden"}.get(row.status, "Not published yet")
            cells = [row.title, cpc(row.price), status, str(row.sales), row.category or "—",
                     row.created[:10] or "—", row.upload.name if row.upload else "—"]  # fmt: skip
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 0:
                    item.setToolTip(row.market_hash)
                self.table.setItem(r, c, item)
        self.uploads_table.setRowCount(len(data.uploads))
        for r, u in enumerate(data.uploads):
            stream = u.storage_type == STREAM_STORAGE
            cells = [u.name, "stream channel" if stream else _bytes(u.plain_size), u.storage_type, when(u.created),
                     str(data.listings.get(u.id, 0)), u.data_hash[:16] + "…",
                     _channel_text(u) if stream else u.source_path]  # fmt: skip
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip({5: u.data_hash, 6: u.source_path}.get(c, ""))
                self.uploads_table.setItem(r, c, item)
        pending = sum(1 for row in data.rows if row.status == PENDING)
        self.status_label.setText(
            f"{len(data.rows) - pending} listing(s) on the market, {pending} not published yet, "
            f"{len(data.uploads)} upload(s)."
        )
        self._channel = ""  # read the selected channel's state again
        self._selected()

    # ------------------------------------------------------------------ the selected listing

    def current(self) -> Row | None:
        row = self.table.currentRow()
        if self.data is None or not self.table.selectedItems() or not 0 <= row < len(self.data.rows):
            return None
        return self.data.rows[row]

    def select(self, market_hash: str) -> bool:
        """Select the listing with this market hash (False if it is not shown)."""
        for r, row in enumerate(self.data.rows if self.data else []):
            if row.market_hash == market_hash:
                self.table.selectRow(r)
                return True
        return False

    def _selected(self) -> None:
        row = self.current()
        listed = row is not None and row.status in ("visible", "hidden")
        for button in (self.edit_button, self.visibility_button, self.cover_button, self.delete_button):
            button.setEnabled(listed)
        self.visibility_button.setText("Show" if row is not None and row.status == "hidden" else "Hide")
        self.retry_button.setEnabled(row is not None and row.status == PENDING)
        self.open_button.setEnabled(row is not None and row.status == "visible")
        if row is None or row.market_hash != self._editing:
            self.edit_box.hide()
        self._show_channel(row)

    # ------------------------------------------------------------------ stream channels

    def _show_channel(self, row: Row | None) -> None:
        locator = row.locator if row is not None else None
        opened = self.session.wallet
        if locator is None or opened is None:
            self._channel = ""
            self.channel_box.hide()
            return
        channel = locator.channel
        self.channel_id_label.setText(channel)
        self.channel_proxy_label.setText(f"{locator.endpoint.proxy} ({locator.endpoint.host}, stream ports "
                                         f"{locator.endpoint.ws_port}/{locator.endpoint.http_port})")  # fmt: skip
        self.channel_box.show()
        if channel == self._channel:
            return
        self._channel = channel
        self._read_channel(opened, locator)

    def _read_channel(self, opened: Opened, locator: StreamLocator) -> None:
        channel = locator.channel
        self.channel_state_label.setText(self.channel_states.get(channel, "reading…"))
        self.end_channel_button.setEnabled(False)
        self.end_channel_button.setToolTip("Reading the channel's state…")

        def read(state: str) -> None:
            self.channel_states[channel] = state
            if channel == self._channel:
                self.channel_state_label.setText(state)
                ended = state.startswith("ended")
                self.end_channel_button.setEnabled(not ended)
                self.end_channel_button.setToolTip("The channel has ended." if ended else
                                                   "End the channel: no more records can be published")  # fmt: skip

        def failed(exc: BaseException) -> None:
            if channel == self._channel:
                self.channel_state_label.setText(f"unknown: {exc}")
                self.end_channel_button.setEnabled(True)
                self.end_channel_button.setToolTip("End the channel: no more records can be published")

        self.run(channel_state, opened, locator, done=read, error=failed)

    def end_channel(self) -> None:
        opened, row = self.session.wallet, self.current()
        locator = row.locator if row is not None else None
        if opened is None or row is None or locator is None:
            return
        if not self.confirm(f"End the channel of “{row.title}”? No more records can be published to it; buyers "
                            "can still read the records already there. This cannot be undone."):  # fmt: skip
            return
        self.end_channel_button.setEnabled(False)

        def ended(_reply: object) -> None:
            self.ui.banner.info(f"The channel of “{row.title}” has ended.")
            if self._channel == locator.channel:
                self._read_channel(opened, locator)

        def failed(exc: BaseException) -> None:
            self.ui.banner.error(f"Ending the channel failed: {exc}")
            if self._channel == locator.channel:
                self._read_channel(opened, locator)

        self.run(opened.seller.end_channel, row.market_hash, done=ended, error=failed)

    def _done(self, text: str) -> Callable[[Any], None]:
        def done(_result: Any) -> None:
            self.ui.banner.info(text)
            self.activate()

        return done

    def _error(self, what: str) -> Callable[[BaseException], None]:
        def error(exc: BaseException) -> None:
            self.ui.banner.error(f"{what}: {exc}")
            self.activate()

        return error

    def toggle_visibility(self) -> None:
        opened, row = self.session.wallet, self.current()
        if opened is None or row is None:
            return
        if row.status == "hidden":
            self.run(opened.seller.show, row.market_hash, done=self._done(f"“{row.title}” is listed again."),
                     error=self._error("Showing failed"))  # fmt: skip
        else:
            self.run(opened.seller.hide, row.market_hash,
                     done=self._done(f"“{row.title}” is hidden from the market's lists."),
                     error=self._error("Hiding failed"))  # fmt: skip

    def delete(self) -> None:
        opened, row = self.session.wallet, self.current()
        if opened is None or row is None:
            return
        if not self.confirm(f"Delete “{row.title}” from the market? Buyers will no longer find it; open orders "
                            "stay valid. This cannot be undone."):  # fmt: skip
            return
        self.run(opened.seller.delete, row.market_hash, done=self._done(f"“{row.title}” was deleted from the market."),
                 error=self._error("Deleting failed"))  # fmt: skip

    def retry(self) -> None:
        opened, row = self.session.wallet, self.current()
        if opened is None or row is None:
            return
        self.run(opened.seller.republish, row.market_hash, done=self._done(f"“{row.title}” is published."),
                 error=self._error("Publishing failed"))  # fmt: skip

    def change_cover(self) -> None:
        opened, row = self.session.wallet, self.current()
        if opened is None or row is None:
            return
        name = self.ask_image()
        if not name:
            return
        self.run(opened.seller.set_cover, row.market_hash, Path(name),
                 done=self._done(f"The cover of “{row.title}” was updated."),
                 error=self._error("Cover image refused"))  # fmt: skip

    def open_listing(self) -> None:
        row = self.current()
        if row is not None and row.status == "visible":
            self.ui.show_product(row.market_hash)

    # ------------------------------------------------------------------ editing

    def start_edit(self) -> None:
        row = self.current()
        if row is None:
            return
        self._editing = row.market_hash
        self.edit_title.setText(row.title)
        self.edit_price.setText(cpc(row.price, 18).removesuffix(" CPC"))
        index = self.edit_category.findData(row.category)
        if index < 0:
            self.edit_category.addItem(row.category, row.category)
            index = self.edit_category.count() - 1
        self.edit_category.setCurrentIndex(index)
        self.edit_description.setPlainText(row.description)
        self.edit_tags.setText(", ".join(row.tags))
        self.edit_box.show()

    def save_edit(self) -> None:
        opened, row = self.session.wallet, self.current()
        if opened is None or row is None or row.market_hash != self._editing:
            return
        try:
            price = parse_amount(self.edit_price.text())
        except BadInput as exc:
            self.ui.banner.error(f"Price: {exc}")
            return
        self.save_button.setEnabled(False)

        def saved(record: ProductRecord) -> None:
            self.save_button.setEnabled(True)
            self._editing = ""
            self.edit_box.hide()
            self._done(f"“{record.title}” was published as a new version at {cpc(record.price, 18)}.")(record)

        def failed(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            self.ui.banner.error(f"Editing failed: {exc}")

        self.run(opened.seller.edit, row.market_hash, title=self.edit_title.text().strip(), price=price,
                 description=self.edit_description.toPlainText().strip(),
                 category=str(self.edit_category.currentData() or ""), tags=parse_tags(self.edit_tags.text()),
                 done=saved, error=failed)  # fmt: skip

    # ------------------------------------------------------------------ dialogs

    def _ask_image(self) -> str:
        chosen, _ = QFileDialog.getOpenFileName(self, "Cover image", "", IMAGE_FILTER)
        return str(chosen)

    def _confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "PDash wallet", question)
        return bool(answer == QMessageBox.StandardButton.Yes)


def _channel_text(upload: UploadRecord) -> str:
    try:
        locator = StreamLocator.from_json(upload.locator)
    except WireError:
        return "—"
    return f"channel {locator.channel} on {locator.endpoint.proxy}"


def _description(record: ProductRecord) -> ProductDescription:
    return ProductDescription.from_dict(json.loads(record.canonical))

"""Publish page: files encrypted, uploaded through a chosen storage plugin and listed on the
market, each as its own product, with category, price, description, tags and a cover image.

Each file goes through three core calls on the worker (upload with progress, publish, cover),
one after the other, so progress and failures show as they happen. When the market refuses
or cannot be reached, the encrypted upload and its signed listing stay in the wallet's
database and My data offers to publish them again.

In Stream mode (offered only when the config names a proxy tracker, which finding a proxy for
the channel needs) the page opens a channel on the chosen proxy (or the best live one) and
lists it, one core call on the worker (Seller.publish_stream), then shows the channel id and
its proxy.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cpchain.config import Config
from cpchain.proxy.discovery import parse_hostport
from cpchain.proxy.streams.wire import STORAGE_TYPE as STREAM_STORAGE
from cpchain.proxy.streams.wire import StreamLocator
from cpchain.proxy.tracker import ProxyStanding
from cpchain.types import MAX_TAGS, InvalidProduct, ProductDescription, ProductType
from cpchain.wallet.db import ProductRecord, UploadRecord
from cpchain.wallet.errors import BadInput
from cpchain.wallet.funds import parse_amount
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.market import CATEGORIES
from cpchain.wallet.qt.pages.product import standing_text
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import cpc, heading

__all__ = ["STORAGE_LABELS", "Listing", "PublishPage", "parse_tags", "storage_choices", "streams_available"]

STORAGE_LABELS = {
    "local": "Local directory",
    "ipfs": "IPFS",
    "s3": "Amazon S3 (or compatible)",
}
PHASES = {"encrypt": "Encrypting", "upload": "Uploading"}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.gif *.webp)"


def storage_choices(config: Config) -> list[tuple[str, str]]:
    """(plugin, label) for each storage the config sets up, the default first."""
    storage = config.section("wallet.storage")
    usable = {
        "local": bool(storage.get("local_dir")),
        "ipfs": bool(config.get("wallet.storage.ipfs.api")),
        "s3": bool(config.get("wallet.storage.s3.bucket")),
    }
    default = str(storage.get("default", "local"))
    kinds = [k for k in STORAGE_LABELS if usable[k]]
    kinds.sort(key=lambda k: k != default)
    return [(k, STORAGE_LABELS[k] + (" (default)" if k == default else "")) for k in kinds]


def streams_available(config: Config) -> bool:
    """Whether the config has what selling a stream needs: a proxy tracker to find the proxy
    that hosts the channel (the best live one, or one of those it lists)."""
    try:
        parse_hostport(str(config.get("proxy.tracker") or ""), "proxy.tracker")
    except (ValueError, KeyError):
        return False
    return True


def parse_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags, trimmed, empty ones dropped, repeats removed (order kept)."""
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


@dataclass
class Listing:
    """What the form asks for, checked; the same for every file of a batch."""

    title: str
    price: int
    category: str
    description: str
    tags: tuple[str, ...]
    storage: str
    cover: Path | None
    files: list[Path]
    done: list[ProductRecord] = field(default_factory=list)
    stream: bool = False
    proxy: str | None = None  # a stream's proxy (None: the best live one)

    def title_for(self, path: Path) -> str:
        return self.title if len(self.files) == 1 else f"{self.title} — {path.name}"


class PublishPage(Page):
    title = "Publish"
    progressed = pyqtSignal(str, int, int)
    """(phase, bytes done, bytes in all) from the worker thread, shown on the GUI thread."""

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Publish data"))
        self.mode_row = QWidget()
        ml = QHBoxLayout(self.mode_row)
        ml.setContentsMargins(0, 0, 0, 0)
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Files", "file")
        self.mode_combo.addItem("Stream (records published over time)", "stream")
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        ml.addWidget(QLabel("Sell"))
        ml.addWidget(self.mode_combo)
        ml.addStretch(1)
        layout.addWidget(self.mode_row)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)

        row = QHBoxLayout()
        self.files_box = files = QGroupBox("Files")
        fl = QVBoxLayout(files)
        self.files_list = QListWidget()
        self.files_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add files…")
        self.add_button.clicked.connect(self.add_files)
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.clicked.connect(self.remove_selected)
        self.files_list.itemSelectionChanged.connect(self._update_buttons)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        fl.addWidget(self.files_list, 1)
        fl.addLayout(buttons)
        form_box = QGroupBox("Storage")
        sl = QFormLayout(form_box)
        self.storage_combo = QComboBox()
        self.storage_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        sl.addRow("Store the encrypted files in", self.storage_combo)
        fl.addWidget(form_box)
        row.addWidget(files, 1)

        self.stream_box = QGroupBox("Stream channel")
        st = QVBoxLayout(self.stream_box)
        stream_note = QLabel("A channel is opened on a proxy's stream server; every record you publish to it is "
                             "sealed under the channel's key on this computer. Buyers get the key only through a "
                             "paid order and read the records from the proxy.")  # fmt: skip
        stream_note.setWordWrap(True)
        st.addWidget(stream_note)
        sf = QFormLayout()
        self.stream_proxy_combo = QComboBox()
        self.stream_proxy_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        sf.addRow("Proxy hosting the channel", self.stream_proxy_combo)
        self.channel_label = QLabel("No channel opened yet.")
        self.channel_label.setWordWrap(True)
        self.channel_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        sf.addRow("Channel", self.channel_label)
        st.addLayout(sf)
        st.addStretch(1)
        row.addWidget(self.stream_box, 1)

        details = QGroupBox("Listing")
        form = QFormLayout(details)
        self.title_field = QLineEdit()
        self.title_field.setPlaceholderText("e.g. Hourly weather readings, Berlin, 2024")
        self.category_combo = QComboBox()
        self.category_combo.addItem("No category", "")
        for name in CATEGORIES:
            self.category_combo.addItem(name, name)
        self.price_field = QLineEdit()
        self.price_field.setPlaceholderText("price in CPC, e.g. 2.5")
        self.description_field = QPlainTextEdit()
        self.description_field.setPlaceholderText("What the data holds, its format, how it was collected")
        self.tags_field = QLineEdit()
        self.tags_field.setPlaceholderText(f"comma-separated, up to {MAX_TAGS}")
        self.cover_label = QLabel("None")
        self.cover_label.setWordWrap(True)
        self.cover_button = QPushButton("Choose…")
        self.cover_button.clicked.connect(self.choose_cover)
        self.cover_clear = QPushButton("Clear")
        self.cover_clear.clicked.connect(self.clear_cover)
        cover_row = QWidget()
        cl = QHBoxLayout(cover_row)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.cover_label, 1)
        cl.addWidget(self.cover_button)
        cl.addWidget(self.cover_clear)
        form.addRow("Title", self.title_field)
        form.addRow("Category", self.category_combo)
        form.addRow("Price", self.price_field)
        form.addRow("Description", self.description_field)
        form.addRow("Tags", self.tags_field)
        form.addRow("Cover image", cover_row)
        row.addWidget(details, 1)
        layout.addLayout(row, 1)

        bottom = QHBoxLayout()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.publish_button = QPushButton()
        self.publish_button.clicked.connect(self.publish)
        bottom.addWidget(self.status_label, 1)
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.publish_button)
        layout.addLayout(bottom)

        self.progressed.connect(self._show_progress)
        self.files: list[Path] = []
        self.cover: Path | None = None
        self.job: Listing | None = None
        self._current = ""
        # The file dialogs, replaceable (tests choose files without a native dialog).
        self.ask_files: Callable[[], list[str]] = self._ask_files
        self.ask_image: Callable[[], str] = self._ask_image
        self.standings: list[ProxyStanding] = []
        self._mode_changed()

    # ------------------------------------------------------------------ mode

    @property
    def stream_mode(self) -> bool:
        return bool(self.mode_row.isVisibleTo(self) and self.mode_combo.currentData() == "stream")

    def _mode_changed(self) -> None:
        stream = self.stream_mode
        self.files_box.setVisible(not stream)
        self.stream_box.setVisible(stream)
        self.intro.setText(
            "A stream is listed on the market as one product; buyers read its records as you publish them "
            "(from your own program, through the wallet core's stream publisher)." if stream else
            "Each file is encrypted on this computer, stored through the storage you choose and listed "
            "on the market as its own product. Buyers get the key only through a paid order."
        )  # fmt: skip
        self.publish_button.setText("Open channel and publish" if stream else "Encrypt, upload and publish")
        self._update_buttons()

    def _load_proxies(self) -> None:
        opened = self.session.wallet
        if opened is None or not self.mode_row.isVisibleTo(self):
            return
        self.run(opened.ctx.proxies.standings, done=self._show_proxies,
                 error=lambda exc: self._show_proxies([], str(exc)))  # fmt: skip

    def _show_proxies(self, standings: list[ProxyStanding], failure: str = "") -> None:
        wanted = self.stream_proxy_combo.currentData()
        self.standings = [s for s in standings if s.eligible]
        self.stream_proxy_combo.clear()
        if self.standings:
            self.stream_proxy_combo.addItem("Best available (the live proxy with the best standing)", None)
        for s in self.standings:
            self.stream_proxy_combo.addItem(standing_text(s), s.address)
        if wanted is not None and self.stream_proxy_combo.findData(wanted) >= 0:
            self.stream_proxy_combo.setCurrentIndex(self.stream_proxy_combo.findData(wanted))
        if failure and self.stream_mode:
            self.ui.banner.error(f"Proxies: {failure}")
        self._update_buttons()

    # ------------------------------------------------------------------ form

    def activate(self) -> None:
        wanted = self.storage_combo.currentData()
        self.storage_combo.clear()
        for kind, label in storage_choices(self.session.config):
            self.storage_combo.addItem(label, kind)
        if wanted is not None and self.storage_combo.findData(wanted) >= 0:
            self.storage_combo.setCurrentIndex(self.storage_combo.findData(wanted))
        offered = streams_available(self.session.config)
        if not offered and self.mode_combo.currentData() == "stream":
            self.mode_combo.setCurrentIndex(0)
        self.mode_row.setVisible(offered)
        self._mode_changed()
        self._load_proxies()

    def _ask_files(self) -> list[str]:
        chosen, _ = QFileDialog.getOpenFileNames(self, "Files to publish")
        return list(chosen)

    def _ask_image(self) -> str:
        chosen, _ = QFileDialog.getOpenFileName(self, "Cover image", "", IMAGE_FILTER)
        return str(chosen)

    def add_files(self) -> None:
        for name in self.ask_files():
            path = Path(name)
            if path not in self.files:
                self.files.append(path)
                self.files_list.addItem(f"{path.name}  ({_size(path)})")
                item = self.files_list.item(self.files_list.count() - 1)
                if item is not None:
                    item.setToolTip(str(path))
        self._update_buttons()

    def remove_selected(self) -> None:
        rows = sorted((self.files_list.row(item) for item in self.files_list.selectedItems()), reverse=True)
        for row in rows:
            self.files_list.takeItem(row)
            del self.files[row]
        self._update_buttons()

    def choose_cover(self) -> None:
        name = self.ask_image()
        if name:
            self.cover = Path(name)
            self.cover_label.setText(self.cover.name)
            self.cover_label.setToolTip(str(self.cover))
        self._update_buttons()

    def clear_cover(self) -> None:
        self.cover = None
        self.cover_label.setText("None")
        self.cover_label.setToolTip("")
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self.job is None
        for w in (self.add_button, self.cover_button, self.storage_combo, self.mode_combo):
            w.setEnabled(idle)
        self.remove_button.setEnabled(idle and bool(self.files_list.selectedItems()))
        self.cover_clear.setEnabled(idle and self.cover is not None)
        self.stream_proxy_combo.setEnabled(idle and self.stream_proxy_combo.count() > 0)
        if self.stream_mode:
            ready = self.stream_proxy_combo.count() > 0
            self.publish_button.setToolTip("" if ready else "No live proxy is listed by the tracker right now.")
        else:
            ready = bool(self.files) and self.storage_combo.count() > 0
            self.publish_button.setToolTip("")
        self.publish_button.setEnabled(idle and ready)

    def listing(self) -> Listing:
        """The form's listing, checked against the market's rules (BadInput naming the field)."""
        opened = self.session.require()
        title = self.title_field.text().strip()
        if not title:
            raise BadInput("Title: give the listing a title")
        text = self.price_field.text().strip()
        if not text:
            raise BadInput("Price: enter a price in CPC")
        try:
            price = parse_amount(text)
        except BadInput as exc:
            raise BadInput(f"Price: {exc}") from None
        if price <= 0:
            raise BadInput("Price: must be more than 0 CPC")
        tags = parse_tags(self.tags_field.text())
        if self.stream_mode:
            job = Listing(title=title, price=price, category=str(self.category_combo.currentData() or ""),
                          description=self.description_field.toPlainText().strip(), tags=tags,
                          storage=STREAM_STORAGE, cover=self.cover, files=[], stream=True,
                          proxy=self.stream_proxy_combo.currentData())  # fmt: skip
            try:  # checked before a channel is opened
                ProductDescription(seller=opened.address, title=title, ptype=ProductType.STREAM,
                                   description=job.description, price=price, category=job.category, tags=tags,
                                   data_hash="0" * 64, storage_type=STREAM_STORAGE, size=0)  # fmt: skip
            except InvalidProduct as exc:
                raise BadInput(str(exc)[:1].upper() + str(exc)[1:]) from None
            return job
        job = Listing(title=title, price=price, category=str(self.category_combo.currentData() or ""),
                      description=self.description_field.toPlainText().strip(), tags=tags,
                      storage=str(self.storage_combo.currentData()), cover=self.cover,
                      files=list(self.files))  # fmt: skip
        for path in job.files:
            try:  # the same checks the core and the market make, before anything is encrypted
                ProductDescription(seller=opened.address, title=job.title_for(path), ptype=ProductType.FILE,
                                   description=job.description, price=price, category=job.category, tags=tags,
                                   data_hash="0" * 64, storage_type=job.storage, size=0,
                                   nonce=secrets.token_hex(16))  # fmt: skip
            except InvalidProduct as exc:
                raise BadInput(str(exc)[:1].upper() + str(exc)[1:]) from None
        return job

    # ------------------------------------------------------------------ publishing

    def publish(self) -> None:
        opened = self.session.wallet
        if opened is None or self.job is not None:
            return
        try:
            job = self.listing()
        except BadInput as exc:
            self.ui.banner.error(str(exc))
            return
        self.ui.banner.dismiss()
        self.job = job
        self._update_buttons()
        if job.stream:
            self._publish_stream(job)
            return
        self.progress.setValue(0)
        self.progress.show()
        self._next()

    @staticmethod
    def _open_stream(opened: Opened, job: Listing) -> tuple[ProductRecord, StreamLocator]:
        record = opened.seller.publish_stream(title=job.title, price=job.price, proxy=job.proxy,
                                              description=job.description, category=job.category,
                                              tags=job.tags)  # fmt: skip
        upload = opened.ctx.db.upload(record.upload_id)
        assert upload is not None
        return record, StreamLocator.from_json(upload.locator)

    def _publish_stream(self, job: Listing) -> None:
        opened = self.session.wallet
        assert opened is not None
        where = "the best live proxy" if job.proxy is None else f"proxy {job.proxy}"
        self.status_label.setText(f"Opening a channel on {where} and publishing “{job.title}”…")

        def published(result: tuple[ProductRecord, StreamLocator]) -> None:
            record, locator = result
            job.done.append(record)
            self.channel_label.setText(f"{locator.channel} on proxy {locator.endpoint.proxy}")
            text = (f"Published stream “{record.title}” at {cpc(job.price, 18)}: channel {locator.channel} "
                    f"on proxy {locator.endpoint.proxy}.")  # fmt: skip
            if job.cover is None:
                self._finish(text)
                return
            self.run(opened.seller.set_cover, record.market_hash, job.cover, done=lambda _: self._finish(text),
                     error=lambda exc: cover_failed(record, exc))  # fmt: skip

        def cover_failed(record: ProductRecord, exc: BaseException) -> None:
            self.ui.banner.error(f"“{record.title}” is published, but its cover image was refused: {exc}. "
                                 "Set another one from My data.")  # fmt: skip
            self._finish("Published the stream without its cover image.", error=True, keep_banner=True)

        def failed(exc: BaseException) -> None:
            self._finish(f"Publishing the stream failed: {exc}", error=True)

        self.run(self._open_stream, opened, job, done=published, error=failed)

    def _next(self) -> None:
        job, opened = self.job, self.session.wallet
        if job is None:
            return
        if opened is None:
            self._finish("The wallet was locked: publishing stopped.", error=True)
            return
        index = len(job.done)
        if index == len(job.files):
            titles = ", ".join(f"“{r.title}”" for r in job.done)
            self._finish(f"Published {titles} at {cpc(job.price, 18)} each.")
            return
        path = job.files[index]
        self._current = f"file {index + 1} of {len(job.files)}, {path.name}"
        self.status_label.setText(f"Encrypting {self._current}…")

        def uploaded(upload: UploadRecord) -> None:
            self.status_label.setText(f"Publishing {self._current} on the market…")
            self.run(opened.seller.publish, upload.id, title=job.title_for(path), price=job.price,
                     description=job.description, category=job.category, tags=job.tags,
                     done=published, error=lambda exc: failed(exc, kept=True))  # fmt: skip

        def published(record: ProductRecord) -> None:
            if job.cover is None:
                listed(record)
                return
            self.status_label.setText(f"Uploading the cover image of {self._current}…")
            self.run(opened.seller.set_cover, record.market_hash, job.cover, done=lambda _: listed(record),
                     error=lambda exc: cover_failed(record, exc))  # fmt: skip

        def cover_failed(record: ProductRecord, exc: BaseException) -> None:
            self.ui.banner.error(f"“{record.title}” is published, but its cover image was refused: {exc}. "
                                 "Set another one from My data.")  # fmt: skip
            job.done.append(record)
            self._forget(path)
            self._finish(f"Published {len(job.done)} of {len(job.files)} files.", error=True, keep_banner=True)

        def listed(record: ProductRecord) -> None:
            job.done.append(record)
            self._forget(path)
            self._next()

        def failed(exc: BaseException, *, kept: bool) -> None:
            what = f"Publishing {path.name} failed: {exc}."
            if kept:
                what += " The encrypted upload and its listing are kept: publish them again from My data."
                self._forget(path)
            self.ui.banner.error(what)
            self._finish(f"Published {len(job.done)} of {len(job.files)} files.", error=True, keep_banner=True)

        self.run(opened.seller.upload, path, storage=job.storage, progress=self.progressed.emit,
                 done=uploaded, error=lambda exc: failed(exc, kept=False))  # fmt: skip

    def _forget(self, path: Path) -> None:
        """Take a file off the list once it is uploaded (what is left is what still needs doing)."""
        if path in self.files:
            row = self.files.index(path)
            del self.files[row]
            self.files_list.takeItem(row)

    def _show_progress(self, phase: str, done: int, total: int) -> None:
        if self.job is None:
            return
        self.progress.setValue(int(1000 * done / total) if total else 1000)
        self.status_label.setText(f"{PHASES.get(phase, phase.capitalize())} {self._current}: "
                                  f"{_bytes(done)} of {_bytes(total)}")  # fmt: skip

    def _finish(self, text: str, *, error: bool = False, keep_banner: bool = False) -> None:
        self.job = None
        self.progress.hide()
        self.status_label.setText(text)
        if not error:
            self.ui.banner.info(text)
            self.title_field.clear()
            self.price_field.clear()
            self.description_field.clear()
            self.tags_field.clear()
            self.clear_cover()
        elif not keep_banner:
            self.ui.banner.error(text)
        self._update_buttons()


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _size(path: Path) -> str:
    try:
        return _bytes(path.stat().st_size)
    except OSError:
        return "unreadable"

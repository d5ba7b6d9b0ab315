"""Settings: the chain node, market, tracker and storage endpoints, read from the config and
saved to the user's config file.

Saving checks every value (URLs, host:port, the keys the chosen storage needs) and the whole
file as the wallet will load it, then replaces the file atomically; the other keys of the
file are kept. The running wallet keeps its connections: the new values apply the next time
an account is unlocked or the wallet starts, as the page says.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PyQt5.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from cpchain.config import Config, ConfigError, load_config, user_config_path
from cpchain.fsutil import atomic_write_text
from cpchain.storage.base import LocatorError
from cpchain.storage.httpfetch import parse_url
from cpchain.wallet.errors import BadInput
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.pages.publish import STORAGE_LABELS
from cpchain.wallet.qt.widgets import heading

__all__ = ["SettingsPage", "config_file", "render_toml", "save_settings"]


def config_file(config: Config) -> Path:
    """The user's config file this config came from (or would come from)."""
    return config.source if config.source is not None else user_config_path(config.env)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_toml(data: dict[str, Any], header: str = "") -> str:
    """TOML for nested tables of scalars and lists (what a cpchain.toml holds)."""
    lines: list[str] = []

    def table(name: str, node: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in node.items() if not isinstance(v, dict)]
        if name and (scalars or not any(isinstance(v, dict) for v in node.values())):
            lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in scalars)
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{name}.{k}" if name else k, v)

    table("", data)
    return (header + "\n".join(lines)).strip() + "\n"


def _merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _url(text: str, what: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    text = text.strip()
    if not text:
        raise BadInput(f"{what}: enter a URL")
    if schemes == ("http", "https"):
        try:
            parse_url(text, what)
        except LocatorError as exc:
            raise BadInput(f"{exc} (got {text!r})") from None
        return text
    try:
        parts = urlsplit(text)
        ok = parts.scheme in schemes and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok:
        raise BadInput(f"{what} must be a {' or '.join(schemes)} URL with a host (got {text!r})")
    return text


def _host_port(text: str, what: str) -> str:
    text = text.strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"{what} must be host:port, e.g. 127.0.0.1:8201 (got {text!r})")
    return text


def save_settings(config: Config, changes: dict[str, Any]) -> Config:
    """Merge `changes` (nested tables) into the user's config file, checked, atomically; the new config."""
    path = config_file(config)
    try:
        current = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path} cannot be read: {exc}") from None
    try:
        config.with_overrides(changes)  # same keys and types as the defaults, and the file's rules
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    _merge(current, changes)
    text = render_toml(current, "# PDash configuration (saved by the wallet's Settings page)\n\n")
    tomllib.loads(text)
    try:
        atomic_write_text(path, text, mode=0o600)
        return load_config(path, env=config.env)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


class SettingsPage(Page):
    title = "Settings"
    needs_wallet = False

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Settings"))
        self.where_label = QLabel()
        self.where_label.setWordWrap(True)
        layout.addWidget(self.where_label)

        network = QGroupBox("Network")
        form = QFormLayout(network)
        self.chain_mode = QComboBox()
        self.chain_mode.addItem("Local node", "local")
        self.chain_mode.addItem("Remote node", "remote")
        self.chain_url = QLineEdit()
        self.chain_url.setPlaceholderText("http://127.0.0.1:8545")
        self.market_url = QLineEdit()
        self.market_url.setPlaceholderText("http://127.0.0.1:8083")
        self.tracker = QLineEdit()
        self.tracker.setPlaceholderText("host:port of the proxies' tracker")
        form.addRow("Chain", self.chain_mode)
        form.addRow("Chain node URL", self.chain_url)
        form.addRow("Market URL", self.market_url)
        form.addRow("Proxy tracker", self.tracker)
        layout.addWidget(network)

        storage = QGroupBox("Storage of published data")
        form = QFormLayout(storage)
        self.storage_default = QComboBox()
        for kind, label in STORAGE_LABELS.items():
            self.storage_default.addItem(label, kind)
        self.local_dir = QLineEdit()
        self.local_dir.setPlaceholderText("a directory; relative paths are inside the wallet's home")
        self.ipfs_api = QLineEdit()
        self.ipfs_api.setPlaceholderText("http://127.0.0.1:5001")
        self.s3_endpoint = QLineEdit()
        self.s3_endpoint.setPlaceholderText("empty for Amazon S3, or the URL of a compatible service")
        self.s3_bucket = QLineEdit()
        form.addRow("Default storage", self.storage_default)
        form.addRow("Local directory", self.local_dir)
        form.addRow("IPFS API URL", self.ipfs_api)
        form.addRow("S3 endpoint", self.s3_endpoint)
        form.addRow("S3 bucket", self.s3_bucket)
        layout.addWidget(storage)

        row = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(self.load)
        row.addWidget(self.save_button)
        row.addWidget(self.revert_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)
        self.load()

    def activate(self) -> None:
        self.load()

    def load(self) -> None:
        """Fill the form from the session's config."""
        c = self.session.config
        mode = str(c.get("chain.mode"))
        if self.chain_mode.findData(mode) < 0:
            self.chain_mode.addItem(f"{mode} (set in the config file)", mode)
        self.chain_mode.setCurrentIndex(self.chain_mode.findData(mode))
        key = "chain.remote_provider_addr" if mode == "remote" else "chain.local_provider_addr"
        self.chain_url.setText(str(c.get(key)))
        self.market_url.setText(str(c.get("market.market_url")))
        self.tracker.setText(str(c.get("proxy.tracker")))
        self.storage_default.setCurrentIndex(max(0, self.storage_default.findData(c.get("wallet.storage.default"))))
        self.local_dir.setText(str(c.get("wallet.storage.local_dir")))
        self.ipfs_api.setText(str(c.get("wallet.storage.ipfs.api")))
        self.s3_endpoint.setText(str(c.get("wallet.storage.s3.endpoint")))
        self.s3_bucket.setText(str(c.get("wallet.storage.s3.bucket")))
        self.where_label.setText(
            f"Saved in {config_file(c)}. Changes apply the next time an account is unlocked or the wallet starts; "
            "an unlocked wallet keeps its current connections."
        )

    def changes(self) -> dict[str, Any]:
        """The form as config tables, every value checked (BadInput naming the field)."""
        mode = str(self.chain_mode.currentData())
        chain: dict[str, Any] = {"mode": mode}
        if mode in ("local", "remote"):
            url = _url(self.chain_url.text(), "Chain node URL", ("http", "https", "ws", "wss"))
            chain["remote_provider_addr" if mode == "remote" else "local_provider_addr"] = url
        kind = str(self.storage_default.currentData())
        local_dir = self.local_dir.text().strip()
        if kind == "local" and not local_dir:
            raise BadInput("Local directory: needed when the default storage is the local directory")
        ipfs = self.ipfs_api.text().strip()
        if ipfs or kind == "ipfs":
            _url(ipfs, "IPFS API URL")
        endpoint = self.s3_endpoint.text().strip()
        if endpoint:
            _url(endpoint, "S3 endpoint")
        bucket = self.s3_bucket.text().strip()
        if kind == "s3" and not bucket:
            raise BadInput("S3 bucket: needed when the default storage is S3")
        return {
            "chain": chain,
            "market": {"market_url": _url(self.market_url.text(), "Market URL")},
            "proxy": {"tracker": _host_port(self.tracker.text(), "Proxy tracker")},
            "wallet": {"storage": {"default": kind, "local_dir": local_dir, "ipfs": {"api": ipfs},
                                   "s3": {"endpoint": endpoint, "bucket": bucket}}},
        }  # fmt: skip

    def save(self) -> None:
        try:
            new = save_settings(self.session.config, self.changes())
        except BadInput as exc:
            self.ui.banner.error(f"Settings not saved: {exc}")
            return
        self.session.config = new
        self.load()
        self.ui.banner.info(f"Settings saved to {config_file(new)}; they apply at the next unlock or start.")

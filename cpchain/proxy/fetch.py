"""Fetching a seller's ciphertext through a storage plugin, within the operator's limits.

Owns choosing the plugin object for a locator (from the fixed registry, never from a name
the request supplies as code), the size and time limits, and verifying the SHA-256 of what
arrived against the order's data hash before anything is claimed. Blocking: runs in a
worker thread. Must not touch the chain or the trade database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cpchain.config import Config
from cpchain.proxy.settings import ProxySettings
from cpchain.proxy.store import TradeStore
from cpchain.storage.base import REGISTRY, Locator, Plugin, PolicyRefused, StorageError
from cpchain.storage.local import LocalStorage
from cpchain.storage.proxy import STORE_PATH, parse_locator

log = logging.getLogger(__name__)


class FetchTimedOut(StorageError):
    """The fetch did not finish within the operator's time limit."""


class CiphertextMismatch(StorageError):
    """The fetched bytes are not the ones the order committed to (hash or size)."""


class FetchInterrupted(StorageError):
    """The proxy is stopping; the fetch resumes after the restart."""


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str


class Fetcher:
    """Downloads sellers' files for this proxy; one instance shared by worker threads."""

    def __init__(self, settings: ProxySettings, config: Config, own_fingerprint: str, store: TradeStore) -> None:
        self.settings = settings
        self.config = config
        self.policy = settings.policy
        self.own_fingerprint = own_fingerprint
        self.store = store
        self._stopping = threading.Event()

    def interrupt(self) -> None:
        """Make running fetches stop at their next chunk (the process is shutting down)."""
        self._stopping.set()

    def plugin_for(self, locator: Locator) -> Plugin:
        """The registered plugin for an allowed locator type, configured for fetching."""
        self.policy.check_locator(locator)
        if locator.type == LocalStorage.type_name:
            roots = self.settings.local_roots
            if not roots:
                raise PolicyRefused("this proxy has no local_roots configured for `local` locators")
            return LocalStorage(roots[0], roots[1:])
        cls = REGISTRY[locator.type]
        factory: Callable[[Config, object], Plugin] | None = getattr(cls, "for_fetching", None)
        if factory is None:
            raise PolicyRefused(f"the {locator.type!r} plugin cannot be used by a proxy")
        return factory(self.config, self.policy)

    def fetch(self, locator: Locator, dest: Path, *, expected_sha256: str, expected_size: int | None) -> Fetched:
        """Fetch into `dest` and verify; on any failure nothing is left at `dest`."""
        if expected_size is not None:
            self.policy.check_size(expected_size)
        limit = min(self.policy.max_bytes, expected_size) if expected_size is not None else self.policy.max_bytes
        deadline = time.monotonic() + self.policy.timeout

        def on_progress(done: int) -> None:
            if self._stopping.is_set():
                raise FetchInterrupted("the proxy is stopping")
            if time.monotonic() > deadline:
                raise FetchTimedOut(f"fetch did not finish within {self.policy.timeout:.0f} s")

        dest.unlink(missing_ok=True)
        try:
            # The plugin hashes the bytes as it writes them: no second pass over a large file.
            digest = self._from_own_store(locator, dest)
            if digest is None:
                digest = self.plugin_for(locator).download(locator, dest, on_progress, limit)
            got = Fetched(dest.stat().st_size, digest)
            if expected_size is not None and got.size != expected_size:
                raise CiphertextMismatch(f"fetched {got.size} bytes, the product says {expected_size}")
            if got.sha256 != expected_sha256:
                raise CiphertextMismatch("the fetched ciphertext's SHA-256 is not the order's data hash")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        os.chmod(dest, 0o400)
        return got

    def _from_own_store(self, locator: Locator, dest: Path) -> str | None:
        """A `proxy` locator naming this proxy's own store is linked locally, without a request;
        returns the SHA-256 the upload was stored with (hashed as it arrived), else None."""
        if locator.type != "proxy":
            return None
        self.policy.check_locator(locator)
        where = parse_locator(locator)
        match = STORE_PATH.fullmatch(where.path)
        if where.fingerprint != self.own_fingerprint or match is None:
            return None
        object_id = match.group(1)
        source = self.settings.store_dir / f"{object_id}.bin"
        upload = self.store.upload(object_id)
        if upload is None or not source.is_file():
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, dest)
        log.info("fetched %s from this proxy's own store", object_id)
        return upload.sha256

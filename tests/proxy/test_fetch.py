"""The proxy's fetcher without a network: limits, verification, interruption, nothing left behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cpchain.config import load_config
from cpchain.proxy.fetch import CiphertextMismatch, Fetcher, FetchInterrupted, FetchTimedOut
from cpchain.proxy.settings import ProxySettings
from cpchain.proxy.store import TradeStore
from cpchain.storage.base import Locator, PolicyRefused, TransferTooLarge


def fetcher(tmp_path: Path, **proxy: object) -> Fetcher:
    overrides = {"fetch_types": ["local"], "local_roots": [str(tmp_path / "seller")], **proxy}
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path / "home")}).with_overrides({"proxy": overrides})
    return Fetcher(ProxySettings.from_config(config), config, "00" * 32, TradeStore(tmp_path / "proxy.db"))


@pytest.fixture
def source(tmp_path: Path) -> tuple[Locator, str, int]:
    path = tmp_path / "seller" / "cipher.bin"
    path.parent.mkdir()
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    return Locator("local", {"path": str(path)}), hashlib.sha256(data).hexdigest(), len(data)


def test_a_verified_fetch_is_read_only(tmp_path: Path, source: tuple[Locator, str, int]) -> None:
    locator, sha, size = source
    dest = tmp_path / "orders" / "1.bin"
    got = fetcher(tmp_path).fetch(locator, dest, expected_sha256=sha, expected_size=size)
    assert (got.size, got.sha256) == (size, sha) and oct(dest.stat().st_mode & 0o777) == "0o400"


@pytest.mark.parametrize(
    ("settings", "sha", "size", "error"),
    [
        ({}, "00" * 32, None, CiphertextMismatch),  # other bytes than the order's
        ({}, None, 100, TransferTooLarge),  # larger than the product says
        ({"fetch_max_bytes": 1 << 20}, None, None, TransferTooLarge),
        ({"fetch_max_bytes": 1 << 20}, None, 2 << 20, PolicyRefused),  # refused before any byte
        ({"fetch_timeout_seconds": 0.0}, None, None, FetchTimedOut),
        ({"fetch_types": ["proxy"]}, None, None, PolicyRefused),
        ({"local_roots": []}, None, None, PolicyRefused),
    ],
)
def test_refused_fetches_leave_nothing(tmp_path: Path, source: tuple[Locator, str, int], settings: dict[str, object],
                                       sha: str | None, size: int | None, error: type[Exception]) -> None:  # fmt: skip
    locator, real_sha, _ = source
    dest = tmp_path / "orders" / "1.bin"
    with pytest.raises(error):
        fetcher(tmp_path, **settings).fetch(locator, dest, expected_sha256=sha or real_sha, expected_size=size)
    assert not dest.exists()
    assert not (dest.parent.exists() and list(dest.parent.iterdir()))  # no partial file either


def test_an_interrupted_fetch_stops_at_the_next_chunk(tmp_path: Path, source: tuple[Locator, str, int]) -> None:
    locator, sha, size = source
    f = fetcher(tmp_path)
    f.interrupt()
    dest = tmp_path / "orders" / "1.bin"
    with pytest.raises(FetchInterrupted):
        f.fetch(locator, dest, expected_sha256=sha, expected_size=size)
    assert not dest.exists()

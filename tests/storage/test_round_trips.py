"""Every plugin and fetching path keeps every byte: empty, tiny, odd-sized and multipart-sized
files go up and come back with the same SHA-256, through the real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.storage import FetchPolicy, IpfsStorage, Locator, LocatorError, S3Storage
from tests.storage.helpers import MIB, Route, round_trip


@pytest.mark.parametrize("size", [0, 1, 3 * MIB + 7, 40 * MIB])
def test_round_trip_keeps_every_byte(route: Route, tmp_path: Path, size: int) -> None:
    round_trip(route, tmp_path, size)


@pytest.mark.parametrize("kind", ["ipfs", "s3"])
def test_a_locator_of_another_type_is_refused(kind: str, tmp_path: Path, loopback_policy: FetchPolicy) -> None:
    fetcher = IpfsStorage(policy=loopback_policy) if kind == "ipfs" else S3Storage(policy=loopback_policy)
    with pytest.raises(LocatorError, match=f"a local locator given to the {kind} plugin"):
        fetcher.download(Locator("local", {"path": "/etc/passwd"}), tmp_path / "x")
    with pytest.raises(LocatorError, match="unknown storage type 'ftp'"):
        fetcher.download(Locator("ftp", {"url": "ftp://example.org/x"}), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []

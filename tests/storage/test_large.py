"""1 GiB round trips through each plugin, as a proxy fetches them (benchmark marker: run with
`-m benchmark`). Prints each route's timings; the SHA-256 of every byte is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage.helpers import Route, round_trip

GIB = 1 << 30


@pytest.mark.benchmark
@pytest.mark.timeout(900)
@pytest.mark.parametrize("route", ["local", "ipfs-proxy", "s3-presigned"], indirect=True)
def test_one_gib_round_trip(route: Route, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up, down = round_trip(route, tmp_path, GIB)
    with capsys.disabled():
        print(f"\n1 GiB {type(route.uploader).__name__}: upload {up:.1f} s ({1024 / up:.0f} MiB/s), "
              f"download {down:.1f} s ({1024 / down:.0f} MiB/s)")  # fmt: skip

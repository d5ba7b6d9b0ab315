"""bench/market_search.py runs end to end (a quick pass: 2,000 products) and prints its
figures last, one `name: value unit` per line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.market.conftest import require_mariadb
from tests.market.search.conftest import HERE, TEST_DB

ROOT = HERE.parents[2]


def quick_bench(db: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "market_search.py"), "--quick", "--db", db, "--seconds", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()[-8:]
    figures = {}
    for line in lines:
        match = re.fullmatch(r"(.+): ([0-9.]+) (ms|requests/s|requests|products/s)", line)
        assert match, f"not a figure line: {line!r}"
        figures[match.group(1)] = float(match.group(2))
    return figures


@pytest.mark.skipif(TEST_DB != "sqlite", reason="run once, from the SQLite session")
def test_quick_bench_on_sqlite() -> None:
    figures = quick_bench("sqlite")
    assert 0 < figures["sqlite search p50"] <= figures["sqlite search p95"]
    assert figures["sqlite search throughput"] > 0 and figures["sqlite search errors"] == 0
    assert figures["sqlite publish throughput"] > 0
    assert figures["goal search p95"] == 25 and figures["goal search throughput"] == 400


@pytest.mark.mariadb
@pytest.mark.skipif(TEST_DB != "sqlite", reason="run once, from the SQLite session")
def test_quick_bench_on_mariadb() -> None:
    require_mariadb()
    figures = quick_bench("mariadb")
    assert 0 < figures["mariadb search p50"] <= figures["mariadb search p95"]
    assert figures["mariadb search throughput"] > 0 and figures["mariadb search errors"] == 0
    assert figures["mariadb publish throughput"] > 0

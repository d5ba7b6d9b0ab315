"""The relay benchmark runs end to end in a small configuration and prints its figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_proxy_relay_bench_prints_figures() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "proxy_relay.py"), "--size-mib", "32", "--concurrent", "4"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()[-8:]
    figures = {}
    for line in lines:
        match = re.fullmatch(r"(.+): ([0-9.]+) (MiB|MB/s|x|MB|streams)", line)
        assert match, line
        figures[match.group(1)] = float(match.group(2))
    assert figures["file size"] == 32 and figures["concurrent downloads"] == 4
    assert figures["proxy download"] > 0 and figures["baseline static.File download"] > 0
    assert figures["concurrent aggregate"] > 0 and figures["concurrent bytes"] == 4 * 32
    assert figures["proxy peak RSS"] < 150  # constant memory: the file is streamed, never read whole

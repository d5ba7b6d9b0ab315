"""bench/streams.py runs end to end (quick mode) and prints its figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stream_bench_prints_figures() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "streams.py"), "--quick", "--rounds", "1",
                             "--records", "5000", "--latency-seconds", "2"],
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = {}
    for line in result.stdout.strip().splitlines()[-7:]:
        match = re.fullmatch(r"(.+): ([0-9.]+) (count|bytes|msg/s|x|ms)", line)
        assert match, line
        figures[match.group(1)] = float(match.group(2))
    assert figures["records"] == 5000 and figures["record size"] == 1024
    assert figures["direct kafka-python"] > 0 and figures["through the proxy"] > 0
    assert figures["proxy/direct ratio"] > 0.2  # the goal (0.5) is for the full run on a quiet machine
    assert 0 < figures["latency p50 at 1000 rec/s"] <= figures["latency p99 at 1000 rec/s"] < 1000

"""The storage benchmark runs end to end on a tiny file and prints its figures last."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("local", "ipfs", "s3", "proxy")


def test_storage_bench_prints_every_figure_last() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "storage.py"), "--size-mib", "1"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    expected = ["file size", "baseline peak RSS"] + [
        f"{plugin} {op}{figure}" for plugin in PLUGINS for op in ("upload", "download") for figure in ("", " peak RSS")
    ]
    lines = result.stdout.strip().splitlines()[-len(expected) :]
    figures = {}
    for line in lines:
        match = re.fullmatch(r"([a-z0-9 A-Z-]+): ([0-9]+(?:\.[0-9]+)?) (MiB/s|MB|MiB)", line)
        assert match, f"not a `name: value unit` line: {line!r}"
        figures[match.group(1)] = float(match.group(2))
    assert sorted(figures) == sorted(expected)
    assert figures["file size"] == 1
    for name, value in figures.items():
        assert value > 0, name
        if name.endswith("peak RSS"):
            assert value < 150, f"{name}: {value} MB"

"""bench/gui.py with a small download: runs on its own testnet and prints its figures last,
one parseable `name: value unit` per line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.figures import figures_after_done

ROOT = Path(__file__).resolve().parents[2]


def test_gui_bench_prints_its_figures(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CPCHAIN_HOME_CONFIG_PATH", "CPCHAIN_DEBUG", "DISPLAY")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gui.py"), "--size", "2"], capture_output=True,
                            text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    figures = figures_after_done(result.stdout, ("s", "ms", "ticks", "cores"))
    assert 0 < figures["start-up to window shown (wallet's log)"] < figures["start-up to window shown (process spawn)"]
    assert figures["2 MiB download and decrypt through the purchased-data page"] > 0
    assert figures["timer ticks during the download"] >= 1
    assert 0 <= figures["longest event-loop stall during the download"] < 10_000
    assert figures["cores"] >= 1
    # The testnet was stopped and its temp home removed.
    assert not any(tmp_path.glob("gui-bench-*"))

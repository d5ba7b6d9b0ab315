"""bench/e2e.py --quick: a 10 MiB purchase on its own testnet, figures printed last and parseable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.figures import figures_after_done
from tests.test_testnet import processes_of, wait_until

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("chain (placeOrder + sellerConfirm)", "proxy fetch", "buyer data", "download + decrypt", "decrypt finish")


def test_quick_e2e_bench_prints_its_figures(isolated_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CPCHAIN_HOME_CONFIG_PATH", "CPCHAIN_DEBUG")}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e.py"), "--quick"], capture_output=True,
                            text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    figures = figures_after_done(result.stdout, ("s", "x", "MB/s", "cores", "runnable"))
    assert not any(name.startswith("100 MiB") for name in figures)  # --quick: 10 MiB only
    total = figures["10 MiB buy to decrypted file"]
    parts = [figures[f"10 MiB {part}"] for part in PARTS]
    assert all(p > 0 for p in parts) and sum(parts) <= total + 0.05
    assert 0 < figures["10 MiB raw https download"] < total
    assert figures["10 MiB purchase / raw download"] > 1
    assert figures["10 MiB buy to decrypted file, automation every 0.5 s"] > 0
    assert figures["cores"] >= 1 and "load average" in figures
    # The bench's testnet was stopped and its temp home removed.
    home = Path(re.search(r"^testnet up in [\d.]+ s \((.+)\)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert not home.exists()
    assert wait_until(lambda: processes_of(home) == [], timeout=10), processes_of(home)

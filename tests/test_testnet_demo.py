"""`bin/pdash-testnet up --demo` and `demo`: one complete file trade between the testnet's
seller and buyer wallets, one line per step, on free ports in a temp CPCHAIN_HOME (the
`testnet` fixture of tests.test_testnet, which stops everything at teardown)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.test_testnet import BIN, RunningTestnet, alive, testnet, wait_until  # noqa: F401

STEPS = ("open wallets", "encrypt+upload", "publish", "search", "buy", "seller confirm", "proxy fetch",
         "download+verify+decrypt", "proxy delivery", "buyer confirm", "final balances")  # fmt: skip


def run(net: RunningTestnet, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CPCHAIN_DEBUG", None)
    return subprocess.run([str(BIN / "pdash-testnet"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def test_up_demo_runs_a_trade_and_a_failing_step_is_one_line(testnet: RunningTestnet) -> None:  # noqa: F811
    result = run(testnet, "up", "--demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr == "", result.stderr
    out = result.stdout
    assert re.search(r"^ready in \d+\.\d s$", out, re.M), out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == len(STEPS), out
    for n, (line, step) in enumerate(zip(lines, STEPS, strict=True), 1):
        assert re.fullmatch(rf"\[ ?{n}/{len(STEPS)}\] {re.escape(step)} +\d+\.\d\d s  \S.*", line), line
    manifest = testnet.manifest()
    proxy1, proxy2 = (manifest["proxies"][n]["address"] for n in ("proxy1", "proxy2"))
    assert re.search(r"order 1: 1 ETH \+ fee 0\.01 ETH in escrow; proxy proxy[12] .*secondary proxy[12]$", out,
                     re.M), out  # fmt: skip
    assert proxy1 and proxy2
    assert "order 1 FINISHED" in out
    assert re.search(r"seller 10\d\.\d+ ETH \(\+0\.98 ETH\), buyer 9\d\.\d+ ETH \(-1\.0\d+ ETH\)", out), out
    decrypted = Path(re.search(r"^decrypted file: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert decrypted.parent == Path(manifest["accounts"]["buyer"]["home"]) / "downloads"
    match = re.search(r"^sha256 ([0-9a-f]{64}) matches the original \((.+)\)$", out, re.M)
    assert match, out
    source = Path(match.group(2))
    assert decrypted.read_bytes() == source.read_bytes() and source.stat().st_size == 1 << 20
    assert hashlib.sha256(decrypted.read_bytes()).hexdigest() == match.group(1)

    # The market goes away: `demo` on the running testnet stops at `publish`, in one line.
    market = testnet.pids()["market"]
    os.kill(market, signal.SIGTERM)
    assert wait_until(lambda: not alive(market), timeout=15)
    failed = run(testnet, "demo")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (line,) = failed.stderr.splitlines()
    assert line.startswith("pdash-testnet: demo: publish failed: "), line
    assert re.search(r"^\[ 2/11\] encrypt\+upload ", failed.stdout, re.M) and "publish " not in failed.stdout


def test_demo_without_a_testnet_says_so(testnet: RunningTestnet) -> None:  # noqa: F811
    result = run(testnet, "demo", timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"pdash-testnet: demo: no testnet at {testnet.home / 'testnet'}: run `pdash-testnet up` first"
    ]
    wrong = run(testnet, "down", "--demo", timeout=60)
    assert wrong.returncode == 2 and "--demo goes with up" in wrong.stderr

"""`bin/pdash-testnet up|status|down` as a user runs it, on free ports in a temp CPCHAIN_HOME.

Every test calls `down` at teardown, so nothing is left running whatever fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from cpchain.chain.connection import connect_url
from cpchain.services import port_open
from tests.chain.conftest import free_port

BIN = Path(__file__).resolve().parents[1] / "bin"
ADDRESS_RE = r"0x[0-9a-fA-F]{40}"


@dataclass
class RunningTestnet:
    home: Path
    chain_port: int
    faucet_port: int
    market_port: int

    @property
    def chain_url(self) -> str:
        return f"http://127.0.0.1:{self.chain_port}"

    @property
    def faucet_url(self) -> str:
        return f"http://127.0.0.1:{self.faucet_port}"

    @property
    def market_url(self) -> str:
        return f"http://127.0.0.1:{self.market_port}"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    def run(self, command: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)  # the test's temp CPCHAIN_HOME
        env.pop("CPCHAIN_DEBUG", None)
        return subprocess.run(
            [str(BIN / "pdash-testnet"), command], env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def pids(self) -> dict[str, int]:
        return {path.stem: int(path.read_text()) for path in sorted(self.run_dir.glob("*.pid"))}


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def testnet(isolated_home: Path) -> Iterator[RunningTestnet]:
    net = RunningTestnet(isolated_home, free_port(), free_port(), free_port())
    (isolated_home / "cpchain.toml").write_text(
        f'[chain]\nlocal_provider_addr = "{net.chain_url}"\n'
        f"[chain.node]\nport = {net.chain_port}\n"
        f"[chain.faucet]\nport = {net.faucet_port}\n"
        f'[market]\nserver_port = {net.market_port}\nmarket_url = "{net.market_url}"\n'
        "workers = 1\nsync_interval = 0.5\n"
    )
    started: list[int] = []
    try:
        yield net
    finally:
        if net.run_dir.exists():
            for pid in net.pids().values():
                started += [pid, *descendants(pid)]
        net.run("down", timeout=60)
        for pid in started:  # only if `down` failed: never leave a process behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def fund(faucet_url: str, address: str) -> dict[str, str]:
    req = urllib.request.Request(f"{faucet_url}/api/fund", data=json.dumps({"address": address}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, str] = json.loads(resp.read())
        return result


def test_up_status_up_again_down(testnet: RunningTestnet) -> None:
    up = testnet.run("up")
    assert up.returncode == 0, up.stderr
    assert "Traceback" not in up.stderr
    out = up.stdout
    assert re.search(rf"^chain +started +{re.escape(testnet.chain_url)} \(pid \d+\)$", out, re.M), out
    assert re.search(rf"^faucet +started +{re.escape(testnet.faucet_url)} \(pid \d+\)$", out, re.M), out
    match = re.search(rf"^contract +deployed +({ADDRESS_RE}) \(chain 1234", out, re.M)
    assert match, out
    contract = match.group(1)

    pids = testnet.pids()
    assert set(pids) == {"chain", "faucet", "market", "indexer"}
    assert re.search(rf"^market +started +{re.escape(testnet.market_url)} \(pid \d+\)$", out, re.M), out
    assert re.search(r"^indexer +started +market chain indexer \(pid \d+\)$", out, re.M), out
    assert f"(pid {pids['chain']})" in out and f"(pid {pids['faucet']})" in out
    started = [pid for root in pids.values() for pid in (root, *descendants(root))]
    assert all(alive(pid) for pid in started)
    assert port_open("127.0.0.1", testnet.chain_port) and port_open("127.0.0.1", testnet.faucet_port)

    # What up printed works: the contract is on the chain, the faucet pays.
    w3 = connect_url(testnet.chain_url)
    assert w3.eth.get_code(contract) != b""  # type: ignore[arg-type]
    user = Account.create().address
    assert fund(testnet.faucet_url, user)["address"] == user
    assert w3.eth.get_balance(user) == 100 * 10**18  # type: ignore[arg-type]
    with urllib.request.urlopen(f"{testnet.market_url}/health/", timeout=10) as resp:
        assert json.loads(resp.read())["status"] == "ok"

    status = testnet.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(rf"^chain +running \(pid {pids['chain']}\) {re.escape(testnet.chain_url)}$", status.stdout, re.M)
    assert re.search(rf"^faucet +running \(pid {pids['faucet']}\) {re.escape(testnet.faucet_url)}$", status.stdout,
                     re.M)  # fmt: skip

    again = testnet.run("up")
    assert again.returncode == 0, again.stderr
    assert re.search(rf"^chain +running +{re.escape(testnet.chain_url)} \(pid {pids['chain']}\)$", again.stdout, re.M)
    assert re.search(rf"^contract +existing +{contract} ", again.stdout, re.M), again.stdout
    assert re.search(rf"^faucet +running +{re.escape(testnet.faucet_url)} \(pid {pids['faucet']}\)$", again.stdout,
                     re.M)  # fmt: skip
    assert testnet.pids() == pids

    down = testnet.run("down")
    assert down.returncode == 0, down.stderr
    for name in ("indexer", "market", "faucet", "chain"):
        assert re.search(rf"^{name} +stopped$", down.stdout, re.M), down.stdout
    assert not list(testnet.run_dir.glob("*.pid"))
    assert wait_until(lambda: not any(alive(pid) for pid in started)), [pid for pid in started if alive(pid)]
    assert not port_open("127.0.0.1", testnet.chain_port)
    assert not port_open("127.0.0.1", testnet.faucet_port)
    assert not port_open("127.0.0.1", testnet.market_port)

    stopped = testnet.run("status")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert re.search(r"^chain +stopped ", stopped.stdout, re.M) and re.search(r"^faucet +stopped ", stopped.stdout,
                                                                              re.M)  # fmt: skip


def test_up_refuses_a_chain_port_taken_by_a_foreign_listener(testnet: RunningTestnet) -> None:
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        foreign.bind(("127.0.0.1", testnet.chain_port))
        foreign.listen()
        result = testnet.run("up")
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("pdash-testnet: ")
        assert str(testnet.chain_port) in lines[0] and "in use" in lines[0]
        assert result.returncode == 1
        assert not list(testnet.run_dir.glob("*.pid")) if testnet.run_dir.exists() else True
        assert not port_open("127.0.0.1", testnet.faucet_port)
    status = testnet.run("status")
    assert status.returncode == 3

"""bin/proxy-first-node as a real process: tracker and boot node answer, SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from cpchain.proxy.discovery import DhtNode, lookup_proxy
from cpchain.proxy.tracker import TrackerLink, list_live_proxies
from tests.proxy.test_discovery import CHAIN, CONTRACT, record, run

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "bin" / "proxy-first-node"


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(home: Path, dht_port: int, tracker_port: int, *, registrar: bool = True) -> Path:
    if registrar:
        (home / "registrar.json").write_text(json.dumps({"address": CONTRACT, "chain_id": CHAIN, "block": 0}))
    path = home / "first-node.toml"
    path.write_text(
        f'[core]\nrc_dir = "{home}"\n'
        f'[proxy]\nboot_nodes = ["127.0.0.1:{dht_port}"]\ntracker = "127.0.0.1:{tracker_port}"\n'
        f"[proxy.discovery]\nfirst_node_dht_port = {dht_port}\nfirst_node_tracker_port = {tracker_port}\n"
        "heartbeat_interval = 0.2\npeer_expiry = 2.0\nrpc_timeout = 1.0\n"
    )
    return path


def launch(config: Path, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CPCHAIN_HOME": str(home)}
    env.pop("CPCHAIN_HOME_CONFIG_PATH", None)
    return subprocess.Popen(
        [str(LAUNCHER), "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


@pytest.fixture
def first_node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    dht_port, tracker_port = udp_port(), udp_port()
    proc = launch(write_config(tmp_path, dht_port, tracker_port), tmp_path)
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 30)
        assert readable, "proxy-first-node did not report ready"
        line = proc.stdout.readline()
        assert f"127.0.0.1:{tracker_port}/udp" in line and f"127.0.0.1:{dht_port}/udp" in line, line
        yield proc, dht_port, tracker_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_first_node_serves_tracker_and_boot_node_then_stops_on_sigterm(
    first_node: tuple[subprocess.Popen[str], int, int], tmp_path: Path
) -> None:
    proc, dht_port, tracker_port = first_node
    proxy = Account.create()

    async def scenario() -> None:
        link = TrackerLink(proxy, lambda: record(proxy, host="10.9.9.9"), ("127.0.0.1", tracker_port),
                           chain_id=CHAIN, contract=CONTRACT, heartbeat_interval=0.2, timeout=2.0)  # fmt: skip
        node = DhtNode(chain_id=CHAIN, contract=CONTRACT, rpc_timeout=1.0)
        await link.start()
        await node.start("127.0.0.1", 0, [("127.0.0.1", dht_port)])
        try:
            assert node.neighbours == 1  # the boot node answered
            assert await node.publish(proxy.address, record(proxy, host="10.9.9.9"))
            for _ in range(100):
                if link.registered:
                    break
                await asyncio.sleep(0.05)
            listed = await list_live_proxies(("127.0.0.1", tracker_port), chain_id=CHAIN, contract=CONTRACT)
            assert [(r.address, r.host) for r in listed] == [(proxy.address, "10.9.9.9")]
            found = await lookup_proxy(proxy.address, [("127.0.0.1", dht_port)], chain_id=CHAIN, contract=CONTRACT,
                                       timeout=5)  # fmt: skip
            assert found is not None and found.host == "10.9.9.9"
        finally:
            link.stop()
            node.stop()

    run(scenario)
    assert (tmp_path / "proxy" / "tracker-nonces.db").exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    _, stderr = proc.communicate()
    assert "Traceback" not in stderr
    assert f"registered proxy {proxy.address}" in stderr  # the tracker logs (INFO) go to stderr


def test_first_node_without_a_deployed_contract_fails_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, udp_port(), udp_port(), registrar=False)
    proc = launch(config, tmp_path)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert stderr.startswith("proxy-first-node: ") and "run bin/deploy-contract" in stderr


def test_first_node_with_its_port_taken_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        config = write_config(tmp_path, squatter.getsockname()[1], udp_port())
        proc = launch(config, tmp_path)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert stderr.startswith("proxy-first-node: DHT boot node: cannot listen on 127.0.0.1:") and "in use" in stderr

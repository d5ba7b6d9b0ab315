"""`bin/pdash-testnet up|status|down` as a user runs it, on free ports in a temp CPCHAIN_HOME.

Every port the testnet uses (chain, faucet, market, broker, tracker and boot node, both
proxies' six ports) is a free one below the ephemeral range, so the test never meets a
running testnet or another test. Every test calls `down` at teardown, and then kills
whatever `down` missed, so nothing is left running whatever fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from cpchain.chain.connection import connect_url
from cpchain.chain.escrow import Deployment, Escrow
from cpchain.config import load_config
from cpchain.crypto import keystore
from cpchain.netutil import service_port
from cpchain.proxy.client import ProxyClient, pick_proxy, resolve
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import PURPOSE_BUYER, Domain
from cpchain.proxy.streams.kafka_utils import answers
from cpchain.proxy.tracker import list_live_proxies
from cpchain.services import port_open, udp_bound

BIN = Path(__file__).resolve().parents[1] / "bin"
ADDRESS_RE = r"0x[0-9a-fA-F]{40}"
SERVICES = ("chain", "kafka", "faucet", "market", "indexer", "tracker", "proxy1", "proxy2")
PROXY_KEYS = ("server_port", "server_file_port", "server_stream_ws_port", "server_stream_http_port", "dht_port",
              "tracker_link_port")  # fmt: skip
ETHER = 10**18


@dataclass
class RunningTestnet:
    home: Path
    chain_port: int = field(default_factory=service_port)
    faucet_port: int = field(default_factory=service_port)
    market_port: int = field(default_factory=service_port)
    kafka_port: int = field(default_factory=service_port)
    tracker_port: int = field(default_factory=service_port)  # UDP
    boot_port: int = field(default_factory=service_port)  # UDP
    proxies: dict[str, dict[str, int]] = field(
        default_factory=lambda: {name: {key: service_port() for key in PROXY_KEYS} for name in ("proxy1", "proxy2")}
    )

    def __post_init__(self) -> None:
        lines = [
            "[chain]", f'local_provider_addr = "{self.chain_url}"',
            "[chain.node]", f"port = {self.chain_port}",
            "[chain.faucet]", f"port = {self.faucet_port}",
            "[market]", f"server_port = {self.market_port}", f'market_url = "{self.market_url}"', "workers = 1",
            "sync_interval = 0.5",
            "[proxy]", f'kafka_brokers = ["127.0.0.1:{self.kafka_port}"]', f'tracker = "127.0.0.1:{self.tracker_port}"',
            f'boot_nodes = ["127.0.0.1:{self.boot_port}"]',
            "[proxy.discovery]", f"first_node_tracker_port = {self.tracker_port}",
            f"first_node_dht_port = {self.boot_port}",
        ]  # fmt: skip
        for name, ports in self.proxies.items():
            lines += [f"[testnet.{name}]", *(f"{key} = {port}" for key, port in ports.items())]
        (self.home / "cpchain.toml").write_text("\n".join(lines) + "\n")

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

    @property
    def tcp_ports(self) -> list[int]:
        proxy = [ports[k] for ports in self.proxies.values() for k in PROXY_KEYS[:4]]
        return [self.chain_port, self.faucet_port, self.market_port, self.kafka_port, *proxy]

    @property
    def udp_ports(self) -> list[int]:
        proxy = [ports[k] for ports in self.proxies.values() for k in PROXY_KEYS[4:]]
        return [self.tracker_port, self.boot_port, *proxy]

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "testnet" / "testnet.json").read_text())
        return data

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)  # the test's temp CPCHAIN_HOME
        env.pop("CPCHAIN_DEBUG", None)
        return subprocess.run(
            [str(BIN / "pdash-testnet"), command], env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def pidfiles(self) -> list[Path]:
        """Pid files of the services (the broker's is where `bin/kafka-utils` keeps it)."""
        return sorted([*self.run_dir.glob("*.pid"), *(self.home / "kafka").glob("*.pid")])

    def pids(self) -> dict[str, int]:
        return {path.stem: int(path.read_text().split()[0]) for path in self.pidfiles()}

    def held_ports(self) -> list[str]:
        """The testnet's ports something holds (empty when all are closed)."""
        held = [f"{p}/tcp" for p in self.tcp_ports if port_open("127.0.0.1", p)]
        return held + [f"{p}/udp" for p in self.udp_ports if udp_bound("127.0.0.1", p)]


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


def processes_of(home: Path) -> list[int]:
    """Processes running with a CPCHAIN_HOME in `home` (the testnet's services and their children)."""
    marker = f"CPCHAIN_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if any(var.startswith(marker) for var in environ.split(b"\0")) and alive(int(entry.name)):
                found.append(int(entry.name))
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
    net = RunningTestnet(isolated_home)
    started: list[int] = []
    try:
        yield net
    finally:
        for pid in net.pids().values():
            started += [pid, *descendants(pid)]
        if started:
            net.run("down", timeout=60)
        for pid in {*started, *processes_of(net.home)}:  # only if `down` failed: never leave one behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def fund(faucet_url: str, address: str) -> dict[str, str]:
    req = urllib.request.Request(f"{faucet_url}/api/fund", data=json.dumps({"address": address}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, str] = json.loads(resp.read())
        return result


def row(out: str, name: str, state: str, rest: str) -> re.Match[str] | None:
    return re.search(rf"^{name} +{state} +{rest}$", out, re.M)


def test_up_status_up_again_down(testnet: RunningTestnet) -> None:
    began = time.monotonic()
    up = testnet.run("up")
    up_seconds = time.monotonic() - began
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Traceback" not in up.stderr
    out = up.stdout
    assert row(out, "chain", "started", rf"{re.escape(testnet.chain_url)} \(pid \d+\)"), out
    assert row(out, "faucet", "started", rf"{re.escape(testnet.faucet_url)} \(pid \d+\)"), out
    assert row(out, "market", "started", rf"{re.escape(testnet.market_url)} \(pid \d+\)"), out
    assert row(out, "indexer", "started", r"market chain indexer \(pid \d+\)"), out
    assert row(out, "kafka", "started", rf"127\.0\.0\.1:{testnet.kafka_port} .*\(pid \d+\)"), out
    assert row(out, "tracker", "started", rf"udp 127\.0\.0\.1:{testnet.tracker_port} \(tracker\), "
                                          rf"udp 127\.0\.0\.1:{testnet.boot_port} \(DHT boot node\) \(pid \d+\)"), out
    for name, ports in testnet.proxies.items():
        assert row(out, name, "started", rf"{ADDRESS_RE} control 127\.0\.0\.1:{ports['server_port']} .*\(pid \d+\)")
    match = re.search(rf"^contract +deployed +({ADDRESS_RE}) \(chain 1234", out, re.M)
    assert match, out
    contract = match.group(1)
    for name in ("seller", "buyer"):
        assert row(out, name, "account", rf"{ADDRESS_RE} \(funded 100 ETH\); wallet: CPCHAIN_HOME=.*/testnet/{name}")
    for name in testnet.proxies:
        assert row(out, name, "account", rf"{ADDRESS_RE} \(funded 100 ETH, bonded 10 ETH\)"), out
    assert re.search(r"^ready in \d+\.\d s$", out, re.M), out
    print(f"pdash-testnet up took {up_seconds:.1f} s")

    pids = testnet.pids()
    assert set(pids) == set(SERVICES)
    for name, pid in pids.items():
        assert f"(pid {pid})" in out, name
    started = [pid for root in pids.values() for pid in (root, *descendants(root))]
    assert all(alive(pid) for pid in started)
    assert testnet.held_ports() == [f"{p}/tcp" for p in testnet.tcp_ports] + [
        f"{p}/udp" for p in testnet.udp_ports
    ]  # every port of every service is open

    # What up printed and wrote works: the contract, the faucet, the market, the broker.
    manifest = testnet.manifest()
    assert manifest["chain"]["contract"] == contract and manifest["chain"]["url"] == testnet.chain_url
    w3 = connect_url(testnet.chain_url)
    escrow = Escrow(w3, Deployment.load(Path(manifest["chain"]["registrar"])))
    assert escrow.address == contract
    user = Account.create().address
    assert fund(testnet.faucet_url, user)["address"] == user
    assert w3.eth.get_balance(user) == 100 * ETHER  # type: ignore[arg-type]
    with urllib.request.urlopen(f"{testnet.market_url}/health/", timeout=10) as resp:
        assert json.loads(resp.read())["status"] == "ok"
    assert answers("127.0.0.1", testnet.kafka_port)

    # The accounts: funded, the proxies bonded, every password only in its own 0600 file.
    accounts = manifest["accounts"]
    for name in ("seller", "buyer"):
        assert w3.eth.get_balance(accounts[name]["address"]) == 100 * ETHER
    for name in testnet.proxies:
        assert escrow.proxy_account(accounts[name]["address"]) == (10 * ETHER, 0)
    secrets = {}
    for name, account in accounts.items():
        password_file = Path(account["password_file"])
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600, name
        secrets[name] = keystore.read_password_file(password_file)
    for path in [*testnet.home.rglob("*")]:
        if path.is_file() and path.name != "keystore.password":
            text = path.read_bytes()
            leaked = [name for name, secret in secrets.items() if secret.encode() in text]
            assert not leaked, f"{leaked} password in {path}"
    assert not any(secret in out + up.stderr for secret in secrets.values())

    # The buyer's wallet config names everything a wallet needs, and its keystore opens.
    wallet = load_config(Path(accounts["buyer"]["config"]))
    assert wallet.get("chain.local_provider_addr") == testnet.chain_url
    assert wallet.path("chain.registrar_json") == Path(manifest["chain"]["registrar"])
    assert wallet.get("market.market_url") == testnet.market_url
    assert wallet.get("account.charge_server") == testnet.faucet_url
    assert wallet.get("proxy.tracker") == f"127.0.0.1:{testnet.tracker_port}"
    assert wallet.get("proxy.boot_nodes") == [f"127.0.0.1:{testnet.boot_port}"]
    assert wallet.rc_dir == Path(accounts["buyer"]["home"])
    (keyfile,) = wallet.path("account.keystore_dir").glob("UTC--*")
    buyer = keystore.unlock(keystore.load_keystore(keyfile),
                            keystore.read_password_file(wallet.path("account.password_file")))  # fmt: skip
    assert buyer.address == accounts["buyer"]["address"]

    # The proxies: listed by the tracker with their bond, found in the DHT, answering signed
    # requests on their TLS control ports.
    domain = Domain(escrow.deployment.chain_id, contract)
    listed = asyncio.run(list_live_proxies(("127.0.0.1", testnet.tracker_port), chain_id=domain.chain_id,
                                           contract=contract, timeout=5))  # fmt: skip
    proxies = {name: manifest["proxies"][name]["address"] for name in testnet.proxies}
    assert {r.address for r in listed} == set(proxies.values())
    assert pick_proxy(("127.0.0.1", testnet.tracker_port), escrow).address in proxies.values()
    client = ProxyClient(buyer, domain, retries=1)
    for name, address in proxies.items():
        endpoint = resolve(address, [("127.0.0.1", testnet.boot_port)], domain)
        assert (endpoint.control_port, endpoint.file_port) == (
            testnet.proxies[name]["server_port"], testnet.proxies[name]["server_file_port"])  # fmt: skip
        reply = client.call(endpoint, pb.Request(buyer_data=pb.BuyerData(order_id=10**9)), PURPOSE_BUYER)
        assert reply.status == pb.UNKNOWN_ORDER, reply

    status = testnet.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(rf"^chain +running \(pid {pids['chain']}\) {re.escape(testnet.chain_url)}$", status.stdout, re.M)
    for name in SERVICES:
        assert re.search(rf"^{name} +running \(pid {pids[name]}\) ", status.stdout, re.M), status.stdout
    for name in testnet.proxies:
        assert re.search(rf"^{name} +account +{proxies[name]} [\d.]+ ETH; deposit 10 ETH \(bonded\)$", status.stdout,
                         re.M), status.stdout  # fmt: skip
    assert re.search(rf"^buyer +account +{buyer.address} 100 ETH; ", status.stdout, re.M), status.stdout

    again = testnet.run("up")
    assert again.returncode == 0, again.stderr
    for name in SERVICES:
        assert re.search(rf"^{name} +running +.*\(pid {pids[name]}\)$", again.stdout, re.M), again.stdout
    assert re.search(rf"^contract +existing +{contract} ", again.stdout, re.M), again.stdout
    for name in ("seller", "buyer", *testnet.proxies):
        assert row(again.stdout, name, "account", rf"{accounts[name]['address']} \(existing\).*"), again.stdout
    assert testnet.pids() == pids
    assert escrow.proxy_account(proxies["proxy1"]) == (10 * ETHER, 0)

    # One service dies: status says so and fails; up starts just that one again.
    os.kill(pids["proxy2"], signal.SIGKILL)
    assert wait_until(lambda: not alive(pids["proxy2"]))
    broken = testnet.run("status")
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert re.search(r"^proxy2 +stopped ", broken.stdout, re.M) and re.search(r"^proxy1 +running ", broken.stdout,
                                                                              re.M), broken.stdout  # fmt: skip
    healed = testnet.run("up")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert row(healed.stdout, "proxy2", "started", r".*\(pid \d+\)"), healed.stdout
    assert row(healed.stdout, "proxy1", "running", rf".*\(pid {pids['proxy1']}\)"), healed.stdout
    pids["proxy2"] = testnet.pids()["proxy2"]
    started += [pids["proxy2"], *descendants(pids["proxy2"])]
    assert testnet.pids() == pids

    down = testnet.run("down")
    assert down.returncode == 0, down.stderr
    for name in SERVICES:
        assert re.search(rf"^{name} +stopped$", down.stdout, re.M), down.stdout
    assert not testnet.pidfiles()
    assert wait_until(lambda: not any(alive(pid) for pid in started)), [pid for pid in started if alive(pid)]
    assert testnet.held_ports() == []
    assert processes_of(testnet.home) == []

    stopped = testnet.run("status")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    for name in SERVICES:
        assert re.search(rf"^{name} +stopped ", stopped.stdout, re.M), stopped.stdout


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_up_refuses_a_port_taken_by_a_foreign_listener(testnet: RunningTestnet, proto: str) -> None:
    """The chain's TCP port, or proxy2's UDP DHT port: one line, and nothing starts."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    port = testnet.chain_port if proto == "tcp" else testnet.proxies["proxy2"]["dht_port"]
    with socket.socket(socket.AF_INET, kind) as foreign:
        foreign.bind(("127.0.0.1", port))
        if proto == "tcp":
            foreign.listen()
        result = testnet.run("up")
        assert "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("pdash-testnet: ")
        assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines[0]
        assert ("chain" if proto == "tcp" else "proxy2") in lines[0]
        assert result.returncode == 1
        assert not testnet.pidfiles()
        others = [p for p in testnet.tcp_ports if p != port]
        assert not any(port_open("127.0.0.1", p) for p in others)


def test_a_failure_during_up_stops_what_it_started(testnet: RunningTestnet) -> None:
    """proxy2's password file is readable by others: up fails in one line while the chain,
    broker and market are starting, and stops them again."""
    password_file = testnet.home / "testnet" / "proxy2" / "keystore.password"
    password_file.parent.mkdir(parents=True)
    password_file.write_text("a password others can read\n")
    password_file.chmod(0o644)
    result = testnet.run("up")
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdash-testnet: "), result.stderr
    assert str(password_file) in lines[0] and "0644" in lines[0], lines[0]
    assert result.returncode == 1
    assert not testnet.pidfiles()
    assert wait_until(lambda: testnet.held_ports() == []), testnet.held_ports()
    assert wait_until(lambda: processes_of(testnet.home) == []), processes_of(testnet.home)


def test_a_pid_file_naming_another_program_is_not_obeyed(tmp_path: Path) -> None:
    """A service's pid file whose pid now belongs to another program (the service died and
    the kernel reused the pid): the service counts as stopped, and `stop` leaves that program alone."""
    from cpchain.services import Service

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        service = Service("proxy1", ["true"], tmp_path)
        service.pidfile.write_text(f"{other.pid} 1\n")  # started at tick 1: not this `sleep`
        assert service.pid() is None
        assert not service.pidfile.exists()
        service.pidfile.write_text(f"{other.pid} 1\n")
        assert service.stop() is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_ports_configured_twice_are_refused_in_one_line(tmp_path: Path) -> None:
    from cpchain.config import ConfigError
    from cpchain.testnet import check_config

    path = tmp_path / "cpchain.toml"
    path.write_text("[testnet.proxy2]\nserver_file_port = 8083\n")
    with pytest.raises(ConfigError, match=r"port 8083/tcp is configured for both market and proxy2$"):
        check_config(load_config(path))

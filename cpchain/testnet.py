"""The local testnet: `bin/pdash-testnet up|down|status`, everything on 127.0.0.1.

Owns starting, stopping and reporting the local services, the testnet's accounts and the
configuration files it hands to its proxies and wallets; each service's own logic lives in
its component. `up` starts, in parallel wherever they are independent:

    at once:            chain node; Kafka-protocol dev broker (tansu, as `bin/kafka-utils
                        start --dev` runs it); market (SQLite); the four accounts
                        (seller, buyer, proxy1, proxy2: keystore + 0600 password file)
    once the chain:     faucet; the contract (the registered one if live, else deployed)
    once the contract:  market chain indexer; tracker + DHT boot node; funding and bonds
    then:               proxy1 and proxy2 (after tracker, bonds, broker); then wait until
                        the tracker lists both

A service that is already running is left alone and reported; a port held by another
program stops `up` before anything starts; a service that fails to start stops the ones
this `up` started. Layout under rc_dir (testnet.dir):

    testnet/testnet.json                  what runs where, contract, accounts (for scripts)
    testnet/{seller,buyer}/cpchain.toml   wallet configs: CPCHAIN_HOME=testnet/buyer pdash ...
    testnet/{proxy1,proxy2}/cpchain.toml  proxy homes (database, TLS certificate)
    testnet/tracker/cpchain.toml          the tracker's home
    testnet/<name>/keystore/, keystore.password (0600)

`running_testnet(home)` runs a throwaway one for benches and scripts: `isolated_config` puts
every service on its own free port (cpchain.netutil.service_port) in a temporary home.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.cli import init_chain, keystore_file, operator_account, unlock_account, write_password_file
from cpchain.chain.connection import checksum, connect
from cpchain.chain.errors import ChainError, ContractNotDeployed
from cpchain.chain.escrow import Deployment, Escrow, EscrowParams, ProxyAgent, deploy, registrar_path
from cpchain.chain.node import NodeSpec
from cpchain.chain.tx import TxSender
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, ConfigError, load_config
from cpchain.crypto import keystore
from cpchain.fsutil import atomic_write_text
from cpchain.netutil import service_port
from cpchain.proxy.streams.kafka_utils import broker_address, dev_broker, tansu_argv
from cpchain.services import Service, ServiceError

log = logging.getLogger("cpchain.testnet")
BIN = Path(sys.executable).parent
WALLETS = ("seller", "buyer")
PROXIES = ("proxy1", "proxy2")
PROXY_PORTS = ("server_port", "server_file_port", "server_stream_ws_port", "server_stream_http_port",
               "dht_port", "tracker_link_port")  # fmt: skip
ETHER = 10**18
T = TypeVar("T")


# ---------------------------------------------------------------- layout and services


@dataclass(frozen=True)
class Layout:
    """Where the testnet keeps its homes, accounts and generated configs."""

    config: Config

    @property
    def root(self) -> Path:
        return self.config.path("testnet.dir")

    @property
    def run_dir(self) -> Path:
        return self.config.rc_dir / "run"

    @property
    def manifest(self) -> Path:
        return self.root / "testnet.json"

    def home(self, name: str) -> Path:
        return self.root / name

    def keystore_dir(self, name: str) -> Path:
        return self.home(name) / "keystore"

    def password_file(self, name: str) -> Path:
        return self.home(name) / "keystore.password"

    def config_file(self, name: str) -> Path:
        return self.home(name) / "cpchain.toml"

    def env(self, name: str) -> dict[str, str]:
        """What a process needs to run with `name`'s home and generated config."""
        return {"CPCHAIN_HOME": str(self.home(name)), "CPCHAIN_HOME_CONFIG_PATH": str(self.config_file(name))}

    def address(self, name: str) -> str | None:
        """The address of `name`'s account, or None before `up` created it."""
        directory = self.keystore_dir(name)
        files = sorted(directory.glob("UTC--*")) if directory.is_dir() else []
        if len(files) != 1:
            return None
        return checksum("0x" + str(keystore.load_keystore(files[0])["address"]).removeprefix("0x"))


def proxy_ports(config: Config, name: str) -> dict[str, int]:
    section = config.section(f"testnet.{name}")
    return {key: int(section[key]) for key in PROXY_PORTS}


def tracker_address(config: Config) -> tuple[str, int, int]:
    """(host, tracker UDP port, DHT boot node UDP port) of the testnet's first node."""
    discovery = config.section("proxy.discovery")
    return (str(discovery["first_node_host"]), int(discovery["first_node_tracker_port"]),
            int(discovery["first_node_dht_port"]))  # fmt: skip


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def services(config: Config) -> list[Service]:
    """The testnet's services in start order."""
    layout = Layout(config)
    run_dir = layout.run_dir
    spec = NodeSpec.from_config(config)
    faucet = config.section("chain.faucet")
    market = config.section("market")
    first_host, tracker_port, dht_port = tracker_address(config)
    proxy_host = str(config.require("proxy.host"))
    listed = [
        Service("chain", [str(BIN / "eth-run-geth")], run_dir, port=spec.port, host=spec.host),
        _kafka(config),
        Service("faucet", [str(BIN / "charge-server")], run_dir, port=int(faucet["port"]), host=faucet["host"]),
        Service("market", [str(BIN / "market-start")], run_dir, port=int(market["server_port"]), host=market["host"]),
        Service("indexer", [str(BIN / "market-sync-chain")], run_dir),
        Service("tracker", [str(BIN / "proxy-first-node")], run_dir, host=first_host,
                udp_ports=(tracker_port, dht_port), extra_env=layout.env("tracker")),
    ]
    for name in PROXIES:
        ports = proxy_ports(config, name)
        listed.append(Service(
            name, [str(BIN / "proxy-start")], run_dir, port=ports["server_port"], host=proxy_host,
            tcp_ports=(ports["server_file_port"], ports["server_stream_ws_port"], ports["server_stream_http_port"]),
            udp_ports=(ports["dht_port"], ports["tracker_link_port"]), extra_env=layout.env(name),
        ))  # fmt: skip
    return listed


def _kafka(config: Config) -> Service:
    """The dev broker exactly as `bin/kafka-utils start --dev` runs it (same pid file and log),
    so either command sees and stops the same broker."""
    try:
        return dev_broker(config)
    except ServiceError:  # tansu is not installed: `up` says so; `status` and `down` need no command line
        host, port = broker_address(config)
        return Service("kafka", [], config.path("proxy.streams.dev_broker_dir"), port=port, host=host)


def where(config: Config, service: Service) -> str:
    """How a service is reached, for the reports."""
    if service.name == "indexer":
        return "market chain indexer"
    if service.name == "kafka":
        return f"{service.host}:{service.port} (Kafka protocol; dev broker tansu, in-memory)"
    if service.name == "tracker":
        tracker_port, dht_port = service.udp_ports
        return f"udp {service.host}:{tracker_port} (tracker), udp {service.host}:{dht_port} (DHT boot node)"
    if service.name in PROXIES:
        ports = proxy_ports(config, service.name)
        address = Layout(config).address(service.name) or "(no account yet)"
        return (f"{address} control {service.host}:{service.port} (TLS; files {ports['server_file_port']}, "
                f"streams ws {ports['server_stream_ws_port']} / rest {ports['server_stream_http_port']}; "
                f"udp dht {ports['dht_port']}, tracker link {ports['tracker_link_port']})")  # fmt: skip
    assert service.port is not None
    return _url(service.host, service.port)


def check_config(config: Config) -> None:
    """What the testnet needs from the config: a local chain and distinct ports."""
    where_ = config.where
    if config.get("chain.mode") != "local":
        raise ConfigError(f"{where_}: key 'chain.mode' must be 'local' for the testnet (it runs the chain node)")
    seen: dict[str, str] = {}
    for service in services(config):
        labels = [(f"{p}/tcp", service.name) for p in service.tcp] + [(f"{p}/udp", service.name)
                                                                      for p in service.udp_ports]  # fmt: skip
        for port, name in labels:
            if port in seen:
                raise ConfigError(f"{where_}: port {port} is configured for both {seen[port]} and {name}")
            seen[port] = name
    for key in ("fund_ether", "proxy_deposit_ether"):
        if int(config.get(f"testnet.{key}")) <= 0:
            raise ConfigError(f"{where_}: key 'testnet.{key}' must be positive")


# ---------------------------------------------------------------- generated configs


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_toml(sections: Mapping[str, Mapping[str, object]], header: str) -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in sections.items():
        lines += ["", f"[{section}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    atomic_write_text(path, text)


def _chain_client(config: Config) -> dict[str, object]:
    chain = config.section("chain")
    return {
        "mode": "local",
        "local_provider_addr": chain["local_provider_addr"],
        "registrar_json": str(registrar_path(config)),
        "confirmations": chain["confirmations"],
        "tx_timeout": chain["tx_timeout"],
        "poll_interval": chain["poll_interval"],
    }


def _logging(config: Config) -> dict[str, object]:
    return {**config.section("logging"), "file": ""}  # to stderr: the service's log in rc_dir/run


def _scalars(section: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in section.items() if not isinstance(value, dict)}


def wallet_config(config: Config, name: str) -> dict[str, dict[str, object]]:
    layout = Layout(config)
    home = layout.home(name)
    faucet, market = config.section("chain.faucet"), config.section("market")
    host, tracker_port, dht_port = tracker_address(config)
    return {
        "core": {"rc_dir": str(home), "mode": "wallet"},
        "account": {"keystore_dir": str(layout.keystore_dir(name)), "password_file": str(layout.password_file(name)),
                    "charge_server": _url(faucet["host"], int(faucet["port"]))},
        "chain": _chain_client(config),
        "market": {"market_url": _url(market["host"], int(market["server_port"]))},
        "proxy": {"tracker": f"{host}:{tracker_port}", "boot_nodes": [f"{host}:{dht_port}"],
                  "kafka_brokers": list(config.get("proxy.kafka_brokers"))},
        "wallet.storage": {"local_dir": str(home / "storage")},
    }


def proxy_config(config: Config, name: str) -> dict[str, dict[str, object]]:
    """[proxy] of the main config with this proxy's ports, home, account and the testnet's
    tracker; it may fetch from this host (the seller's local storage, other proxies)."""
    layout = Layout(config)
    host, tracker_port, dht_port = tracker_address(config)
    proxy = _scalars(config.section("proxy"))
    proxy.update(proxy_ports(config, name))
    proxy.update(
        keystore=str(layout.keystore_dir(name)), password_file=str(layout.password_file(name)),
        dbpath="proxy/proxy.db", server_root="proxy/server_root", tls_cert="proxy/tls/cert.pem",
        tls_key="proxy/tls/key.pem", boot_nodes=[f"{host}:{dht_port}"], tracker=f"{host}:{tracker_port}",
        fetch_types=sorted({*proxy["fetch_types"], "local", "proxy"}), fetch_allow_internal=True,
        local_roots=[*proxy["local_roots"], str(layout.home("seller") / "storage")],
    )  # fmt: skip
    streams = dict(config.section("proxy.streams"))
    streams["topic_prefix"] = f"{streams['topic_prefix']}{name}-"  # one broker, two proxies
    return {
        "core": {"rc_dir": str(layout.home(name)), "mode": "proxy"},
        "chain": _chain_client(config),
        "logging": _logging(config),
        "proxy": proxy,
        "proxy.discovery": dict(config.section("proxy.discovery")),
        "proxy.streams": streams,
    }


def tracker_config(config: Config) -> dict[str, dict[str, object]]:
    return {
        "core": {"rc_dir": str(Layout(config).home("tracker")), "mode": "proxy"},
        "chain": _chain_client(config),
        "logging": _logging(config),
        "proxy": {"boot_nodes": []},  # the first node joins nobody
        "proxy.discovery": dict(config.section("proxy.discovery")),
    }


def write_configs(config: Config) -> None:
    """Every generated config, rewritten when the main config changed what it holds."""
    layout = Layout(config)
    source = config.where
    for name in WALLETS:
        _write_if_changed(layout.config_file(name), render_toml(wallet_config(config, name), (
            f"The testnet {name}'s wallet, written by `pdash-testnet up` from {source}.\n"
            f"Use it with CPCHAIN_HOME={layout.home(name)} (pdash, bin/wallet), or --config this file.\n"
            "Regenerated by every `up`: change the main config instead.")))  # fmt: skip
    for name in PROXIES:
        _write_if_changed(layout.config_file(name), render_toml(proxy_config(config, name), (
            f"The testnet's {name}, written by `pdash-testnet up` from {source}.\n"
            f"Operate it with CPCHAIN_HOME={layout.home(name)} proxy-ctl show.\n"
            "Regenerated by every `up`: change the main config instead.")))  # fmt: skip
    _write_if_changed(layout.config_file("tracker"), render_toml(tracker_config(config), (
        f"The testnet's tracker and DHT boot node, written by `pdash-testnet up` from {source}.")))  # fmt: skip


# ---------------------------------------------------------------- accounts


@dataclass(frozen=True)
class TestAccount:
    name: str
    address: str
    keystore: Path
    created: bool
    signer: LocalAccount | None = None  # the key, when created by this run (no second KDF run)


def ensure_account(config: Config, name: str) -> TestAccount:
    """`name`'s keystore and 0600 password file, created on first use."""
    layout = Layout(config)
    directory, password_file = layout.keystore_dir(name), layout.password_file(name)
    files = sorted(directory.glob("UTC--*")) if directory.is_dir() else []
    if files:
        path = keystore_file(directory)
        if not password_file.exists():
            raise ConfigError(f"{password_file}: missing (the password of {path})")
        return TestAccount(name, str(layout.address(name)), path, created=False)
    if not password_file.exists():
        write_password_file(password_file)
    password = keystore.read_password_file(password_file)
    fresh: LocalAccount = Account.create()
    sealed = keystore.import_private_key(bytes(fresh.key), password,
                                         kdf_iterations=int(config.get("testnet.account_scrypt_n")))  # fmt: skip
    path = keystore.save_keystore(directory, sealed)
    return TestAccount(name, sealed.address, path, created=True, signer=fresh)


class Operator:
    """The chain operator's transaction sender, unlocked once and only when needed."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._sender: TxSender | None = None

    def sender(self) -> TxSender:
        with self._lock:
            if self._sender is None:
                self._sender = _sender(self._config, operator_account(self._config))
            return self._sender


def _sender(config: Config, account: LocalAccount) -> TxSender:
    return TxSender(connect(config), account, timeout=float(config.get("chain.tx_timeout")),
                    poll_interval=float(config.get("chain.poll_interval")),
                    confirmations=int(config.get("chain.confirmations")))  # fmt: skip


def ensure_contract(config: Config, operator: Operator) -> tuple[Deployment, bool]:
    """The registered escrow if it is live on this chain, else a fresh deployment."""
    path = registrar_path(config)
    if path.exists():
        try:
            return Escrow(connect(config), Deployment.load(path)).deployment, False
        except ContractNotDeployed as stale:
            log.info("registered contract is not usable (%s); deploying a new one", stale)
    sender = operator.sender()
    arbiter = config.get("chain.contract.arbiter") or sender.address
    deployment = deploy(sender, arbiter, EscrowParams.from_config(config))
    deployment.save(path)
    return deployment, True


def fund_and_bond(config: Config, operator: Operator, deployment: Deployment,
                  accounts: Mapping[str, TestAccount]) -> dict[str, str]:  # fmt: skip
    """Fund every account whose balance is zero; bond each proxy up to testnet.proxy_deposit_ether.

    Returns a note per account for the report.
    """
    w3 = connect(config)
    amount = int(config.get("testnet.fund_ether")) * ETHER
    empty = [a for a in accounts.values() if w3.eth.get_balance(checksum(a.address)) == 0]
    notes = {a.name: "existing" for a in accounts.values()}
    _parallel(partial(_fund, operator, a.address, amount) for a in empty)
    for a in empty:
        notes[a.name] = f"funded {amount // ETHER} ETH"
    escrow = Escrow(w3, deployment)
    wanted = max(int(config.get("testnet.proxy_deposit_ether")) * ETHER, escrow.params().min_proxy_deposit)

    def bond(account: TestAccount) -> None:
        deposit, unlock_at = escrow.proxy_account(account.address)
        if unlock_at:
            notes[account.name] = "unbonding (bin/proxy-ctl withdraw was requested)"
            return
        if deposit < wanted:
            signer = account.signer or unlock_account(account.keystore, Layout(config).password_file(account.name))
            ProxyAgent(escrow, _sender(config, signer)).deposit(wanted - deposit)
            done = f"bonded {_ether(wanted)}"
            notes[account.name] = done if notes[account.name] == "existing" else f"{notes[account.name]}, {done}"

    _parallel(partial(bond, accounts[name]) for name in PROXIES)
    return notes


def _fund(operator: Operator, address: str, amount: int) -> None:
    operator.sender().send_value(address, amount)


def _ether(wei: int) -> str:
    return f"{(Decimal(wei) / ETHER).quantize(Decimal('0.0001')).normalize():f} ETH"


def _parallel(calls: Iterable[Callable[[], object]]) -> None:
    calls = list(calls)
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def wait_registered(config: Config, deployment: Deployment, addresses: Mapping[str, str], timeout: float) -> None:
    """Until the tracker lists every proxy (each registers right after it starts)."""
    from cpchain.proxy.tracker import TrackerUnavailable, list_live_proxies

    host, port, _ = tracker_address(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = asyncio.run(list_live_proxies((host, port), chain_id=deployment.chain_id,
                                                    contract=deployment.address, timeout=2.0))  # fmt: skip
            listed = {r.address.lower() for r in records}
        except TrackerUnavailable:
            listed = set()
        missing = [name for name, address in addresses.items() if address.lower() not in listed]
        if not missing:
            return
        if time.monotonic() > deadline:
            log_file = Layout(config).run_dir / f"{missing[0]}.log"
            raise ServiceError(f"{missing[0]} did not register with the tracker at {host}:{port} within "
                               f"{timeout:.0f} s; see {log_file}")  # fmt: skip
        time.sleep(0.2)


# ---------------------------------------------------------------- up


class _Skipped(Exception):
    """A step did not run because a step it needs failed."""


class _Plan:
    """Steps run in threads as soon as the steps they need are done; the first failure wins."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="testnet")
        self._futures: list[Future[Any]] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._failed = threading.Event()

    def add(self, fn: Callable[[], T], *needs: Future[Any]) -> Future[T]:
        def run() -> T:
            for need in needs:
                if need.exception() is not None:
                    raise _Skipped()
            if self._failed.is_set():
                raise _Skipped()
            try:
                return fn()
            except BaseException as exc:
                with self._lock:
                    self._errors.append(exc)
                self._failed.set()
                raise

        future = self._pool.submit(run)
        self._futures.append(future)
        return future

    def wait(self) -> None:
        try:
            wait_all(self._futures)
        finally:
            self._failed.set()  # on KeyboardInterrupt: steps not begun yet are skipped
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._errors:
            raise self._errors[0]


@contextlib.contextmanager
def _exclusive(config: Config) -> Iterator[None]:
    """One `up` or `down` at a time per rc_dir (a second one waits for the first)."""
    run_dir = Layout(config).run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "testnet.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(config: Config) -> list[str]:
    check_config(config)
    with _exclusive(config):
        return _up(config)


def _up(config: Config) -> list[str]:
    began = time.monotonic()
    layout = Layout(config)
    by_name = {service.name: service for service in services(config)}
    for service in by_name.values():  # a port held by another program: stop before starting anything
        if service.pid() is None:
            service.check_ports_free()
            if not service.argv:
                tansu_argv(service.host, service.port or 0)  # raises: the broker is not installed
    operator_address = init_chain(config)["operator"]
    write_configs(config)
    (layout.home("seller") / "storage").mkdir(parents=True, exist_ok=True, mode=0o700)  # proxies may fetch here
    operator = Operator(config)
    timeout = float(config.get("testnet.ready_timeout"))
    fresh: list[Service] = []
    fresh_lock = threading.Lock()

    def start(name: str) -> tuple[int, bool]:
        service = by_name[name]
        pid, started = service.start(ready_timeout=timeout)
        if started:
            with fresh_lock:
                fresh.append(service)
        return pid, started

    def start_chain() -> tuple[int, bool]:
        result = start("chain")
        _wait_funded(config, operator_address)
        return result

    plan = _Plan()
    try:
        chain = plan.add(start_chain)
        kafka = plan.add(lambda: start("kafka"))
        market = plan.add(lambda: start("market"))
        accounts = {name: plan.add(partial(ensure_account, config, name)) for name in (*WALLETS, *PROXIES)}
        contract = plan.add(lambda: ensure_contract(config, operator), chain)
        faucet = plan.add(lambda: start("faucet"), chain)
        indexer = plan.add(lambda: start("indexer"), contract)
        tracker = plan.add(lambda: start("tracker"), contract)
        notes = plan.add(lambda: fund_and_bond(config, operator, contract.result()[0],
                                               {n: f.result() for n, f in accounts.items()}),
                         contract, *accounts.values())  # fmt: skip
        proxies = {name: plan.add(partial(start, name), tracker, notes, kafka) for name in PROXIES}
        plan.add(lambda: wait_registered(config, contract.result()[0],
                                         {n: accounts[n].result().address for n in PROXIES},
                                         float(config.get("testnet.register_timeout"))),
                 *proxies.values())  # fmt: skip
        plan.wait()
    except BaseException:
        _stop_all(list(reversed(fresh)))  # leave nothing this run started
        raise

    deployment, deployed = contract.result()
    rows: list[str] = [_row(by_name["chain"], chain.result(), config)]
    rows.append(f"{'contract':8} {'deployed' if deployed else 'existing':8} {deployment.address} "
                f"(chain {deployment.chain_id}; registrar {registrar_path(config)})")  # fmt: skip
    for name, future in (("kafka", kafka), ("faucet", faucet), ("market", market), ("indexer", indexer),
                         ("tracker", tracker), *proxies.items()):  # fmt: skip
        rows.append(_row(by_name[name], future.result(), config))
    noted = notes.result()
    for name in (*WALLETS, *PROXIES):
        account = accounts[name].result()
        extra = f"; wallet: CPCHAIN_HOME={layout.home(name)}" if name in WALLETS else ""
        rows.append(f"{name:8} {'account':8} {account.address} ({noted[name]}){extra}")
    rows.append(f"{'operator':8} {'account':8} {operator_address} (deployer, arbiter, faucet)")
    write_manifest(config, deployment, operator_address, {n: f.result() for n, f in accounts.items()})
    rows.append(f"{'config':8} {'wallets':8} {layout.config_file('seller')}, {layout.config_file('buyer')}; "
                f"summary {layout.manifest}")  # fmt: skip
    rows.append(f"logs and pid files in {layout.run_dir} (the broker's in {by_name['kafka'].run_dir})")
    rows.append(f"ready in {time.monotonic() - began:.1f} s")
    return rows


def _wait_funded(config: Config, address: str, timeout: float = 30.0) -> None:
    w3 = connect(config)
    deadline = time.monotonic() + timeout
    while w3.eth.get_balance(checksum(address)) == 0:
        if time.monotonic() > deadline:
            raise ChainError(f"operator {address} was not funded by the chain node")
        time.sleep(0.2)


def _row(service: Service, result: tuple[int, bool], config: Config) -> str:
    pid, started = result
    return f"{service.name:8} {'started' if started else 'running':8} {where(config, service)} (pid {pid})"


def write_manifest(config: Config, deployment: Deployment, operator: str, accounts: Mapping[str, TestAccount]) -> None:
    """testnet.json: everything a script (a demo, a test) needs to use the testnet."""
    layout = Layout(config)
    spec = NodeSpec.from_config(config)
    host, tracker_port, dht_port = tracker_address(config)
    by_name = {service.name: service for service in services(config)}
    faucet, market = by_name["faucet"], by_name["market"]
    data = {
        "chain": {"url": config.get("chain.local_provider_addr"), "node": spec.url, "chain_id": deployment.chain_id,
                  "contract": deployment.address, "registrar": str(registrar_path(config)), "operator": operator},
        "faucet": _url(faucet.host, faucet.port or 0),
        "market": _url(market.host, market.port or 0),
        "kafka": list(config.get("proxy.kafka_brokers")),
        "tracker": f"{host}:{tracker_port}",
        "boot_nodes": [f"{host}:{dht_port}"],
        "proxies": {name: {"address": accounts[name].address, "host": by_name[name].host,
                           "ports": proxy_ports(config, name), "home": str(layout.home(name)),
                           "config": str(layout.config_file(name)),
                           "tls_cert": str(layout.home(name) / "proxy" / "tls" / "cert.pem")}
                    for name in PROXIES},
        "accounts": {name: {"address": accounts[name].address, "home": str(layout.home(name)),
                            "config": str(layout.config_file(name)), "keystore": str(accounts[name].keystore),
                            "password_file": str(layout.password_file(name))}
                     for name in (*WALLETS, *PROXIES)},
        "run_dir": str(layout.run_dir),
    }  # fmt: skip
    _write_if_changed(layout.manifest, json.dumps(data, indent=1) + "\n")


# ---------------------------------------------------------------- down and status


def _stop_all(stopping: list[Service]) -> dict[str, bool]:
    """Stop services in parallel; returns name -> whether something was stopped."""
    results: dict[str, bool] = {}

    def stop(service: Service) -> None:
        results[service.name] = service.stop()

    _parallel(partial(stop, s) for s in stopping)
    return results


def down(config: Config) -> list[str]:
    with _exclusive(config):
        return _down(config)


def _down(config: Config) -> list[str]:
    listed = services(config)
    # The chain and the broker last: the others may still use them while they stop.
    first = [s for s in listed if s.name not in ("chain", "kafka")]
    results = _stop_all(first)
    results.update(_stop_all([s for s in listed if s.name in ("chain", "kafka")]))
    return [f"{s.name:8} {'stopped' if results[s.name] else 'not running'}" for s in reversed(listed)]


def status(config: Config) -> tuple[list[str], bool]:
    lines, healthy = [], True
    chain_up = False
    for service in services(config):
        pid = service.pid()
        place = where(config, service)
        if pid is None:
            healthy = False
            held = " (its port is held by another process)" if service.busy_ports() else ""
            lines.append(f"{service.name:8} stopped {place}{held}")
            continue
        missing = service.missing_ports()
        if missing:
            healthy = False
            lines.append(f"{service.name:8} unhealthy (pid {pid}) {place}: nothing listens on {', '.join(missing)}")
        else:
            chain_up |= service.name == "chain"
            lines.append(f"{service.name:8} running (pid {pid}) {place}")
    account_lines, bonded = _account_status(config, chain_up)
    return lines + account_lines, healthy and bonded


def _account_status(config: Config, chain_up: bool) -> tuple[list[str], bool]:
    """Each account's balance, each proxy's bond (False if a proxy cannot be named in orders)."""
    layout = Layout(config)
    escrow: Escrow | None = None
    lines, bonded = [], True
    if chain_up:
        try:
            escrow = Escrow.from_config(connect(config), config)
        except ChainError:
            escrow = None
    for name in (*WALLETS, *PROXIES):
        address = layout.address(name)
        if address is None:
            lines.append(f"{name:8} account  none yet (run up)")
            bonded &= name not in PROXIES
            continue
        if escrow is None:
            lines.append(f"{name:8} account  {address} (balance unknown: no chain or contract)")
            bonded &= name not in PROXIES
            continue
        text = f"{name:8} account  {address} {_ether(escrow.w3.eth.get_balance(checksum(address)))}"
        if name in PROXIES:
            deposit, unlock_at = escrow.proxy_account(address)
            ok = deposit >= escrow.params().min_proxy_deposit and unlock_at == 0
            bonded &= ok
            text += f"; deposit {_ether(deposit)} ({'bonded' if ok else 'NOT eligible for orders'})"
        else:
            text += f"; wallet: CPCHAIN_HOME={layout.home(name)}"
        lines.append(text)
    return lines, bonded


# ---------------------------------------------------------------- a throwaway testnet


def isolated_config(home: Path, header: str = "a throwaway testnet on free ports",
                    overrides: Mapping[str, Mapping[str, object]] | None = None) -> Path:
    """Write `home`/cpchain.toml putting every testnet service on its own `service_port()`.

    `overrides` adds or replaces keys per section (e.g. {"market": {"sync_interval": 0.5}}).
    """
    home.mkdir(parents=True, exist_ok=True)
    chain, faucet, market, kafka, tracker, boot = (service_port() for _ in range(6))
    sections: dict[str, dict[str, object]] = {
        "chain": {"local_provider_addr": f"http://127.0.0.1:{chain}"},
        "chain.node": {"port": chain},
        "chain.faucet": {"port": faucet},
        "market": {"server_port": market, "market_url": f"http://127.0.0.1:{market}", "workers": 1},
        "proxy": {"kafka_brokers": [f"127.0.0.1:{kafka}"], "tracker": f"127.0.0.1:{tracker}",
                  "boot_nodes": [f"127.0.0.1:{boot}"]},
        "proxy.discovery": {"first_node_tracker_port": tracker, "first_node_dht_port": boot},
        "logging": {"level": "WARNING"},
    }  # fmt: skip
    for name in PROXIES:
        sections[f"testnet.{name}"] = {key: service_port() for key in PROXY_PORTS}
    for section, values in (overrides or {}).items():
        sections.setdefault(section, {}).update(values)
    path = home / "cpchain.toml"
    path.write_text(render_toml(sections, header), encoding="utf-8")
    return path


@contextlib.contextmanager
def running_testnet(home: Path, header: str = "a throwaway testnet on free ports",
                    overrides: Mapping[str, Mapping[str, object]] | None = None,
                    say: Callable[[str], None] | None = None, verbose: bool = False) -> Iterator[Config]:
    """A testnet in `home` (`isolated_config`), stopped (what this `up` started) when the block ends.

    Points CPCHAIN_HOME and CPCHAIN_HOME_CONFIG_PATH of this process at it. `say`, if given, gets
    "testnet up in S s (home)" once it runs; with `verbose`, also `up`'s lines and, on stopping,
    `down`'s.
    """
    os.environ["CPCHAIN_HOME"] = str(home)
    os.environ["CPCHAIN_HOME_CONFIG_PATH"] = str(isolated_config(home, header, overrides))
    config = load_config()
    report = say if say is not None else (lambda _line: None)
    try:
        began = time.monotonic()
        lines = up(config)
        for line in lines if verbose else ():
            report(f"  {line}")
        report(f"testnet up in {time.monotonic() - began:.1f} s ({home})")
        yield config
    finally:
        if verbose:
            report("stopping the testnet")
        lines = down(config)
        for line in lines if verbose else ():
            report(f"  {line}")


# ---------------------------------------------------------------- command line


def main_impl() -> int:
    parser = argparse.ArgumentParser(prog="pdash-testnet", description="Run the local PDash testnet.")
    parser.add_argument("command", choices=["up", "down", "status", "demo"],
                        help="demo: run one complete file trade on the running testnet, step by step")  # fmt: skip
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    parser.add_argument("--demo", action="store_true", help="with up: then run the demo trade")
    args = parser.parse_args()
    if args.config:
        # The services read their config the same way: name the file for them too.
        os.environ["CPCHAIN_HOME_CONFIG_PATH"] = str(Path(args.config).resolve())
    config = load_config()
    setup_logging(config)
    if args.demo and args.command != "up":
        parser.error("--demo goes with up (or run the demo command)")
    if args.command == "up":
        print("\n".join(up(config)), flush=True)
        return demo(config) if args.demo else 0
    if args.command == "demo":
        return demo(config)
    if args.command == "down":
        print("\n".join(down(config)))
        return 0
    lines, healthy = status(config)
    print("\n".join(lines))
    return 0 if healthy else 3


def demo(config: Config) -> int:
    """One file trade between the testnet's seller and buyer (cpchain.wallet.demo), one line per step."""
    from cpchain.wallet.demo import DemoFailed, run_demo
    from cpchain.wallet.errors import WalletError

    logging.getLogger("cpchain.wallet").setLevel(logging.WARNING)  # the steps' lines say it all
    try:
        run_demo(config, out=lambda line: print(line, flush=True))
    except (DemoFailed, WalletError) as exc:
        print(f"pdash-testnet: demo: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    run_cli("pdash-testnet", main_impl)

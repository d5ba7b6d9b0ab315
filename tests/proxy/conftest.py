"""Proxy test harness: anvil with the deployed escrow, proxies run as real `proxy-start` processes.

One anvil and one contract per test module (fresh orders per test, no snapshots: a proxy's
database would not follow a chain revert). `ProxyProc` writes a proxy's home (config,
keystore, password file 0600), starts `bin/proxy-start`, kills it with SIGKILL or stops it
with SIGTERM; `make_trade` builds an encrypted file, a signed product, a placed and
seller-confirmed order, ready for SELLER_DATA.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import Deployment
from cpchain.chain.tx import TxSender
from cpchain.crypto import aead, ecies
from cpchain.netutil import service_port
from cpchain.proxy.client import ProxyClient
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import PURPOSE_REPLY, PURPOSE_SELLER, Domain, Endpoint, make_key_grant, open_envelope, seal
from cpchain.proxy.tls import fingerprint_of_pem
from cpchain.services import port_open
from cpchain.storage.base import Locator
from cpchain.storage.local import LocalStorage
from cpchain.types import OrderTerms, ProductDescription, ProductType
from tests.chain.conftest import ETHER, AnvilProcess, World, build_world, start_anvil
from tests.procs import ServerProcess, write_unattended_keystore

ROOT = Path(__file__).resolve().parents[2]
PROXY_START = ROOT / "bin" / "proxy-start"
PRICE = 10 * ETHER
FEE = ETHER // 10


@dataclass
class Chain:
    anvil: AnvilProcess
    world: World
    registrar: Path
    domain: Domain
    base: Path
    nobody: int = field(default_factory=lambda: service_port())  # a port no test service listens on

    def client(self, name: str, **kwargs: Any) -> ProxyClient:
        return ProxyClient(self.world.accounts[name], self.domain, retry_delay=0.1, **kwargs)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("proxy-chain")
    anvil = start_anvil()
    try:
        world = build_world(anvil.w3, "anvil")
        deployment = world.escrow.deployment
        registrar = base / "registrar.json"
        Deployment(deployment.address, deployment.chain_id, deployment.block).save(registrar)
        yield Chain(anvil, world, registrar, Domain(deployment.chain_id, deployment.address), base)
    finally:
        anvil.stop()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ProxyProc(ServerProcess):
    """One proxy process with its own home directory and free ports."""

    log_names = ("stdout.log", "proxy.log")

    name: str
    home: Path
    chain: Chain
    account: LocalAccount
    overrides: dict[str, object] = field(default_factory=dict)
    discovery: dict[str, object] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.seller_files = self.chain.base / "seller-files"
        self.seller_files.mkdir(exist_ok=True)
        for key in ("server_port", "server_file_port", "server_stream_ws_port", "server_stream_http_port",
                    "dht_port", "tracker_link_port"):  # fmt: skip
            self.ports[key] = service_port()
        write_unattended_keystore(self.home, self.account)
        self.write_config()

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def config_path(self) -> Path:
        return self.home / "cpchain.toml"

    @property
    def log(self) -> Path:
        return self.home / "proxy.log"

    def write_config(self, **overrides: object) -> None:
        self.overrides.update(overrides)
        proxy: dict[str, object] = {
            "host": "127.0.0.1",
            **self.ports,
            "keystore": str(self.home / "keystore"),
            "password_file": str(self.home / "password"),
            "fetch_types": ["local", "proxy"],
            "fetch_allow_internal": True,
            "local_roots": [str(self.seller_files)],
            "upload_max_bytes": 8 * 1024 * 1024,
            "gc_interval_seconds": 3600.0,
            # no tracker or boot node listens here unless a test starts one (test_network)
            "boot_nodes": [f"127.0.0.1:{self.chain.nobody}"],
            "tracker": f"127.0.0.1:{self.chain.nobody}",
            **self.overrides,
        }
        discovery: dict[str, object] = {"heartbeat_interval": 0.5, "peer_expiry": 5.0, "rejoin_interval": 2.0,
                                         "rpc_timeout": 2.0, **self.discovery}  # fmt: skip
        lines = [
            "[core]", f"rc_dir = {_toml(self.home)}",
            "[chain]", 'mode = "local"', f"local_provider_addr = {_toml(self.chain.anvil.url)}",
            f"registrar_json = {_toml(self.chain.registrar)}", "poll_interval = 0.05", "tx_timeout = 30",
            "[logging]", 'level = "INFO"', f"file = {_toml(self.log)}",
            "[proxy]", *(f"{k} = {_toml(v)}" for k, v in proxy.items()),
            "[proxy.discovery]", *(f"{k} = {_toml(v)}" for k, v in discovery.items()),
        ]  # fmt: skip
        self.config_path.write_text("\n".join(lines) + "\n")

    def env(self, failpoints: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")}
        env["CPCHAIN_HOME_CONFIG_PATH"] = str(self.config_path)
        env["CPCHAIN_HOME"] = str(self.home)
        if failpoints:
            env["PDASH_PROXY_FAILPOINTS"] = failpoints
        return env

    def start(self, failpoints: str = "", timeout: float = 30.0) -> ProxyProc:
        return self.spawn(failpoints).wait_ready(timeout)

    def spawn(self, failpoints: str = "") -> ProxyProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with (self.home / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen([str(PROXY_START)], env=self.env(failpoints), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 30.0) -> ProxyProc:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not (
            port_open("127.0.0.1", self.ports["server_port"]) and port_open("127.0.0.1", self.ports["server_file_port"])
        ):
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy {self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy {self.name} did not start:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_pem((self.home / "proxy" / "tls" / "cert.pem").read_bytes())

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.address, "127.0.0.1", self.ports["server_port"], self.ports["server_file_port"],
                        self.fingerprint)  # fmt: skip


def start_all(procs: Iterable[ProxyProc]) -> None:
    """Start processes in parallel (each takes a second or two to import and listen)."""
    started = [proc.spawn() for proc in procs]
    for proc in started:
        proc.wait_ready()


@pytest.fixture(scope="module")
def proxies(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ProxyProc]]:
    """The world's two bonded proxies, started once per module (tests may restart them)."""
    base = tmp_path_factory.mktemp("proxies")
    procs = {name: ProxyProc(name, base / name, chain, chain.world.accounts[name]) for name in ("proxy", "proxy2")}
    try:
        start_all(procs.values())
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@dataclass
class Trade:
    """A placed and seller-confirmed order for an encrypted file, and what each party holds."""

    order_id: int
    terms: OrderTerms
    product: ProductDescription
    plaintext: Path
    ciphertext: Path
    data_key: bytes
    buyer_secret: bytes
    locator: Locator

    @property
    def wrapped_key(self) -> bytes:
        return ecies.wrap_key(self.terms.buyer_key, self.data_key)


def make_file(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, 1 << 20)
            fh.write(os.urandom(n))
            left -= n
    return path


def make_trade(chain: Chain, proxy: str, *, size: int = 200_000, proxy2: str | None = None,
               locator: Locator | None = None, ciphertext: Path | None = None, confirm: bool = True,
               time_allowed: int = 86400, storage_type: str | None = None) -> Trade:  # fmt: skip
    """Encrypt a random file, describe it, place the order and let the seller confirm it."""
    world = chain.world
    work = chain.base / f"trade-{secrets.token_hex(4)}"
    work.mkdir()
    plaintext = make_file(work / "plain.bin", size)
    data_key = aead.generate_data_key()
    cipher = ciphertext or work / "cipher.bin"
    if ciphertext is None:
        aead.encrypt_file(data_key, plaintext, cipher)
    from cpchain.crypto.hashing import sha256_file

    data_hash = sha256_file(cipher)
    if locator is None:
        locator = LocalStorage(chain.base / "seller-files").upload(cipher)
    product = ProductDescription(
        seller=world.address("seller"), title="a file", ptype=ProductType.FILE, description="", price=PRICE,
        category="", tags=(), data_hash=data_hash, storage_type=storage_type or locator.type,
        size=cipher.stat().st_size, nonce=secrets.token_hex(16),
    )  # fmt: skip
    buyer_secret = ecies.generate_private_key()
    order_id = world.buyer.place_order(
        desc_hash=product.desc_hash(), data_hash=bytes.fromhex(data_hash),
        buyer_key=ecies.public_key_bytes(buyer_secret), seller=world.address("seller"), proxy=proxy,
        proxy2=proxy2 or proxy, price=PRICE, fee=FEE, time_allowed=time_allowed,
    )  # fmt: skip
    if confirm:
        world.seller.confirm(order_id)
    terms = world.escrow.terms(order_id)
    return Trade(order_id, terms, product, plaintext, cipher, data_key, ecies.private_key_bytes(buyer_secret), locator)


def bonded_account(chain: Chain) -> LocalAccount:
    """A fresh funded account with the minimum proxy deposit (for extra proxy processes)."""
    from eth_account import Account

    from cpchain.chain.escrow import ProxyAgent

    account: LocalAccount = Account.create()
    chain.world.bank.send_value(account.address, 100 * ETHER)
    ProxyAgent(chain.world.escrow, TxSender(chain.world.w3, account, poll_interval=0.01)).deposit(5 * ETHER)
    return account


def exchange(chain: Chain, endpoint: Endpoint, data: bytes) -> pb.Reply:
    """Send raw bytes on a proxy's control port; the reply must still be signed by that proxy."""
    raw = chain.client("other")._exchange(endpoint, data)
    opened = open_envelope(raw, purpose=PURPOSE_REPLY, domain=chain.domain, nonce_store=None,
                           expected_signer=endpoint.address)  # fmt: skip
    reply = pb.Reply()
    reply.ParseFromString(opened.message)
    return reply


def seller_envelope(chain: Chain, trade: Trade, *, signer: str = "seller", **fields: Any) -> bytes:
    """A SELLER_DATA envelope for `trade` signed by `signer`, with any field replaced."""
    account = chain.world.accounts[signer]
    grant = make_key_grant(chain.world.accounts["seller"], order_id=trade.order_id, wrapped_key=trade.wrapped_key,
                           buyer_key=trade.terms.buyer_key, domain=chain.domain)  # fmt: skip
    data = pb.SellerData(order_id=trade.order_id, product=trade.product.canonical().decode(),
                         locator=trade.locator.to_json(), key_grant=grant)  # fmt: skip
    for name, value in fields.items():
        setattr(data, name, value)
    return seal(account, PURPOSE_SELLER, pb.Request(seller_data=data).SerializeToString(), chain.domain)

"""Live services for the wallet's end-to-end tests, started once per module on 127.0.0.1.

Anvil with the deployed escrow and funded role accounts (tests.proxy.conftest's `chain`),
the tracker and DHT boot node (bin/proxy-first-node), the two bonded proxies as real
`proxy-start` processes registered with them, the market (bin/market-start on SQLite)
pointed at the same contract so its chain indexer can run, and a wallet home (config file,
keystore with the imported role account) per party. Wallets are opened from those homes
exactly as a front end opens them, so a test can close one and open it again (a restart).
`start_services` starts the same set with another market database or proxy fetch policy
(tests.wallet.test_e2e_paths: MariaDB, and storage on IPFS and S3).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cpchain.config import load_config
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.context import WalletContext, open_wallet
from tests.market.conftest import LiveMarket, start_market, stop_market
from tests.market.records.test_sync_command import SYNC, point_at_chain, run
from tests.proxy.conftest import Chain, ProxyProc, _toml, chain, service_port, start_all  # noqa: F401
from tests.proxy.test_network import Network, first_node, live


@dataclass
class Services:
    chain: Chain
    market: LiveMarket
    proxies: dict[str, ProxyProc]
    tracker: tuple[str, int]
    boot: tuple[str, int]
    base: Path
    wallets: list[WalletContext] = field(default_factory=list)

    @property
    def seller_files(self) -> Path:
        """The seller's `local` storage: a directory the proxies may fetch from."""
        return self.chain.base / "seller-files"

    def home(self, name: str, *, market_url: str | None = None,
             sections: Mapping[str, Mapping[str, object]] | None = None) -> Path:  # fmt: skip
        """A wallet home for the world account `name` (created once): config and keystore.

        `sections` replaces keys of the config's sections (or adds sections).
        """
        home = self.base / f"wallet-{name}"
        if not home.exists():
            AccountStore(home / "keystore", fast_kdf=True).import_private_key(
                bytes(self.chain.world.accounts[name].key).hex(), password(name)
            )
        settings: dict[str, dict[str, object]] = {
            "core": {"rc_dir": str(home)},
            "chain": {"mode": "local", "local_provider_addr": self.chain.anvil.url,
                      "registrar_json": str(self.chain.registrar), "poll_interval": 0.05, "tx_timeout": 30},
            "wallet.storage": {"default": "local", "local_dir": str(self.seller_files)},
            "market": {"market_url": market_url or self.market.url},
            "proxy": {"tracker": f"{self.tracker[0]}:{self.tracker[1]}",
                      "boot_nodes": [f"{self.boot[0]}:{self.boot[1]}"]},
            "proxy.discovery": {"tracker_timeout": 2.0, "lookup_timeout": 5.0},
        }  # fmt: skip
        for section, values in (sections or {}).items():
            settings[section] = {**settings.get(section, {}), **values}
        lines = []
        for section, values in settings.items():
            lines += [f"[{section}]", *(f"{k} = {_toml(v)}" for k, v in values.items())]
        (home / "cpchain.toml").write_text("\n".join(lines) + "\n")
        return home

    def open(self, name: str, **home: Any) -> WalletContext:
        """Open the wallet of `name` as a front end does (config file, password)."""
        config = load_config(self.home(name, **home) / "cpchain.toml")
        ctx = open_wallet(config, password(name), proxy_timeout=60.0)
        ctx.proxy_client.retry_delay = 0.1
        self.wallets.append(ctx)
        return ctx

    def index_market(self) -> None:
        """Run the market's chain indexer once (what makes a finished purchase reviewable)."""
        done = run(self.market.home, SYNC, "--once")
        assert done.returncode == 0, done.stderr


def password(name: str) -> str:
    return f"{name}-wallet-password"


@pytest.fixture(scope="module")
def services(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:  # noqa: F811
    with start_services(chain, tmp_path_factory.mktemp("wallet-e2e")) as running:
        yield running


@contextmanager
def start_services(chain: Chain, base: Path, *, market_backend: str = "sqlite",  # noqa: F811
                   fetch: Mapping[str, object] | None = None,
                   kafka_brokers: Sequence[str] = ()) -> Iterator[Services]:  # fmt: skip
    """Tracker and boot node, both proxies (`fetch`: their [proxy] fetch policy keys;
    `kafka_brokers`: the broker their stream servers use, e.g. tansu from tests.streams), and
    the market on `market_backend` ("sqlite" or "mariadb"); stopped on exit."""
    dht_port, tracker_port = service_port(), service_port()
    boot = first_node(chain, base, dht_port, tracker_port)
    discovery: dict[str, object] = {"boot_nodes": [f"127.0.0.1:{dht_port}"], "tracker": f"127.0.0.1:{tracker_port}"}
    if kafka_brokers:
        discovery["kafka_brokers"] = list(kafka_brokers)
    procs = {
        name: ProxyProc(name, base / name, chain, chain.world.accounts[name], {**discovery, **(fetch or {})})
        for name in ("proxy", "proxy2")
    }
    market: LiveMarket | None = None
    services: Services | None = None
    try:
        start_all(procs.values())
        market = start_market(base / "market", market_backend)
        point_at_chain(market.home, chain.anvil.url, chain.world.escrow)
        (chain.base / "seller-files").mkdir(exist_ok=True)
        services = Services(chain, market, procs, ("127.0.0.1", tracker_port), ("127.0.0.1", dht_port), base)
        wait_registered(services)
        yield services
    finally:
        if services is not None:
            for ctx in services.wallets:
                ctx.close()
        if market is not None:
            stop_market(market)
        for proc in procs.values():
            proc.stop()
        boot.terminate()
        boot.wait(timeout=10)


def wait_registered(services: Services, timeout: float = 30.0) -> None:
    """Until the tracker lists every running proxy."""
    net = Network(services.proxies, services.tracker, services.boot)
    running = {p.address for p in services.proxies.values() if p.proc is not None and p.proc.poll() is None}
    deadline = time.monotonic() + timeout
    while not running <= live(services.chain, net):
        assert time.monotonic() < deadline, "the proxies did not register with the tracker"
        time.sleep(0.2)


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(secrets.token_bytes(size))
    return path

"""One unlocked wallet: the account and every client it acts through, built from the config.

Owns wiring only: the unlocked account, the local database, the escrow and the account's
transaction sender, the market client (logging in on demand), the proxy client and a
directory of proxies (tracker standings, endpoints from the tracker or the DHT), the
storage plugins and the wallet's directories. The seller and buyer flows, the order book
and the automation all take a `WalletContext`; this module must not implement any of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cpchain.chain.connection import connect
from cpchain.chain.escrow import Escrow
from cpchain.chain.tx import TxSender
from cpchain.config import Config
from cpchain.market.client import MarketClient, MarketError
from cpchain.proxy.client import ProxyClient, ProxyUnreachable, endpoint_of, pick_proxy, resolve
from cpchain.proxy.discovery import DiscoverySettings, ProxyRecord, lookup_proxy
from cpchain.proxy.protocol import Domain, Endpoint
from cpchain.proxy.streams.wire import StreamEndpoint
from cpchain.proxy.tracker import ProxyStanding, TrackerUnavailable, list_live_proxies, proxies_with_standing
from cpchain.storage.base import Plugin
from cpchain.storage.settings import build_plugin
from cpchain.wallet.accounts import AccountStore, UnlockedAccount
from cpchain.wallet.db import WalletDB
from cpchain.wallet.errors import ProxyUnavailable, translated

__all__ = ["Progress", "ProxyDirectory", "WalletContext", "open_wallet", "phased"]

T = TypeVar("T")
StorageFactory = Callable[[str | None], Plugin]
Progress = Callable[[str, int, int], None]
"""(phase, bytes done, bytes in all); phases: encrypt, upload, download, decrypt."""


def phased(progress: Progress | None, phase: str, total: int) -> Callable[[int], None] | None:
    """A byte-count callback reporting to `progress` under `phase`."""
    if progress is None:
        return None
    return lambda done: progress(phase, done, total)


class ProxyDirectory:
    """Finding proxies: the best live ones by on-chain standing, and any one's endpoint."""

    def __init__(self, escrow: Escrow, domain: Domain, *, tracker: tuple[str, int] | None,
                 boot_nodes: Sequence[tuple[str, int]] = (), timeout: float = 5.0,
                 lookup_timeout: float = 10.0) -> None:  # fmt: skip
        self.escrow = escrow
        self.domain = domain
        self.tracker = tracker
        self.boot_nodes = tuple(boot_nodes)
        self.timeout = timeout
        self.lookup_timeout = lookup_timeout
        self._endpoints: dict[str, Endpoint] = {}
        self._stream_endpoints: dict[str, StreamEndpoint] = {}

    def pick(self, exclude: Sequence[str] = ()) -> ProxyStanding:
        """The live proxy with the best standing (eligible, credit, ratings, deposit)."""
        if self.tracker is None:
            raise ProxyUnavailable("no tracker configured: name the proxy explicitly")
        with translated("pick a proxy"):
            standing = pick_proxy(self.tracker, self.escrow, exclude=exclude, timeout=self.timeout)
        self._endpoints[standing.address.lower()] = endpoint_of(standing.record)
        return standing

    def standings(self) -> list[ProxyStanding]:
        """Every live proxy with its deposit and credit, best first (what a buyer chooses from)."""
        if self.tracker is None:
            raise ProxyUnavailable("no tracker configured: name the proxy explicitly")
        try:
            records = asyncio.run(list_live_proxies(self.tracker, chain_id=self.domain.chain_id,
                                                    contract=self.domain.contract, timeout=self.timeout))  # fmt: skip
        except TrackerUnavailable as exc:
            raise ProxyUnavailable(f"tracker {self.tracker[0]}:{self.tracker[1]}: {exc}") from None
        with translated("read the proxies' standing"):
            found = proxies_with_standing(records, self.escrow)
        for standing in found:
            self._endpoints[standing.address.lower()] = endpoint_of(standing.record)
        return found

    def remember(self, endpoint: Endpoint) -> None:
        """Use this endpoint for its proxy (e.g. from the CLI or a test) without a lookup."""
        self._endpoints[endpoint.address.lower()] = endpoint

    def forget(self, address: str) -> None:
        self._endpoints.pop(address.lower(), None)
        self._stream_endpoints.pop(address.lower(), None)

    def remember_stream(self, endpoint: StreamEndpoint) -> None:
        """Use this stream endpoint for its proxy without a lookup."""
        self._stream_endpoints[endpoint.proxy.lower()] = endpoint

    def stream_endpoint(self, address: str) -> StreamEndpoint:
        """How to reach the stream ports of `address`: remembered, else its signed record from the
        tracker's live list, else from the DHT (the record names the stream ports and the
        certificate they share with the control port)."""
        known = self._stream_endpoints.get(address.lower())
        if known is not None:
            return known
        record = self._record_from_tracker(address) or self._record_from_dht(address)
        if record is None:
            raise ProxyUnavailable(f"proxy {address} is neither listed by the tracker nor found in the DHT")
        found = StreamEndpoint(record.address, record.host, int(record.ports["stream_ws"]),
                               int(record.ports["stream_http"]), record.tls_fingerprint)  # fmt: skip
        self._stream_endpoints[address.lower()] = found
        return found

    def endpoint(self, address: str) -> Endpoint:
        """How to reach `address`: remembered, else the tracker's live list, else the DHT."""
        known = self._endpoints.get(address.lower())
        if known is not None:
            return known
        found = self._from_tracker(address) or self._from_dht(address)
        if found is None:
            raise ProxyUnavailable(f"proxy {address} is neither listed by the tracker nor found in the DHT")
        self._endpoints[address.lower()] = found
        return found

    def _from_tracker(self, address: str) -> Endpoint | None:
        record = self._record_from_tracker(address)
        return None if record is None else endpoint_of(record)

    def _record_from_tracker(self, address: str) -> ProxyRecord | None:
        if self.tracker is None:
            return None
        try:
            records = asyncio.run(list_live_proxies(self.tracker, chain_id=self.domain.chain_id,
                                                    contract=self.domain.contract, timeout=self.timeout))  # fmt: skip
        except TrackerUnavailable:
            return None
        for record in records:
            if record.address.lower() == address.lower():
                return record
        return None

    def _record_from_dht(self, address: str) -> ProxyRecord | None:
        if not self.boot_nodes:
            return None
        try:
            return asyncio.run(lookup_proxy(address, list(self.boot_nodes), chain_id=self.domain.chain_id,
                                            contract=self.domain.contract, host="127.0.0.1",
                                            timeout=self.lookup_timeout))  # fmt: skip
        except OSError:
            return None

    def _from_dht(self, address: str) -> Endpoint | None:
        if not self.boot_nodes:
            return None
        try:
            return resolve(address, self.boot_nodes, self.domain, timeout=self.lookup_timeout)
        except (ProxyUnreachable, OSError):
            return None


@dataclass
class WalletContext:
    """Everything one unlocked account acts through."""

    me: UnlockedAccount
    db: WalletDB
    escrow: Escrow
    sender: TxSender
    market: MarketClient
    proxy_client: ProxyClient
    proxies: ProxyDirectory
    storage: StorageFactory
    download_dir: Path
    work_dir: Path
    accounts: AccountStore | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return self.me.address

    @property
    def contract(self) -> str:
        return str(self.escrow.address)

    @property
    def domain(self) -> Domain:
        return self.proxies.domain

    def market_call(self, call: Callable[[], T], what: str = "market") -> T:
        """An authenticated market request, logging in first or again when the token is refused."""
        with translated(what):
            if not self.market.token or self.market.address != self.me.address:
                self.market.login(self.me.account)
            try:
                return call()
            except MarketError as exc:
                if exc.status != 401:
                    raise
                self.market.login(self.me.account)
                return call()

    def close(self) -> None:
        self.db.close()


def open_wallet(config: Config, password: str, address: str | None = None, *,
                accounts: AccountStore | None = None, proxy_timeout: float | None = None) -> WalletContext:  # fmt: skip
    """Unlock `address` (default: the current account) and connect everything from `config`.

    Fails with one typed WalletError: WrongPassword, UnknownAccount, ChainUnavailable...
    Nothing is contacted but the chain node; the market and proxies are reached on use.
    """
    store = accounts or AccountStore(config.path("account.keystore_dir"))
    me = store.unlock(address, password) if address else store.unlock_current(password)
    with translated("connect to the chain"):
        w3 = connect(config)
        escrow = Escrow.from_config(w3, config)
    chain = config.section("chain")
    sender = TxSender(w3, me.account, timeout=float(chain["tx_timeout"]), poll_interval=float(chain["poll_interval"]),
                      confirmations=int(chain["confirmations"]))  # fmt: skip
    domain = Domain(escrow.deployment.chain_id, escrow.address)
    discovery = DiscoverySettings.from_config(config)
    timeout = proxy_timeout if proxy_timeout is not None else float(config.get("proxy.request_timeout_seconds"))
    dbpath = config.path("wallet.dbpath")

    def storage(kind: str | None) -> Plugin:
        with translated("storage"):
            return build_plugin(config, kind, password=password)

    return WalletContext(
        me=me,
        db=WalletDB(dbpath),
        escrow=escrow,
        sender=sender,
        market=MarketClient(str(config.get("market.market_url"))),
        proxy_client=ProxyClient(me.account, domain, timeout=timeout),
        proxies=ProxyDirectory(
            escrow,
            domain,
            tracker=discovery.tracker,
            boot_nodes=discovery.boot_nodes,
            timeout=discovery.tracker_timeout,
            lookup_timeout=discovery.lookup_timeout,
        ),
        storage=storage,
        download_dir=config.path("wallet.download_dir"),
        work_dir=dbpath.parent / "work",
        accounts=store,
    )

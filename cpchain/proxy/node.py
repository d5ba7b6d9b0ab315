"""The proxy process (bin/proxy-start): one Twisted reactor on asyncio, every port on TLS.

Owns assembling the parts (chain, database, TLS certificate, control channel, file server,
discovery) from the configuration, binding only the configured host, and a clean stop on
SIGTERM. Starts unattended: the account comes from a keystore and a password file that
must not be readable by others. Must not contain trade logic (cpchain.proxy.service).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.ssl import CertificateOptions, PrivateCertificate, TLSVersion
from twisted.python.failure import Failure

from cpchain.chain.connection import connect
from cpchain.chain.escrow import Escrow
from cpchain.chain.tx import TxSender
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, load_config
from cpchain.crypto.signing import SqliteNonceStore
from cpchain.proxy.control import ControlFactory
from cpchain.proxy.discovery import DhtNode, DiscoverySettings, make_record
from cpchain.proxy.fetch import Fetcher
from cpchain.proxy.fileserver import make_site
from cpchain.proxy.limits import PeerLimit
from cpchain.proxy.onchain import ChainGateway
from cpchain.proxy.service import TradeService
from cpchain.proxy.settings import ProxySettings
from cpchain.proxy.store import TradeStore
from cpchain.proxy.streams.server import StreamServer
from cpchain.proxy.tls import ensure_certificate
from cpchain.proxy.tracker import TrackerLink

log = logging.getLogger("cpchain.proxy")


def tls_options(settings: ProxySettings) -> CertificateOptions:
    pem = settings.tls_cert.read_bytes() + settings.tls_key.read_bytes()
    cert = PrivateCertificate.loadPEM(pem)
    return CertificateOptions(
        privateKey=cert.privateKey.original,
        certificate=cert.original,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


class ProxyNode:
    """Everything one proxy runs, started and stopped together."""

    def __init__(self, reactor: Any, config: Config, settings: ProxySettings, account: LocalAccount) -> None:
        self.reactor = reactor
        self.config = config
        self.settings = settings
        self.account = account
        self.ports: list[Any] = []  # IListeningPort providers
        self.dht: DhtNode | None = None
        self.link: TrackerLink | None = None
        self.streams: StreamServer | None = None
        self.failed = False
        self._closers: list[Callable[[], object]] = []

    def start(self) -> None:
        settings = self.settings
        common_name = f"pdash-proxy {self.account.address}"
        self.fingerprint = ensure_certificate(settings.tls_cert, settings.tls_key, common_name)
        w3 = connect(self.config)
        escrow = Escrow.from_config(w3, self.config)
        sender = TxSender(
            w3,
            self.account,
            timeout=float(self.config.get("chain.tx_timeout")),
            poll_interval=float(self.config.get("chain.poll_interval")),
            confirmations=int(self.config.get("chain.confirmations")),
        )
        store = TradeStore(settings.db_path)
        nonces = SqliteNonceStore(settings.nonce_db)
        self._closers += [store.close, nonces.close]
        self.gateway = ChainGateway(escrow, sender, store)
        self.service = TradeService(
            reactor=self.reactor,
            settings=settings,
            account=self.account,
            gateway=self.gateway,
            store=store,
            fetcher=Fetcher(settings, self.config, self.fingerprint, store),
            nonces=nonces,
        )
        tls = tls_options(settings)
        control = ControlFactory(self.service, settings.max_frame_bytes, settings.request_timeout)
        self._listen(settings.ports.control, PeerLimit(control, settings.max_connections_per_peer), tls)
        self._listen(settings.ports.file, PeerLimit(make_site(self.service), settings.max_connections_per_peer), tls)
        self._start_streams(tls)
        self.service.start()
        self.reactor.callWhenRunning(self._start_discovery)
        log.info(
            "proxy %s ready on %s: control %d, files %d (TLS sha256 %s)",
            self.account.address, settings.host, settings.ports.control, settings.ports.file, self.fingerprint,
        )  # fmt: skip

    def _listen(self, port: int, factory: Any, tls: CertificateOptions) -> None:
        try:
            self.ports.append(self.reactor.listenSSL(port, factory, tls, interface=self.settings.host))
        except CannotListenError as exc:
            raise OSError(f"cannot listen on {self.settings.host}:{port}: {exc.socketError}") from None

    def _start_streams(self, tls: CertificateOptions) -> None:
        """The stream servers (WebSocket and REST, same TLS identity); Kafka is reached lazily,
        so a proxy without a broker still serves files and answers stream requests with 503."""
        self.streams = StreamServer(self.reactor, self.config, gateway=self.gateway, fingerprint=self.fingerprint,
                                    tls=tls)  # fmt: skip
        self.streams.start()

    def _start_discovery(self) -> None:
        """Publish this proxy's signed record in the DHT and register with the tracker.

        Runs once the reactor (and so the asyncio loop kademlia uses) is running; failing to
        bind a discovery port stops the proxy.
        """
        discovery = DiscoverySettings.from_config(self.config)
        domain, settings = self.gateway.domain, self.settings

        def record() -> bytes:
            return make_record(
                self.account, settings.public_host, settings.ports.as_record(), self.fingerprint,
                chain_id=domain.chain_id, contract=domain.contract, ttl=discovery.record_ttl,
            )  # fmt: skip

        self.dht = DhtNode(
            chain_id=domain.chain_id, contract=domain.contract, rpc_timeout=discovery.rpc_timeout,
            lookup_timeout=discovery.lookup_timeout, rejoin_interval=discovery.rejoin_interval,
        )  # fmt: skip
        self.link = TrackerLink(
            self.account, record, discovery.tracker, chain_id=domain.chain_id, contract=domain.contract,
            host=settings.host, port=settings.ports.tracker_link, heartbeat_interval=discovery.heartbeat_interval,
            republish_interval=discovery.republish_interval, timeout=discovery.tracker_timeout,
        )  # fmt: skip

        async def start() -> None:
            assert self.dht is not None and self.link is not None
            try:
                await self.dht.start(settings.host, settings.ports.dht, discovery.boot_nodes)
                await self.link.start()
            except OSError as exc:
                raise OSError(f"discovery: cannot listen on {settings.host} ({exc.strerror or exc})") from None
            self.dht.keep_published(self.account.address, record, discovery.republish_interval)
            log.info("discovery: DHT node on %s:%d, tracker %s:%d", settings.host, settings.ports.dht,
                     *discovery.tracker)  # fmt: skip

        def failed(failure: Failure) -> None:
            log.error("%s", failure.getErrorMessage())
            self.failed = True
            self.reactor.stop()

        Deferred.fromFuture(asyncio.ensure_future(start())).addErrback(failed)

    def stop(self) -> Deferred[Any]:
        """Stop accepting, finish bookkeeping, close the databases (a shutdown trigger)."""
        log.info("proxy stopping")
        if self.link is not None:
            self.link.stop()
        if self.dht is not None:
            self.dht.stop()
        self.service.stop()
        waits = [Deferred.fromCoroutine(_as_coroutine(p.stopListening())) for p in self.ports]
        if self.streams is not None:
            waits.append(self.streams.stop())
        stopping = DeferredList(waits)

        def close(_: object) -> None:
            for closer in self._closers:
                closer()
            log.info("proxy stopped")

        return stopping.addBoth(close)


async def _as_coroutine(result: Any) -> None:
    if isinstance(result, Deferred):
        await result


def install_reactor() -> Any:
    """The asyncio reactor (kademlia shares its loop); must run before anything imports a reactor."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    _stop_on_early_signals(reactor)
    return reactor


def _stop_on_early_signals(reactor: Any) -> None:
    """Stop cleanly on SIGTERM/SIGINT that arrive before ``reactor.run()``.

    The ports listen as soon as they are opened, well before the reactor installs its own
    signal handlers; a supervisor that sees the port and sends SIGTERM at once must still
    get a clean shutdown, not a process killed mid-start-up. The reactor replaces these
    handlers with its own when it starts running.
    """

    def stop_when_running(_signum: int, _frame: object) -> None:
        reactor.callFromThread(reactor.callWhenRunning, reactor.stop)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_when_running)


def bridge_twisted_logging() -> None:
    from twisted.logger import ILogObserver, STDLibLogObserver, globalLogBeginner

    observer = cast(ILogObserver, STDLibLogObserver(name="twisted"))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _main() -> int:
    parser = argparse.ArgumentParser(description="Run a PDash relay proxy.")
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    args = parser.parse_args()
    config = load_config(args.config) if args.config else load_config()
    setup_logging(config)
    if logging.getLogger().level > logging.DEBUG:
        for name in ("kademlia", "rpcudp"):  # they log every lookup and store at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
    settings = ProxySettings.from_config(config)
    DiscoverySettings.from_config(config)  # a bad [proxy.discovery] fails before anything starts
    from cpchain.chain.cli import unlock_account

    account = unlock_account(settings.keystore, settings.password_file)
    reactor = install_reactor()
    bridge_twisted_logging()
    reactor.suggestThreadPoolSize(settings.threads)
    node = ProxyNode(reactor, config, settings, account)
    node.start()
    reactor.addSystemEventTrigger("before", "shutdown", node.stop)
    reactor.run()
    return 1 if node.failed else 0


def main() -> None:
    run_cli("proxy-start", _main)

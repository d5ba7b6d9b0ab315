"""The stream servers of a proxy: WebSocket (8002) and REST (8003), both TLS, on one reactor.

Owns assembling the stream relay (registry, Kafka bridge, service, both listening ports)
from the configuration and stopping it cleanly. `StreamServer` is what the proxy process
(cpchain.proxy.node) runs next to its control channel and file server, sharing its
reactor, account, chain gateway and TLS certificate. `main` runs the stream servers alone
(`python -m cpchain.proxy.streams.server`), with the proxy's account, database and
certificate, e.g. on a host that only relays streams. Binds only the configured host.
Must not contain stream logic (cpchain.proxy.streams.service).
"""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.ssl import CertificateOptions

from cpchain.config import Config
from cpchain.proxy.streams.kafka import KafkaBridge
from cpchain.proxy.streams.registry import Registry
from cpchain.proxy.streams.rest import make_rest_site
from cpchain.proxy.streams.service import CHUNK_BYTES, OrderSource, StreamService
from cpchain.proxy.streams.settings import StreamSettings
from cpchain.proxy.streams.wire import StreamEndpoint
from cpchain.proxy.streams.ws import StreamWsFactory

log = logging.getLogger("cpchain.proxy.streams")
FETCH_BYTES = CHUNK_BYTES + (64 << 10)  # one chunk per fetch: a reader holds little


class StreamServer:
    """The stream relay of one proxy: start() listens, stop() (a shutdown trigger) closes everything."""

    def __init__(self, reactor: Any, config: Config, *, gateway: OrderSource, fingerprint: str,
                 tls: CertificateOptions) -> None:  # fmt: skip
        self.reactor = reactor
        self.settings = StreamSettings.from_config(config)
        self.gateway = gateway
        self.fingerprint = fingerprint
        self.tls = tls
        self.ports: list[Any] = []

    def start(self) -> None:
        s = self.settings
        self.registry = Registry(s.db_path)
        self.kafka = KafkaBridge(self.reactor, s.brokers, threads=s.kafka_threads, timeout=s.kafka_timeout,
                                 fetch_wait_ms=s.fetch_wait_ms, max_fetch_bytes=FETCH_BYTES)  # fmt: skip
        self.kafka.start()
        endpoint = StreamEndpoint(str(self.gateway.address), s.public_host, s.ws_port, s.http_port, self.fingerprint)
        self.service = StreamService(reactor=self.reactor, settings=s, gateway=self.gateway, registry=self.registry,
                                     kafka=self.kafka, endpoint=endpoint)  # fmt: skip
        self._listen(s.ws_port, StreamWsFactory(self.service, self.reactor))
        self._listen(s.http_port, make_rest_site(self.service))
        self.service.start()
        # Everything loaded so far (web3, Twisted, autobahn, kafka-python...) lives as long as
        # the process: out of the collector's reach, a full collection no longer pauses the
        # reactor for tens of milliseconds (live latency's worst case).
        gc.freeze()
        log.info("streams ready on %s: WebSocket %d, REST %d, Kafka %s", s.host, s.ws_port, s.http_port,
                 ",".join(s.brokers))  # fmt: skip

    def _listen(self, port: int, factory: Any) -> None:
        try:
            self.ports.append(self.reactor.listenSSL(port, factory, self.tls, interface=self.settings.host))
        except CannotListenError as exc:
            raise OSError(f"cannot listen on {self.settings.host}:{port}: {exc.socketError}") from None

    def stop(self) -> Deferred[Any]:
        log.info("streams stopping")
        self.service.stop()
        stopping = DeferredList([maybeDeferred(p.stopListening) for p in self.ports])

        def close(_: object) -> None:
            self.kafka.stop()  # flushes the producer: acknowledged records are already in Kafka
            self.registry.close()
            log.info("streams stopped")

        return stopping.addBoth(close)


def _main() -> int:
    parser = argparse.ArgumentParser(description="Run a PDash proxy's stream servers (WebSocket and REST) alone.")
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    args = parser.parse_args()
    from cpchain.chain.cli import unlock_account
    from cpchain.chain.connection import connect
    from cpchain.chain.escrow import Escrow
    from cpchain.chain.tx import TxSender
    from cpchain.cli_support import setup_logging
    from cpchain.config import load_config
    from cpchain.proxy import node
    from cpchain.proxy.onchain import ChainGateway
    from cpchain.proxy.settings import ProxySettings
    from cpchain.proxy.store import TradeStore
    from cpchain.proxy.tls import ensure_certificate

    config = load_config(args.config) if args.config else load_config()
    setup_logging(config)
    settings = ProxySettings.from_config(config)
    account = unlock_account(settings.keystore, settings.password_file)
    reactor = node.install_reactor()
    node.bridge_twisted_logging()
    reactor.suggestThreadPoolSize(settings.threads)
    fingerprint = ensure_certificate(settings.tls_cert, settings.tls_key, f"pdash-proxy {account.address}")
    w3 = connect(config)
    sender = TxSender(w3, account, timeout=float(config.get("chain.tx_timeout")),
                      poll_interval=float(config.get("chain.poll_interval")),
                      confirmations=int(config.get("chain.confirmations")))  # fmt: skip
    store = TradeStore(settings.db_path)  # the claim records the chain gateway keeps
    gateway = ChainGateway(Escrow.from_config(w3, config), sender, store)
    server = StreamServer(reactor, config, gateway=gateway, fingerprint=fingerprint, tls=node.tls_options(settings))
    server.start()
    reactor.addSystemEventTrigger("before", "shutdown", lambda: server.stop().addBoth(lambda _: store.close()))
    reactor.run()
    return 0


def main() -> None:
    from cpchain.cli_support import run_cli

    run_cli("stream-server", _main)


if __name__ == "__main__":
    main()

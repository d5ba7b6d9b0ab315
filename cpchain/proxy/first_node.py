"""bin/proxy-first-node: the tracker and a DHT boot node, together in one asyncio process.

Owns wiring config to :class:`~cpchain.proxy.tracker.TrackerServer` and a serving
:class:`~cpchain.proxy.discovery.DhtNode`, and their clean stop on SIGTERM/SIGINT. It is not
a proxy: it holds no account and never touches the chain (it reads the registrar file only
for the chain id and contract address that every signed record and message is bound to).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from cpchain.chain.escrow import Deployment, registrar_path
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, load_config
from cpchain.crypto.signing import SqliteNonceStore
from cpchain.proxy.discovery import DhtNode, DiscoverySettings
from cpchain.proxy.tracker import TrackerServer

log = logging.getLogger(__name__)


async def serve(
    config: Config,
    stop: asyncio.Event | None = None,
    ready: Callable[[TrackerServer, DhtNode], None] | None = None,
) -> None:
    """Run the tracker and the boot node until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    settings = DiscoverySettings.from_config(config)
    deployment = Deployment.load(registrar_path(config))
    nonce_path = config.path("proxy.discovery.tracker_nonce_db")
    nonce_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = settings.first_node_host
    with SqliteNonceStore(nonce_path) as nonces:
        dht = DhtNode(
            chain_id=deployment.chain_id,
            contract=deployment.address,
            rpc_timeout=settings.rpc_timeout,
            lookup_timeout=settings.lookup_timeout,
            rejoin_interval=settings.rejoin_interval,
        )
        tracker = TrackerServer(
            chain_id=deployment.chain_id,
            contract=deployment.address,
            peer_expiry=settings.peer_expiry,
            nonce_store=nonces,
        )
        try:
            # Other boot nodes in proxy.boot_nodes are joined; this node's own address is skipped.
            await _bind("DHT boot node", dht.start(host, settings.first_node_dht_port, settings.boot_nodes),
                        host, settings.first_node_dht_port)  # fmt: skip
            await _bind("tracker", tracker.start(host, settings.first_node_tracker_port),
                        host, settings.first_node_tracker_port)  # fmt: skip
            print(
                f"proxy-first-node: tracker on {tracker.host}:{tracker.port}/udp, DHT boot node on "
                f"{dht.host}:{dht.port}/udp (chain {deployment.chain_id}, contract {deployment.address})",
                flush=True,
            )
            if ready is not None:
                ready(tracker, dht)
            await stop.wait()
            log.info("stopping")
        finally:
            tracker.stop()
            dht.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


async def _bind(what: str, starting: Awaitable[None], host: str, port: int) -> None:
    """Await ``starting``; a bind failure becomes one line naming the socket."""
    try:
        await starting
    except OSError as exc:
        raise OSError(f"{what}: cannot listen on {host}:{port}/udp ({exc.strerror or exc})") from None


def first_node_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the proxy tracker and a Kademlia DHT boot node.")
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else load_config()
    setup_logging(config)
    if logging.getLogger().level > logging.DEBUG:
        # kademlia logs every lookup and store at INFO; keep its warnings only.
        for name in ("kademlia", "rpcudp"):
            logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(serve(config))
    return 0


def main() -> None:
    run_cli("proxy-first-node", first_node_main)

"""`sync_chain` (bin/market-sync-chain): follow the escrow contract into the market database.

Owns the service loop around cpchain.market.records.indexer: connecting by the market's
config, reading the contract from the registrar, polling `chain.confirmations` blocks behind
the head every `market.sync_interval` seconds (or once with --once), and stopping cleanly on
SIGTERM or SIGINT between two events. Must not interpret events itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from web3.exceptions import Web3Exception

from cpchain.chain.connection import connect
from cpchain.chain.errors import ChainError
from cpchain.chain.escrow import Escrow
from cpchain.chain.events import ChainEvent, EventFollower
from cpchain.market.records.indexer import Indexer, IndexerError

log = logging.getLogger("cpchain.market.sync_chain")


class Stopped(Exception):
    """Raised between two events once a stop was requested."""


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM/SIGINT while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: Any) -> None:
        log.info("%s received: stopping after the current event", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def require_migrated() -> None:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise IndexerError(f"market database unavailable: {exc}") from None
    if pending:
        raise IndexerError("the market database is not migrated: run bin/market-start or market-manage migrate")


def run(
    follower: EventFollower,
    handle: Callable[[ChainEvent], object],
    stop: threading.Event,
    *,
    once: bool,
    interval: float,
) -> int:
    """Poll until stopped (or once); returns how many events were delivered in all."""

    def handler(event: ChainEvent) -> None:
        if stop.is_set():
            raise Stopped
        handle(event)

    total = 0
    while not stop.is_set():
        try:
            delivered = follower.poll(handler)
        except Stopped:
            break
        except (ChainError, Web3Exception, OSError, DatabaseError) as exc:
            if once:
                raise IndexerError(f"sync failed: {exc}") from None
            log.warning("sync failed, retrying in %.1f s: %s", interval, exc)
        else:
            total += delivered
            if delivered:
                log.info("handled %d events; checkpoint at block %s", delivered, follower.checkpoint.load())
        if once:
            break
        stop.wait(interval)
    return total


class Command(BaseCommand):
    help = "Follow the escrow contract's events into the market database (orders, sales, proxy standing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="handle every confirmed event, then exit")
        parser.add_argument("--interval", type=float, help="seconds between polls (default: market.sync_interval)")

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.CONFIG
        interval = options["interval"] if options["interval"] is not None else float(config.get("market.sync_interval"))
        if interval <= 0:
            raise IndexerError("the poll interval must be positive")
        confirmations = int(config.get("chain.confirmations"))
        require_migrated()
        try:
            escrow = Escrow.from_config(connect(config), config)
        except ChainError as exc:
            raise IndexerError(str(exc)) from None
        indexer = Indexer(escrow)
        follower = indexer.follower(confirmations)
        log.info(
            "following %s on chain %s from block %s, %d confirmations",
            escrow.address,
            escrow.deployment.chain_id,
            follower.checkpoint.load(),
            confirmations,
        )
        stop = threading.Event()
        with stop_on_signals(stop):
            total = run(follower, indexer.handle, stop, once=bool(options["once"]), interval=interval)
        self.stdout.write(f"handled {total} events; checkpoint at block {follower.checkpoint.load()}")

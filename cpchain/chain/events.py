"""Following the escrow's events: confirmation depth, a stored checkpoint, resume on restart.

Owns reading and decoding logs in block order; must not interpret them (the market indexer,
the proxy and the wallet do). Delivery is at-least-once: the checkpoint advances only after
a batch has been handled, so a crash mid-batch replays that batch, and handlers make their
effects idempotent with `ChainEvent.key` (transaction hash and log index).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_utils.crypto import keccak
from web3.types import LogReceipt

from cpchain.chain.escrow import Escrow
from cpchain.fsutil import atomic_write_text


@dataclass(frozen=True)
class ChainEvent:
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int

    @property
    def key(self) -> tuple[str, int]:
        """Unique per log: what a handler records to stay idempotent under replays."""
        return (self.tx_hash, self.log_index)


class Checkpoint(Protocol):
    def load(self) -> int | None:
        """The last block fully handled, or None to start from the deployment block."""

    def save(self, block: int) -> None: ...


class FileCheckpoint:
    """A checkpoint in a small JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text(encoding="utf-8"))["block"])
        except FileNotFoundError:
            return None

    def save(self, block: int) -> None:
        atomic_write_text(self.path, json.dumps({"block": block}))


class MemoryCheckpoint:
    def __init__(self, block: int | None = None) -> None:
        self.block = block

    def load(self) -> int | None:
        return self.block

    def save(self, block: int) -> None:
        self.block = block


def _event_signature(abi: Any) -> bytes:
    types = ",".join(_abi_type(i) for i in abi["inputs"])
    return keccak(text=f"{abi['name']}({types})")


def _abi_type(item: Any) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + kind[5:]
    return kind


class EventFollower:
    """Delivers the escrow's events in order, `confirmations` blocks behind the head."""

    def __init__(
        self,
        escrow: Escrow,
        checkpoint: Checkpoint,
        *,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        names: Iterable[str] | None = None,
    ) -> None:
        self.escrow = escrow
        self.checkpoint = checkpoint
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        wanted = set(names) if names is not None else None
        self._events = {
            _event_signature(item): escrow.contract.events[item["name"]]()
            for item in escrow.contract.abi
            if item["type"] == "event" and (wanted is None or item["name"] in wanted)
        }

    def safe_head(self) -> int:
        return int(self.escrow.w3.eth.block_number) - self.confirmations

    def poll(self, handler: Callable[[ChainEvent], None]) -> int:
        """Handle every new confirmed event; returns how many were delivered."""
        start = self.checkpoint.load()
        first = self.escrow.deployment.block if start is None else start + 1
        head = self.safe_head()
        delivered = 0
        while first <= head:
            last = min(head, first + self.batch_blocks - 1)
            for event in self.fetch(first, last):
                handler(event)
                delivered += 1
            self.checkpoint.save(last)
            first = last + 1
        return delivered

    def fetch(self, first: int, last: int) -> list[ChainEvent]:
        logs = self.escrow.w3.eth.get_logs({"address": self.escrow.address, "fromBlock": first, "toBlock": last})
        events = [e for e in (self._decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    def _decode(self, log: LogReceipt) -> ChainEvent | None:
        if not log["topics"]:
            return None
        event = self._events.get(bytes(log["topics"][0]))
        if event is None:
            return None
        decoded = event.process_log(log)
        return ChainEvent(
            name=decoded["event"],
            args=dict(decoded["args"]),
            block_number=int(log["blockNumber"]),
            block_hash="0x" + bytes(log["blockHash"]).hex(),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
        )

    def run(self, handler: Callable[[ChainEvent], None], stop: threading.Event, interval: float = 1.0) -> None:
        """Poll until `stop` is set (for a service thread)."""
        while not stop.is_set():
            self.poll(handler)
            stop.wait(interval)

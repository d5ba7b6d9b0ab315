"""The proxy's durable state in SQLite: trades, chain claims, served byte ranges, uploads.

Owns the schema and every write. One row per order (the order id is the primary key, so
two requests for one order can never create two trades), one row per (order, claim kind),
recorded as intent before a transaction is signed, with its hash before it is sent, and
confirmed after its receipt; a restarted proxy resumes from these rows. Must not touch the
chain, the network or files other than its database. Safe to use from several threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cpchain.proxy.rules import Range, merge_ranges
from cpchain.proxy.sqlite import SqliteDb


class Stage(StrEnum):
    FETCHING = "fetching"  # request accepted, data not yet verified on disk
    FETCHED = "fetched"  # ciphertext verified on disk, proxyFetched not yet confirmed
    READY = "ready"  # proxyFetched confirmed: the buyer may download
    DELIVERED = "delivered"  # proxyDelivered confirmed
    FAILED = "failed"  # refused or failed; a new SELLER_DATA may try again


class ClaimKind(StrEnum):
    FETCHED = "fetched"
    DELIVERED = "delivered"


class ClaimState(StrEnum):
    INTENT = "intent"  # about to sign and send
    SENT = "sent"  # signed; tx_hash known; may or may not have reached the node
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True)
class Trade:
    order_id: int
    seller: str
    buyer: str
    product: str
    locator: str
    key_grant: str
    data_hash: str
    size: int | None
    stage: Stage
    error: str
    created_at: int
    fetched_at: int | None
    removed_at: int | None
    seller_reply: bytes | None


@dataclass(frozen=True)
class Claim:
    order_id: int
    kind: ClaimKind
    state: ClaimState
    tx_hash: str
    error: str
    attempts: int


@dataclass(frozen=True)
class Upload:
    id: str
    uploader: str
    size: int
    sha256: str
    created_at: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    order_id INTEGER PRIMARY KEY,
    seller TEXT NOT NULL,
    buyer TEXT NOT NULL,
    product TEXT NOT NULL,
    locator TEXT NOT NULL,
    key_grant TEXT NOT NULL,
    data_hash TEXT NOT NULL,
    size INTEGER,
    stage TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    fetched_at INTEGER,
    removed_at INTEGER,
    seller_reply BLOB,
    served TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS trades_stage ON trades (stage);
CREATE TABLE IF NOT EXISTS claims (
    order_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    tx_hash TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (order_id, kind)
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    uploader TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_created ON uploads (created_at);
"""

_TRADE_COLUMNS = (
    "order_id, seller, buyer, product, locator, key_grant, data_hash, size, stage, error,"
    " created_at, fetched_at, removed_at, seller_reply"
)


class TradeStore(SqliteDb):
    """The proxy database. Every method is one transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    # ------------------------------------------------------------ trades

    def begin_trade(
        self,
        *,
        order_id: int,
        seller: str,
        buyer: str,
        product: str,
        locator: str,
        key_grant: str,
        data_hash: str,
        now: int,
    ) -> bool:
        """Record an accepted SELLER_DATA; False if a live trade for the order already exists.

        A failed trade is replaced (the seller may retry with a corrected locator).
        """
        with self._tx() as db:
            row = db.execute("SELECT stage FROM trades WHERE order_id = ?", (order_id,)).fetchone()
            if row is not None and row[0] != Stage.FAILED:
                return False
            db.execute("DELETE FROM trades WHERE order_id = ?", (order_id,))
            db.execute("DELETE FROM claims WHERE order_id = ?", (order_id,))
            db.execute(
                "INSERT INTO trades (order_id, seller, buyer, product, locator, key_grant, data_hash, stage,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, seller, buyer, product, locator, key_grant, data_hash, Stage.FETCHING, now),
            )
            return True

    def get(self, order_id: int) -> Trade | None:
        rows = self._query(f"SELECT {_TRADE_COLUMNS} FROM trades WHERE order_id = ?", (order_id,))
        return _trade(rows[0]) if rows else None

    def in_stages(self, *stages: Stage) -> list[Trade]:
        marks = ",".join("?" * len(stages))
        rows = self._query(f"SELECT {_TRADE_COLUMNS} FROM trades WHERE stage IN ({marks}) ORDER BY order_id", stages)
        return [_trade(r) for r in rows]

    def mark_fetched(self, order_id: int, size: int, now: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE trades SET stage = ?, size = ?, fetched_at = ?, error = '' WHERE order_id = ?",
                (Stage.FETCHED, size, now, order_id),
            )

    def set_stage(self, order_id: int, stage: Stage, error: str = "") -> None:
        with self._tx() as db:
            db.execute("UPDATE trades SET stage = ?, error = ? WHERE order_id = ?", (stage, error, order_id))

    def mark_ready(self, order_id: int, reply: bytes) -> None:
        """proxyFetched is confirmed: keep the first successful answer to the seller, returned
        again on every retry, in the same transaction as the stage change."""
        with self._tx() as db:
            db.execute(
                "UPDATE trades SET stage = ?, seller_reply = COALESCE(seller_reply, ?), error = '' WHERE order_id = ?",
                (Stage.READY, reply, order_id),
            )

    def mark_removed(self, order_id: int, now: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE trades SET removed_at = ? WHERE order_id = ?", (now, order_id))

    def with_files(self) -> list[Trade]:
        """Trades whose file may still be on disk and is no longer being fetched."""
        rows = self._query(
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE removed_at IS NULL AND stage IN (?, ?, ?)",
            (Stage.READY, Stage.DELIVERED, Stage.FAILED),
        )
        return [_trade(r) for r in rows]

    def purge(self, removed_before: int) -> int:
        """Forget trades whose file was removed before `removed_before`; returns how many."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT order_id FROM trades WHERE removed_at < ?", (removed_before,))]
            for order_id in ids:
                db.execute("DELETE FROM claims WHERE order_id = ?", (order_id,))
                db.execute("DELETE FROM trades WHERE order_id = ?", (order_id,))
            return len(ids)

    # ------------------------------------------------------------ served ranges

    def served(self, order_id: int) -> list[Range]:
        rows = self._query("SELECT served FROM trades WHERE order_id = ?", (order_id,))
        return [(int(s), int(e)) for s, e in json.loads(rows[0][0])] if rows else []

    def add_served(self, order_id: int, ranges: list[Range]) -> list[Range]:
        """Merge byte ranges sent to the buyer into the stored ones; returns the union."""
        with self._tx() as db:
            row = db.execute("SELECT served FROM trades WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                return []
            merged = merge_ranges([*((int(s), int(e)) for s, e in json.loads(row[0])), *ranges])
            db.execute("UPDATE trades SET served = ? WHERE order_id = ?", (json.dumps(merged), order_id))
            return merged

    # ------------------------------------------------------------ claims

    def claim(self, order_id: int, kind: ClaimKind) -> Claim | None:
        rows = self._query(
            "SELECT order_id, kind, state, tx_hash, error, attempts FROM claims WHERE order_id = ? AND kind = ?",
            (order_id, kind),
        )
        if not rows:
            return None
        r = rows[0]
        return Claim(int(r[0]), ClaimKind(r[1]), ClaimState(r[2]), str(r[3]), str(r[4]), int(r[5]))

    def claim_intent(self, order_id: int, kind: ClaimKind, now: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO claims (order_id, kind, state, updated_at, attempts) VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT (order_id, kind) DO UPDATE SET state = excluded.state, tx_hash = '', error = '',"
                " attempts = attempts + 1, updated_at = excluded.updated_at",
                (order_id, kind, ClaimState.INTENT, now),
            )

    def claim_update(self, order_id: int, kind: ClaimKind, state: ClaimState, now: int, *, tx_hash: str = "",
                     error: str = "") -> None:  # fmt: skip
        with self._tx() as db:
            db.execute(
                "INSERT INTO claims (order_id, kind, state, tx_hash, error, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (order_id, kind) DO UPDATE SET state = excluded.state, error = excluded.error,"
                " tx_hash = CASE WHEN excluded.tx_hash = '' THEN tx_hash ELSE excluded.tx_hash END,"
                " updated_at = excluded.updated_at",
                (order_id, kind, state, tx_hash, error, now),
            )

    def claims_in(self, state: ClaimState) -> list[Claim]:
        rows = self._query("SELECT order_id, kind FROM claims WHERE state = ?", (state,))
        return [c for r in rows if (c := self.claim(int(r[0]), ClaimKind(r[1]))) is not None]

    # ------------------------------------------------------------ uploads

    def add_upload(self, upload: Upload) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO uploads (id, uploader, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
                (upload.id, upload.uploader, upload.size, upload.sha256, upload.created_at),
            )

    def upload(self, upload_id: str) -> Upload | None:
        rows = self._query("SELECT id, uploader, size, sha256, created_at FROM uploads WHERE id = ?", (upload_id,))
        return Upload(*rows[0]) if rows else None

    def uploads_before(self, created_before: int) -> list[Upload]:
        rows = self._query(
            "SELECT id, uploader, size, sha256, created_at FROM uploads WHERE created_at < ?", (created_before,)
        )
        return [Upload(*r) for r in rows]

    def delete_upload(self, upload_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))


def _trade(row: tuple[Any, ...]) -> Trade:
    (order_id, seller, buyer, product, locator, key_grant, data_hash, size, stage, error, created_at, fetched_at,
     removed_at, reply) = row  # fmt: skip
    return Trade(
        order_id=int(order_id),
        seller=seller,
        buyer=buyer,
        product=product,
        locator=locator,
        key_grant=key_grant,
        data_hash=data_hash,
        size=None if size is None else int(size),
        stage=Stage(stage),
        error=error,
        created_at=int(created_at),
        fetched_at=None if fetched_at is None else int(fetched_at),
        removed_at=None if removed_at is None else int(removed_at),
        seller_reply=None if reply is None else bytes(reply),
    )

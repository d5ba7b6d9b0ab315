"""The channel registry: stream channels and the orders bound to them, in the proxy's SQLite.

Owns the `stream_channels` and `stream_orders` tables (in the proxy's database file, next
to the trade tables, which it never touches). One row per channel (unique topic; unique
(seller, request nonce), so a retried open request finds its channel instead of creating
another) and one row per bound order (the order id is the key). Safe to use from several
threads; every method is one transaction. Must not touch Kafka, the chain or the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpchain.proxy.sqlite import SqliteDb
from cpchain.proxy.streams.model import Binding, BindStage, Channel, ChannelState, Delivery

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_channels (
    id TEXT PRIMARY KEY,
    seller TEXT NOT NULL,
    topic TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    retention INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    request_nonce TEXT NOT NULL,
    UNIQUE (seller, request_nonce)
);
CREATE INDEX IF NOT EXISTS stream_channels_seller ON stream_channels (seller, state);
CREATE INDEX IF NOT EXISTS stream_channels_state ON stream_channels (state);
CREATE TABLE IF NOT EXISTS stream_orders (
    order_id INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    seller TEXT NOT NULL,
    buyer TEXT NOT NULL,
    product TEXT NOT NULL,
    key_grant TEXT NOT NULL,
    stage TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    fetched_tx TEXT NOT NULL DEFAULT '',
    delivery TEXT NOT NULL DEFAULT 'none',
    delivered_tx TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS stream_orders_channel ON stream_orders (channel_id);
"""

_CHANNEL_COLUMNS = "id, seller, topic, state, created_at, ended_at, retention, next_seq, next_offset, request_nonce"
_ORDER_COLUMNS = ("order_id, channel_id, seller, buyer, product, key_grant, stage, error, created_at, fetched_tx,"
                  " delivery, delivered_tx")  # fmt: skip


class Registry(SqliteDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    # ------------------------------------------------------------ channels

    def create_channel(self, channel: Channel) -> Channel:
        """Insert a channel, or return the one this (seller, request nonce) already created."""
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_CHANNEL_COLUMNS} FROM stream_channels WHERE seller = ? AND request_nonce = ?",
                (channel.seller, channel.request_nonce),
            ).fetchone()
            if row is not None:
                return _channel(row)
            db.execute(
                f"INSERT INTO stream_channels ({_CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (channel.id, channel.seller, channel.topic, channel.state, channel.created_at, channel.ended_at,
                 channel.retention, channel.next_seq, channel.next_offset, channel.request_nonce),
            )  # fmt: skip
            return channel

    def channel_by_request(self, seller: str, request_nonce: str) -> Channel | None:
        rows = self._query(f"SELECT {_CHANNEL_COLUMNS} FROM stream_channels WHERE seller = ? AND request_nonce = ?",
                           (seller, request_nonce))  # fmt: skip
        return _channel(rows[0]) if rows else None

    def channel(self, channel_id: str) -> Channel | None:
        rows = self._query(f"SELECT {_CHANNEL_COLUMNS} FROM stream_channels WHERE id = ?", (channel_id,))
        return _channel(rows[0]) if rows else None

    def channels_in(self, *states: ChannelState) -> list[Channel]:
        marks = ",".join("?" * len(states))
        rows = self._query(f"SELECT {_CHANNEL_COLUMNS} FROM stream_channels WHERE state IN ({marks})", states)
        return [_channel(r) for r in rows]

    def open_channels_of(self, seller: str) -> int:
        rows = self._query("SELECT COUNT(*) FROM stream_channels WHERE seller = ? AND state = ?",
                           (seller, ChannelState.OPEN))  # fmt: skip
        return int(rows[0][0])

    def save_position(self, channel_id: str, next_seq: int, next_offset: int) -> None:
        """Record how far the channel's acknowledged records reach (never moves backwards)."""
        with self._tx() as db:
            db.execute(
                "UPDATE stream_channels SET next_seq = MAX(next_seq, ?), next_offset = MAX(next_offset, ?)"
                " WHERE id = ?",
                (next_seq, next_offset, channel_id),
            )

    def end_channel(self, channel_id: str, now: int) -> Channel | None:
        """Mark an open channel ended (an ended one keeps its end time); returns the row."""
        with self._tx() as db:
            db.execute(
                "UPDATE stream_channels SET state = ?, ended_at = ? WHERE id = ? AND state = ?",
                (ChannelState.ENDED, now, channel_id, ChannelState.OPEN),
            )
            row = db.execute(f"SELECT {_CHANNEL_COLUMNS} FROM stream_channels WHERE id = ?", (channel_id,)).fetchone()
            return _channel(row) if row else None

    def mark_deleted(self, channel_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE stream_channels SET state = ? WHERE id = ?", (ChannelState.DELETED, channel_id))

    def purge(self, ended_before: int) -> int:
        """Forget deleted channels that ended before `ended_before`, with their bound orders."""
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM stream_channels WHERE state = ? AND ended_at < ?",
                                             (ChannelState.DELETED, ended_before))]  # fmt: skip
            for channel_id in ids:
                db.execute("DELETE FROM stream_orders WHERE channel_id = ?", (channel_id,))
                db.execute("DELETE FROM stream_channels WHERE id = ?", (channel_id,))
            return len(ids)

    # ------------------------------------------------------------ bound orders

    def begin_binding(self, binding: Binding) -> Binding:
        """Record an accepted bind request; an existing live binding of the order wins.

        A failed binding is replaced (the seller may try again).
        """
        with self._tx() as db:
            row = db.execute(f"SELECT {_ORDER_COLUMNS} FROM stream_orders WHERE order_id = ?",
                             (binding.order_id,)).fetchone()  # fmt: skip
            if row is not None and row[6] != BindStage.FAILED:
                return _binding(row)
            db.execute("DELETE FROM stream_orders WHERE order_id = ?", (binding.order_id,))
            db.execute(
                f"INSERT INTO stream_orders ({_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (binding.order_id, binding.channel_id, binding.seller, binding.buyer, binding.product,
                 binding.key_grant, binding.stage, binding.error, binding.created_at, binding.fetched_tx,
                 binding.delivery, binding.delivered_tx),
            )  # fmt: skip
            return binding

    def binding(self, order_id: int) -> Binding | None:
        rows = self._query(f"SELECT {_ORDER_COLUMNS} FROM stream_orders WHERE order_id = ?", (order_id,))
        return _binding(rows[0]) if rows else None

    def bindings_in(self, *stages: BindStage) -> list[Binding]:
        marks = ",".join("?" * len(stages))
        rows = self._query(f"SELECT {_ORDER_COLUMNS} FROM stream_orders WHERE stage IN ({marks})", stages)
        return [_binding(r) for r in rows]

    def bindings_delivering(self) -> list[Binding]:
        rows = self._query(f"SELECT {_ORDER_COLUMNS} FROM stream_orders WHERE delivery = ?", (Delivery.CLAIMING,))
        return [_binding(r) for r in rows]

    def set_stage(self, order_id: int, stage: BindStage, *, fetched_tx: str = "", error: str = "") -> None:
        with self._tx() as db:
            db.execute("UPDATE stream_orders SET stage = ?, fetched_tx = ?, error = ? WHERE order_id = ?",
                       (stage, fetched_tx, error, order_id))  # fmt: skip

    def set_delivery(self, order_id: int, delivery: Delivery, *, delivered_tx: str = "", error: str = "") -> bool:
        """Move the delivery claim forward; False if it was already at or past `delivery`."""
        order = [Delivery.NONE, Delivery.CLAIMING, Delivery.CLAIMED]
        with self._tx() as db:
            row = db.execute("SELECT delivery FROM stream_orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                return False
            current = Delivery(row[0])
            if delivery is not Delivery.FAILED and current in order and order.index(current) >= order.index(delivery):
                return False
            db.execute("UPDATE stream_orders SET delivery = ?, delivered_tx = ?, error = ? WHERE order_id = ?",
                       (delivery, delivered_tx, error, order_id))  # fmt: skip
            return True


def _channel(row: tuple[Any, ...]) -> Channel:
    (cid, seller, topic, state, created_at, ended_at, retention, next_seq, next_offset, nonce) = row
    return Channel(
        id=cid,
        seller=seller,
        topic=topic,
        state=ChannelState(state),
        created_at=int(created_at),
        ended_at=None if ended_at is None else int(ended_at),
        retention=int(retention),
        next_seq=int(next_seq),
        next_offset=int(next_offset),
        request_nonce=nonce,
    )


def _binding(row: tuple[Any, ...]) -> Binding:
    (order_id, channel_id, seller, buyer, product, key_grant, stage, error, created_at, fetched_tx, delivery,
     delivered_tx) = row  # fmt: skip
    return Binding(
        order_id=int(order_id),
        channel_id=channel_id,
        seller=seller,
        buyer=buyer,
        product=product,
        key_grant=key_grant,
        stage=BindStage(stage),
        error=error,
        created_at=int(created_at),
        fetched_tx=fetched_tx,
        delivery=Delivery(delivery),
        delivered_tx=delivered_tx,
    )

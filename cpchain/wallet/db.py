"""The wallet's local SQLite database: uploads, products, orders and purchases.

Owns the schema and its versioned migrations (a `schema_version` table and an ordered list
of steps, each applied in one transaction, so a database of any older version, or none,
opens at the latest), and typed rows in and out. The database holds no plaintext key: a
file's data key and a stream key (a seller's channel is an upload of storage type "stream";
a buyer's is kept with the purchase) are stored wrapped to the owner's X25519 key. Orders
mirror the chain (state and deadlines) beside the wallet's own progress (delivered,
retries), which is what makes the automation restart-safe. Must not talk to the network or decide anything.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpchain.types import OrderState, OrderTerms
from cpchain.wallet.errors import DatabaseError, DatabaseTooNew, WalletClosed

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "OrderRecord",
    "ProductRecord",
    "PurchaseRecord",
    "UploadRecord",
    "WalletDB",
    "migrate",
    "schema_version",
]

# Each step is applied once, in order, inside one transaction with the version bump.
# Never edit a released step: add a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the records a wallet keeps.
    (
        """CREATE TABLE uploads (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            source_path TEXT NOT NULL,
            plain_size INTEGER NOT NULL,
            cipher_size INTEGER NOT NULL,
            data_hash TEXT NOT NULL,
            storage_type TEXT NOT NULL,
            locator TEXT NOT NULL,
            wrapped_key BLOB NOT NULL,
            created INTEGER NOT NULL
        )""",
        "CREATE INDEX uploads_owner ON uploads (owner)",
        """CREATE TABLE products (
            market_hash TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            upload_id INTEGER NOT NULL REFERENCES uploads (id),
            title TEXT NOT NULL,
            price TEXT NOT NULL,
            canonical TEXT NOT NULL,
            signature TEXT NOT NULL,
            published INTEGER NOT NULL  -- unix time the market accepted it; 0 while pending
        )""",
        "CREATE INDEX products_owner ON products (owner)",
        """CREATE TABLE orders (
            contract TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            account TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('buyer', 'seller')),
            market_hash TEXT NOT NULL,
            buyer TEXT NOT NULL,
            seller TEXT NOT NULL,
            proxy TEXT NOT NULL,
            proxy2 TEXT NOT NULL,
            price TEXT NOT NULL,
            fee TEXT NOT NULL,
            desc_hash TEXT NOT NULL,
            data_hash TEXT NOT NULL,
            buyer_key TEXT NOT NULL,
            state INTEGER NOT NULL,
            end_time INTEGER NOT NULL,
            dispute_end INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL,
            PRIMARY KEY (contract, account, order_id)
        )""",
        """CREATE TABLE purchases (
            contract TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            account TEXT NOT NULL,
            market_hash TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            download_path TEXT NOT NULL DEFAULT '',
            verified INTEGER NOT NULL DEFAULT 0,
            decrypted_path TEXT NOT NULL DEFAULT '',
            decrypted INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (contract, account, order_id),
            FOREIGN KEY (contract, account, order_id) REFERENCES orders (contract, account, order_id)
        )""",
    ),
    # 2: what the automation needs to resume after a restart.
    (
        """CREATE TABLE sync_checkpoints (
            contract TEXT NOT NULL,
            account TEXT NOT NULL,
            block INTEGER NOT NULL,
            PRIMARY KEY (contract, account)
        )""",
        "ALTER TABLE orders ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN next_try INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN last_error TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE orders ADD COLUMN ignored TEXT NOT NULL DEFAULT ''",
    ),
    # 3: stream purchases: where the channel is, the stream key (wrapped to the account's own
    # X25519 key, like a file's data key) and the subscriber's cursor.
    (
        "ALTER TABLE purchases ADD COLUMN stream_locator TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE purchases ADD COLUMN wrapped_key BLOB NOT NULL DEFAULT x''",
        "ALTER TABLE purchases ADD COLUMN stream_cursor TEXT NOT NULL DEFAULT ''",
    ),
)
LATEST_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """0 for an empty database, else the version recorded by the last applied step."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> int:
    """Apply the missing steps up to `target` (an autocommit connection); returns the version."""
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"no schema version {target}")
    conn.execute("BEGIN IMMEDIATE")  # one writer migrates; the others wait and see the result
    try:
        version = schema_version(conn)
        if version > LATEST_VERSION:
            raise DatabaseTooNew(
                f"the wallet database has schema version {version}; this wallet knows up to {LATEST_VERSION}"
            )
        if version == 0:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for number in range(version + 1, target + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (number,))
            version = number
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


@dataclass(frozen=True)
class UploadRecord:
    id: int
    owner: str
    name: str
    source_path: str
    plain_size: int
    cipher_size: int
    data_hash: str
    storage_type: str
    locator: str  # JSON of a cpchain.storage Locator
    wrapped_key: bytes  # the data key, wrapped to the owner's X25519 key
    created: int


@dataclass(frozen=True)
class ProductRecord:
    market_hash: str
    owner: str
    upload_id: int
    title: str
    price: int
    canonical: str
    signature: str
    published: int


@dataclass(frozen=True)
class OrderRecord:
    """An order the account is a party to: the chain's terms and state, and local progress."""

    contract: str
    order_id: int
    account: str
    role: str  # "buyer" or "seller"
    market_hash: str
    buyer: str
    seller: str
    proxy: str
    proxy2: str
    price: int
    fee: int
    desc_hash: str
    data_hash: str
    buyer_key: str
    state: OrderState
    end_time: int
    dispute_end: int
    updated: int
    delivered: bool = False  # seller: the order's proxy accepted SELLER_DATA
    attempts: int = 0  # failed automation attempts since the last success
    next_try: int = 0  # unix time before which the automation leaves the order alone
    last_error: str = ""
    ignored: str = ""  # seller: why the automation will not confirm this order

    @property
    def terms(self) -> OrderTerms:
        return OrderTerms(
            buyer=self.buyer,
            seller=self.seller,
            proxy=self.proxy,
            proxy2=self.proxy2,
            price=self.price,
            fee=self.fee,
            desc_hash=bytes.fromhex(self.desc_hash),
            data_hash=bytes.fromhex(self.data_hash),
            buyer_key=bytes.fromhex(self.buyer_key),
        )


@dataclass(frozen=True)
class PurchaseRecord:
    contract: str
    order_id: int
    account: str
    market_hash: str
    title: str
    download_path: str
    verified: bool
    decrypted_path: str
    decrypted: bool
    stream_locator: str = ""  # a stream purchase: the channel's StreamLocator JSON ('' for a file)
    wrapped_key: bytes = b""  # a stream purchase: the stream key wrapped to the account's own X25519 key
    stream_cursor: str = ""  # a stream purchase: JSON of the next record to read ({"position", "seq"})

    @property
    def is_stream(self) -> bool:
        return bool(self.stream_locator)

    @property
    def received(self) -> bool:
        """A file downloaded, verified and decrypted; a stream's key granted and stored."""
        return self.decrypted or (self.is_stream and bool(self.wrapped_key))


_ORDER_CHAIN_FIELDS = (
    "market_hash", "buyer", "seller", "proxy", "proxy2", "price", "fee", "desc_hash", "data_hash", "buyer_key",
)  # fmt: skip
_ORDER_PROGRESS_FIELDS = frozenset({"delivered", "attempts", "next_try", "last_error", "ignored"})
_PURCHASE_FIELDS = frozenset({"title", "download_path", "verified", "decrypted_path", "decrypted", "stream_locator",
                              "wrapped_key", "stream_cursor"})  # fmt: skip


def _order(row: sqlite3.Row) -> OrderRecord:
    data = dict(row)
    data.update(
        price=int(data["price"]),
        fee=int(data["fee"]),
        state=OrderState(data["state"]),
        delivered=bool(data["delivered"]),
    )
    return OrderRecord(**data)


def _purchase(row: sqlite3.Row) -> PurchaseRecord:
    data = dict(row)
    data.update(verified=bool(data["verified"]), decrypted=bool(data["decrypted"]),
                wrapped_key=bytes(data["wrapped_key"]))  # fmt: skip
    return PurchaseRecord(**data)


class WalletDB:
    """One wallet database file (mode 0600); safe to share between threads."""

    def __init__(self, path: Path, *, target_version: int = LATEST_VERSION) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._closed = False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseError(f"cannot open the wallet database {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.version = migrate(self._conn, target_version)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise DatabaseError(f"the wallet database {self.path} is unusable: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def _open_conn(self) -> sqlite3.Connection:
        """The connection, or WalletClosed (typed, one line) instead of sqlite3's ProgrammingError."""
        if self._closed:
            raise WalletClosed(f"the wallet database {self.path.name} was closed (the wallet was locked)")
        return self._conn

    def __enter__(self) -> WalletDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Everything inside commits together or not at all."""
        with self._lock:
            conn = self._open_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._open_conn().execute(sql, params).fetchall())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ uploads

    def add_upload(self, *, owner: str, name: str, source_path: str, plain_size: int, cipher_size: int,
                   data_hash: str, storage_type: str, locator: str, wrapped_key: bytes) -> UploadRecord:  # fmt: skip
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO uploads (owner, name, source_path, plain_size, cipher_size, data_hash, storage_type,"
                " locator, wrapped_key, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (owner, name, source_path, plain_size, cipher_size, data_hash, storage_type, locator, wrapped_key,
                 int(time.time())),
            )  # fmt: skip
            upload_id = int(cur.lastrowid or 0)
        found = self.upload(upload_id)
        assert found is not None
        return found

    def upload(self, upload_id: int) -> UploadRecord | None:
        row = self._one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return UploadRecord(**dict(row)) if row else None

    def uploads(self, owner: str) -> list[UploadRecord]:
        rows = self._all("SELECT * FROM uploads WHERE owner = ? ORDER BY id", (owner,))
        return [UploadRecord(**dict(r)) for r in rows]

    # ------------------------------------------------------------------ products

    def add_product(self, product: ProductRecord) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO products (market_hash, owner, upload_id, title, price, canonical, signature, published)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (market_hash) DO NOTHING",
                (product.market_hash, product.owner, product.upload_id, product.title, str(product.price),
                 product.canonical, product.signature, product.published),
            )  # fmt: skip

    def mark_published(self, market_hash: str, when: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE products SET published = ? WHERE market_hash = ?", (when, market_hash))

    def remove_pending_product(self, market_hash: str) -> None:
        """Forget a listing the market never accepted (published = 0); published ones stay."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM products WHERE market_hash = ? AND published = 0", (market_hash,))

    def product(self, market_hash: str) -> ProductRecord | None:
        row = self._one("SELECT * FROM products WHERE market_hash = ?", (market_hash,))
        return _product(row) if row else None

    def products(self, owner: str) -> list[ProductRecord]:
        rows = self._all("SELECT * FROM products WHERE owner = ? ORDER BY published, market_hash", (owner,))
        return [_product(r) for r in rows]

    # ------------------------------------------------------------------ orders

    def upsert_order(self, order: OrderRecord) -> OrderRecord:
        """Insert an order, or refresh the chain's view of it keeping the local progress."""
        values = [str(getattr(order, n)) if n in ("price", "fee") else getattr(order, n) for n in _ORDER_CHAIN_FIELDS]
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO orders (contract, order_id, account, role, {', '.join(_ORDER_CHAIN_FIELDS)}, state,"
                f" end_time, dispute_end, updated) VALUES ({', '.join('?' * (len(_ORDER_CHAIN_FIELDS) + 8))})"
                " ON CONFLICT (contract, account, order_id) DO UPDATE SET state = excluded.state,"
                " end_time = excluded.end_time, dispute_end = excluded.dispute_end, updated = excluded.updated",
                (order.contract, order.order_id, order.account, order.role, *values, int(order.state),
                 order.end_time, order.dispute_end, order.updated),
            )  # fmt: skip
        found = self.order(order.contract, order.account, order.order_id)
        assert found is not None
        return found

    def update_order_state(self, contract: str, account: str, order_id: int, *, state: OrderState, end_time: int,
                           dispute_end: int) -> None:  # fmt: skip
        with self.transaction() as conn:
            conn.execute(
                "UPDATE orders SET state = ?, end_time = ?, dispute_end = ?, updated = ?"
                " WHERE contract = ? AND account = ? AND order_id = ?",
                (int(state), end_time, dispute_end, int(time.time()), contract, account, order_id),
            )

    def set_progress(self, contract: str, account: str, order_id: int, **fields: object) -> None:
        """Update the wallet's own progress on an order (delivered, attempts, next_try, ...)."""
        unknown = set(fields) - _ORDER_PROGRESS_FIELDS
        if unknown:
            raise ValueError(f"not a progress field: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE orders SET {assignments} WHERE contract = ? AND account = ? AND order_id = ?",
                (*fields.values(), contract, account, order_id),
            )

    def order(self, contract: str, account: str, order_id: int) -> OrderRecord | None:
        row = self._one(
            "SELECT * FROM orders WHERE contract = ? AND account = ? AND order_id = ?", (contract, account, order_id)
        )
        return _order(row) if row else None

    def orders(self, contract: str, account: str, *, active: bool = False) -> list[OrderRecord]:
        """The account's orders on this contract, oldest first (`active`: not yet final)."""
        sql = "SELECT * FROM orders WHERE contract = ? AND account = ?"
        if active:
            finals = ", ".join(str(int(s)) for s in OrderState if s.is_final)
            sql += f" AND state NOT IN ({finals})"
        return [_order(r) for r in self._all(sql + " ORDER BY order_id", (contract, account))]

    # ------------------------------------------------------------------ purchases

    def ensure_purchase(self, contract: str, account: str, order_id: int, market_hash: str, title: str = "") -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO purchases (contract, order_id, account, market_hash, title) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (contract, account, order_id) DO NOTHING",
                (contract, order_id, account, market_hash, title),
            )

    def update_purchase(self, contract: str, account: str, order_id: int, **fields: object) -> None:
        unknown = set(fields) - _PURCHASE_FIELDS
        if unknown:
            raise ValueError(f"not a purchase field: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE purchases SET {assignments} WHERE contract = ? AND account = ? AND order_id = ?",
                (*fields.values(), contract, account, order_id),
            )

    def purchase(self, contract: str, account: str, order_id: int) -> PurchaseRecord | None:
        row = self._one(
            "SELECT * FROM purchases WHERE contract = ? AND account = ? AND order_id = ?",
            (contract, account, order_id),
        )
        return _purchase(row) if row else None

    def purchases(self, contract: str, account: str) -> list[PurchaseRecord]:
        rows = self._all(
            "SELECT * FROM purchases WHERE contract = ? AND account = ? ORDER BY order_id", (contract, account)
        )
        return [_purchase(r) for r in rows]

    # ------------------------------------------------------------------ chain checkpoint

    def checkpoint(self, contract: str, account: str) -> int | None:
        row = self._one("SELECT block FROM sync_checkpoints WHERE contract = ? AND account = ?", (contract, account))
        return int(row[0]) if row else None

    def save_checkpoint(self, contract: str, account: str, block: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO sync_checkpoints (contract, account, block) VALUES (?, ?, ?)"
                " ON CONFLICT (contract, account) DO UPDATE SET block = excluded.block",
                (contract, account, block),
            )


def _product(row: sqlite3.Row) -> ProductRecord:
    data = dict(row)
    data["price"] = int(data["price"])
    return ProductRecord(**data)

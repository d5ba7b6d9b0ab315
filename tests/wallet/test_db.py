"""The wallet database: versioned migrations from empty and from every older version, typed rows."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from cpchain.types import OrderState
from cpchain.wallet.db import LATEST_VERSION, MIGRATIONS, OrderRecord, ProductRecord, WalletDB, migrate, schema_version
from cpchain.wallet.errors import DatabaseError, DatabaseTooNew, WalletClosed, WalletError

CONTRACT, ME = "0x" + "c0" * 20, "0x" + "a1" * 20
PRICE = 10 * 10**18  # above 2**63: stored exactly


def order(order_id: int = 1, **over: object) -> OrderRecord:
    fields: dict[str, object] = {
        "contract": CONTRACT, "order_id": order_id, "account": ME, "role": "seller", "market_hash": "M" * 43,
        "buyer": "0x" + "b" * 40, "seller": ME, "proxy": "0x" + "d" * 40, "proxy2": "0x" + "d" * 40, "price": PRICE,
        "fee": PRICE // 100, "desc_hash": "11" * 32, "data_hash": "22" * 32, "buyer_key": "33" * 32,
        "state": OrderState.CREATED, "end_time": 1000, "dispute_end": 0, "updated": 1,
    }  # fmt: skip
    fields.update(over)
    return OrderRecord(**fields)  # type: ignore[arg-type]


def schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's columns (name, type, not null, default, pk) and indexes."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        shape = {t: [tuple(c[1:]) for c in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
        shape["indexes"] = sorted(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    return shape


def fill_v1(conn: sqlite3.Connection) -> None:
    """Rows as a version-1 wallet wrote them."""
    conn.execute(
        "INSERT INTO uploads (owner, name, source_path, plain_size, cipher_size, data_hash, storage_type, locator,"
        " wrapped_key, created) VALUES (?, 'a.csv', '/d/a.csv', 10, 46, ?, 'local', '{}', ?, 5)",
        (ME, "22" * 32, b"\x01" * 92),
    )
    conn.execute("INSERT INTO products VALUES ('M' || ?, ?, 1, 'A', ?, '{}', '0x', 7)", ("M" * 42, ME, str(PRICE)))
    conn.execute(
        "INSERT INTO orders VALUES (?, 1, ?, 'buyer', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 3, 1000, 0, 9)",
        (CONTRACT, ME, "M" * 43, ME, "0x" + "5" * 40, "0x" + "d" * 40, "0x" + "d" * 40, str(PRICE), "1",
         "11" * 32, "22" * 32, "33" * 32),
    )  # fmt: skip
    conn.execute("INSERT INTO purchases (contract, order_id, account, market_hash) VALUES (?, 1, ?, ?)",
                 (CONTRACT, ME, "M" * 43))  # fmt: skip


def test_a_new_database_is_private_and_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "wallet" / "wallet.db"
    with WalletDB(path) as db:
        assert db.version == LATEST_VERSION == len(MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == LATEST_VERSION
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    WalletDB(path).close()  # reopening migrates nothing and keeps one version row


@pytest.mark.parametrize("start", range(LATEST_VERSION))
def test_every_older_version_migrates_to_the_fresh_schema_keeping_its_rows(tmp_path: Path, start: int) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    WalletDB(fresh).close()
    conn = sqlite3.connect(old, isolation_level=None)
    assert migrate(conn, min(start, 1)) == min(start, 1)
    if start >= 1:
        fill_v1(conn)  # rows as version 1 wrote them, then the steps up to `start`
    assert migrate(conn, start) == start
    conn.close()
    with WalletDB(old) as db:
        assert db.version == LATEST_VERSION
        if start >= 1:
            migrated = db.order(CONTRACT, ME, 1)
            assert migrated is not None and migrated.price == PRICE and migrated.state is OrderState.PROXY_DELIVERED
            assert migrated.delivered is False and migrated.attempts == 0 and migrated.last_error == ""
            assert db.uploads(ME)[0].wrapped_key == b"\x01" * 92
            assert db.products(ME)[0].price == PRICE
            purchase = db.purchase(CONTRACT, ME, 1)
            assert purchase is not None and not purchase.verified
    assert schema(old) == schema(fresh)


def test_a_failed_step_leaves_the_database_at_its_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, 1)
    conn.close()
    broken = (*MIGRATIONS[:-1], (*MIGRATIONS[-1], "THIS IS NOT SQL"))
    monkeypatch.setattr("cpchain.wallet.db.MIGRATIONS", broken)
    with pytest.raises(DatabaseError, match="unusable"):
        WalletDB(path)
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == 1
        assert "delivered" not in [c[1] for c in conn.execute("PRAGMA table_info(orders)")]


def test_a_database_from_a_newer_wallet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    WalletDB(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
    with pytest.raises(DatabaseTooNew, match="knows up to"):
        WalletDB(path)


def test_a_file_that_is_not_a_database_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(DatabaseError):
        WalletDB(path)


def test_a_read_or_write_after_close_is_a_typed_wallet_error(tmp_path: Path) -> None:
    """A background read that outlives the wallet (locked or closed while it ran) gets a
    WalletError the front ends show as one line, not sqlite3's ProgrammingError."""
    db = WalletDB(tmp_path / "w.db")
    db.upsert_order(order())
    db.close()
    with pytest.raises(WalletClosed, match="was closed") as closed:
        db.purchases(CONTRACT, ME)
    assert isinstance(closed.value, WalletError)
    with pytest.raises(WalletClosed):
        db.upsert_order(order(state=OrderState.PROXY_FETCHED))
    with WalletDB(tmp_path / "w.db") as again:  # nothing was written after the close
        assert [o.state for o in again.orders(CONTRACT, ME)] == [OrderState.CREATED]


def test_chain_refreshes_keep_the_local_progress(tmp_path: Path) -> None:
    with WalletDB(tmp_path / "w.db") as db:
        db.upsert_order(order())
        db.set_progress(CONTRACT, ME, 1, delivered=1, attempts=2, next_try=50, last_error="proxy down")
        refreshed = db.upsert_order(order(state=OrderState.PROXY_FETCHED, end_time=2000))
        assert refreshed.state is OrderState.PROXY_FETCHED and refreshed.end_time == 2000
        assert refreshed.delivered and refreshed.attempts == 2 and refreshed.last_error == "proxy down"
        assert refreshed.terms.price == PRICE and refreshed.terms.buyer_key == b"\x33" * 32
        db.upsert_order(order(2, state=OrderState.FINISHED))
        assert [o.order_id for o in db.orders(CONTRACT, ME)] == [1, 2]
        assert [o.order_id for o in db.orders(CONTRACT, ME, active=True)] == [1]
        assert db.orders("0x" + "99" * 20, ME) == []
        with pytest.raises(ValueError, match="not a progress field"):
            db.set_progress(CONTRACT, ME, 1, state=4)


def test_products_purchases_and_checkpoints(tmp_path: Path) -> None:
    with WalletDB(tmp_path / "w.db") as db:
        upload = db.add_upload(owner=ME, name="a", source_path="/a", plain_size=1, cipher_size=37, data_hash="22" * 32,
                               storage_type="local", locator='{"type":"local"}', wrapped_key=b"w")  # fmt: skip
        product = ProductRecord("M" * 43, ME, upload.id, "A", PRICE, "{}", "0xsig", 0)
        db.add_product(product)
        db.add_product(product)  # a retry adds nothing
        db.mark_published(product.market_hash, 99)
        assert db.products(ME) == [ProductRecord("M" * 43, ME, upload.id, "A", PRICE, "{}", "0xsig", 99)]
        db.upsert_order(order(role="buyer"))
        db.ensure_purchase(CONTRACT, ME, 1, "M" * 43, "A")
        db.ensure_purchase(CONTRACT, ME, 1, "M" * 43, "other title")  # kept as it was
        db.update_purchase(CONTRACT, ME, 1, download_path="/d/x.pdash", verified=1)
        purchase = db.purchase(CONTRACT, ME, 1)
        assert purchase is not None and purchase.title == "A" and purchase.verified and not purchase.decrypted
        assert db.checkpoint(CONTRACT, ME) is None
        db.save_checkpoint(CONTRACT, ME, 10)
        db.save_checkpoint(CONTRACT, ME, 12)
        assert db.checkpoint(CONTRACT, ME) == 12


def test_a_purchase_needs_its_order(tmp_path: Path) -> None:
    with WalletDB(tmp_path / "w.db") as db, pytest.raises(sqlite3.IntegrityError):
        db.ensure_purchase(CONTRACT, ME, 5, "M" * 43)

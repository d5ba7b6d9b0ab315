"""A live market for the API suite: `bin/market-start` (migrations + gunicorn) in a subprocess,
once on SQLite and once on MariaDB, so the same tests run against both databases over HTTP.

MariaDB tests skip when the server at 127.0.0.1:3306 is unreachable, unless
PDASH_REQUIRE_MARIADB is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.market.client import MarketClient
from cpchain.services import Service
from cpchain.types import ProductDescription
from tests.chain.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
REGISTRAR = {"address": "0x" + "5a" * 20, "chain_id": 1234, "block": 1}


def mariadb_connect(database: str | None = None) -> Any:
    import MySQLdb

    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": "", "charset": "utf8mb4"}
    if database:
        kwargs["db"] = database
    return MySQLdb.connect(**kwargs)


def mariadb_available() -> bool:
    try:
        mariadb_connect().close()
        return True
    except Exception:
        return False


def require_mariadb() -> None:
    if not mariadb_available():
        if os.environ.get("PDASH_REQUIRE_MARIADB"):
            pytest.fail("MariaDB at 127.0.0.1:3306 is unreachable (start it: see .ci/run)")
        pytest.skip("MariaDB at 127.0.0.1:3306 is unreachable")


@dataclass
class LiveMarket:
    url: str
    home: Path
    backend: str
    database: str
    service: Service
    _accounts: list[LocalAccount] = field(default_factory=list)

    def client(self) -> MarketClient:
        return MarketClient(self.url)

    def user(self) -> tuple[LocalAccount, MarketClient]:
        """A fresh account, logged in."""
        account = Account.create()
        client = self.client()
        client.login(account)
        return account, client

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Direct database access, for what only the chain indexer or an operator writes."""
        if self.backend == "sqlite":
            with contextlib.closing(sqlite3.connect(self.home / "market" / "market.db", timeout=20)) as conn:
                rows = conn.execute(statement, params).fetchall()
                conn.commit()
                return rows
        conn = mariadb_connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute(statement.replace("?", "%s"), params)
            rows = list(cur.fetchall())
            conn.commit()
            return rows
        finally:
            conn.close()

    def make_admin(self, address: str) -> None:
        self.sql("UPDATE account_walletuser SET is_admin = 1 WHERE address = ?", (address,))


def write_config(home: Path, port: int, backend: str, database: str, **market: Any) -> None:
    lines = [
        "[market]",
        f"server_port = {port}",
        f'market_url = "http://127.0.0.1:{port}"',
        'login_rate = "{}"'.format(market.pop("login_rate", "100000/min")),
        f"workers = {market.pop('workers', 2)}",
        *(f"{k} = {json.dumps(v)}" for k, v in market.items()),
        "[market.mysql]",
        f"enabled = {'true' if backend == 'mariadb' else 'false'}",
        f'database = "{database}"',
    ]
    home.mkdir(parents=True, exist_ok=True)
    (home / "cpchain.toml").write_text("\n".join(lines) + "\n")
    (home / "registrar.json").write_text(json.dumps(REGISTRAR))


def start_market(home: Path, backend: str, **market: Any) -> LiveMarket:
    port = free_port()
    database = ""
    if backend == "mariadb":
        require_mariadb()
        database = f"pdash_test_{secrets.token_hex(4)}"
        conn = mariadb_connect()
        conn.cursor().execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        conn.close()
    write_config(home, port, backend, database, **market)
    env = {k: v for k, v in os.environ.items() if k != "CPCHAIN_HOME_CONFIG_PATH"}
    env["CPCHAIN_HOME"] = str(home)
    service = Service("market", [str(ROOT / "bin" / "market-start")], home / "run", port=port)
    service.start(env=env, ready_timeout=90)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/health/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"market did not become healthy; see {service.logfile}")
        time.sleep(0.2)
    return LiveMarket(url, home, backend, database, service)


def stop_market(market: LiveMarket) -> None:
    market.service.stop()
    if market.backend == "mariadb":
        conn = mariadb_connect()
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {market.database}")
        conn.close()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def market(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMarket]:
    live = start_market(tmp_path_factory.mktemp(f"market-{request.param}"), request.param)
    yield live
    stop_market(live)


def product(seller: str, **over: Any) -> ProductDescription:
    fields: dict[str, Any] = {
        "seller": seller,
        "title": "Hourly weather of Shanghai",
        "ptype": "file",
        "description": "Temperature, humidity and wind, one row per hour since 2015.",
        "price": 10**18,
        "category": "climate",
        "tags": ["weather", "hourly"],
        "data_hash": secrets.token_hex(32),
        "storage_type": "local",
        "size": 4096,
        "nonce": secrets.token_hex(16),
    }
    fields.update(over)
    return ProductDescription.from_dict(fields)

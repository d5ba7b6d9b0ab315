"""bin/market-sync-chain as an operator runs it: its own process, a config file, the contract
from the registrar, a node over HTTP (anvil), on SQLite and on MariaDB."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpchain.chain.escrow import Escrow, deploy
from cpchain.types import OrderState
from tests.chain.conftest import PARAMS, AnvilProcess, World
from tests.chain.escrow.test_escrow_lifecycle import order_in

ROOT = Path(__file__).resolve().parents[3]
SYNC = [str(ROOT / "bin" / "market-sync-chain")]
MANAGE = [str(ROOT / ".venv" / "bin" / "market-manage")]
Query = Callable[[str], list[tuple[Any, ...]]]


def mariadb() -> Any:
    import MySQLdb

    try:
        return MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="", charset="utf8mb4")
    except Exception:
        if os.environ.get("PDASH_REQUIRE_MARIADB"):
            pytest.fail("MariaDB at 127.0.0.1:3306 is unreachable (start it: see .ci/run)")
        pytest.skip("MariaDB at 127.0.0.1:3306 is unreachable")


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def market_home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Query]]:
    """A market home whose config names the database; yields it with a way to query it."""
    lines = ["[core]", f'rc_dir = "{tmp_path}"', 'mode = "market"', "[market]", "sync_interval = 0.2"]
    if request.param == "sqlite":

        def query(sql: str) -> list[tuple[Any, ...]]:
            with contextlib.closing(sqlite3.connect(tmp_path / "market" / "market.db", timeout=20)) as conn:
                return conn.execute(sql).fetchall()

        (tmp_path / "cpchain.toml").write_text("\n".join(lines) + "\n")
        yield tmp_path, query
        return
    server, database = mariadb(), f"pdash_records_{secrets.token_hex(4)}"
    server.cursor().execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    lines += ["[market.mysql]", "enabled = true", f'database = "{database}"']
    (tmp_path / "cpchain.toml").write_text("\n".join(lines) + "\n")

    def query_mariadb(sql: str) -> list[tuple[Any, ...]]:
        server.select_db(database)
        server.commit()  # a fresh snapshot for each query
        cursor = server.cursor()
        cursor.execute(sql)
        return list(cursor.fetchall())

    try:
        yield tmp_path, query_mariadb
    finally:
        server.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
        server.close()


def point_at_chain(home: Path, url: str, escrow: Escrow) -> None:
    with (home / "cpchain.toml").open("a") as fh:
        fh.write(f'[chain]\nmode = "local"\nlocal_provider_addr = "{url}"\nconfirmations = 0\n')
    escrow.deployment.save(home / "registrar.json")


def run(home: Path, command: list[str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CPCHAIN_HOME_CONFIG_PATH", "DJANGO_SETTINGS_MODULE")}
    env["CPCHAIN_HOME"] = str(home)
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120, **kwargs)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("world", ["anvil"], indirect=True)
def test_sync_chain_once_loop_and_sigterm(world: World, anvil: AnvilProcess, market_home: tuple[Path, Query]) -> None:
    home, query = market_home
    point_at_chain(home, anvil.url, world.escrow)
    refused = run(home, SYNC, "--once")
    assert refused.returncode == 1 and "not migrated" in refused.stderr  # one line, no traceback
    assert "Traceback" not in refused.stderr
    assert run(home, MANAGE, "migrate", "--verbosity", "0").returncode == 0

    finished = order_in(world, OrderState.FINISHED)
    once = run(home, SYNC, "--once")
    assert once.returncode == 0, once.stderr
    [(state, paid, price)] = query(
        f"SELECT state, seller_paid, price FROM records_chainorder WHERE order_id={finished}"
    )
    assert (state, paid, int(price)) == (int(OrderState.FINISHED), 1, 10 * 10**18)  # a DECIMAL or a padded string
    recorded = query("SELECT COUNT(*) FROM records_record")[0][0]
    assert recorded == 7  # the two proxies' deposits, then the order's five events
    assert f"handled {recorded} events" in once.stdout
    assert query("SELECT block, contract FROM records_syncstate") == [
        (world.w3.eth.block_number, f"31337:{world.escrow.address}:{world.escrow.deployment.block}")
    ]
    again = run(home, SYNC, "--once")
    assert again.returncode == 0 and "handled 0 events" in again.stdout
    assert query("SELECT COUNT(*) FROM records_record")[0][0] == recorded

    # The service: picks up new orders every sync_interval, stops cleanly on SIGTERM.
    env = {k: v for k, v in os.environ.items() if k not in ("CPCHAIN_HOME_CONFIG_PATH", "DJANGO_SETTINGS_MODULE")}
    service = subprocess.Popen(
        SYNC, env={**env, "CPCHAIN_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        later = world.place()
        wait_for(lambda: bool(query(f"SELECT 1 FROM records_chainorder WHERE order_id = {later}")))
        world.seller.confirm(later)
        wait_for(lambda: query(f"SELECT state FROM records_chainorder WHERE order_id = {later}")[0][0] == 1)
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=15)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, stderr
    assert "SIGTERM received" in stderr

    # A registrar naming another contract: refused, the records are not mixed.
    other = Escrow(world.w3, deploy(world.bank, world.address("arbiter"), PARAMS))
    other.deployment.save(home / "registrar.json")
    mixed = run(home, SYNC, "--once")
    assert mixed.returncode == 1 and "use a fresh market database" in mixed.stderr
    assert "Traceback" not in mixed.stderr
    assert json.loads((home / "registrar.json").read_text())["address"] == other.address
    assert query("SELECT COUNT(*) FROM records_chainorder")[0][0] == 2

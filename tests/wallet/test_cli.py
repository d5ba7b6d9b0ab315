"""The `pdash` console script on live services (anvil + escrow, market, tracker, two proxies).

A whole file trade runs through the real `.venv/bin/pdash` processes: accounts created and
imported, a publish with progress bars, search, show, proxy list, buy, withdraw, orders, the
seller's `pdash run` in the background (stopped by SIGTERM), receive with progress,
confirm, rate; `--json` outputs are parsed and checked. The error paths (wrong password, no
funds, unknown product or order, market down, proxy down, chain down, bad arguments) run
in-process through `main(argv)`: each gives exactly one line on stderr, a non-zero exit,
no traceback, nothing on stdout, and the wallet databases stay as they were (or, where the
chain moved, agree with it).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpchain.chain.faucet import Faucet, FaucetPolicy, make_server
from cpchain.types import OrderState
from cpchain.wallet.cli import main
from tests.chain.conftest import ETHER
from tests.proxy.conftest import _toml
from tests.wallet.conftest import Services, password, random_file

PDASH = Path(sys.executable).with_name("pdash")
HASH_NOWHERE = "A" * 43  # a well-formed market hash no product has


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def failed(self, match: str = "") -> str:
        """Exactly one line on stderr, `pdash: error: ...`, no traceback, nothing on stdout."""
        assert self.code != 0, self.out
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("pdash: error: ") and "Traceback" not in self.err, self.err
        assert self.out == ""
        assert match.lower() in lines[0].lower(), lines[0]
        return lines[0]


def write_config(path: Path, data: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in scalars.items())
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


def config_for(services: Services, name: str, variant: str = "", **sections: dict[str, Any]) -> Path:
    """The wallet config of `name` (its home, keystore and database), with sections overridden."""
    data = tomllib.loads((services.home(name) / "cpchain.toml").read_text())
    for section, values in sections.items():
        table = data
        for part in section.split("."):
            table = table.setdefault(part, {})
        table.update(values)
    return write_config(services.base / f"pdash-{name}{variant}.toml", data)


def env_for(config: Path, secret: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CPCHAIN_", "PDASH_"))}
    env["CPCHAIN_HOME_CONFIG_PATH"] = str(config)
    if secret is not None:
        env["PDASH_PASSWORD"] = secret
    return env


def pdash(config: Path, *args: str, secret: str | None = None, timeout: float = 120) -> Ran:
    """The real console script in its own process."""
    done = subprocess.run([str(PDASH), *args], env=env_for(config, secret), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """`main(argv)` in this process (cheap), with the same environment as the script's."""

    def call(config: Path, *args: str, secret: str | None = None) -> Ran:
        capsys.readouterr()
        for key in [k for k in os.environ if k.startswith(("CPCHAIN_", "PDASH_"))]:
            monkeypatch.delenv(key)
        for key, value in env_for(config, secret).items():
            if key.startswith(("CPCHAIN_", "PDASH_")):
                monkeypatch.setenv(key, value)
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return call


def snapshot(services: Services, name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the wallet's database (but the time each order was last read from the chain)."""
    path = services.home(name) / "wallet" / "wallet.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found = {}
        for t in tables:
            cursor = conn.execute(f"SELECT * FROM {t}")
            keep = [i for i, d in enumerate(cursor.description) if d[0] != "updated"]  # when the mirror was read
            found[t] = sorted((tuple(row[i] for i in keep) for row in cursor.fetchall()), key=repr)
        return found
    finally:
        conn.close()


def chain_state(services: Services, order_id: int) -> OrderState:
    return services.chain.world.escrow.status(order_id).state


def wait_state(services: Services, order_id: int, *states: OrderState, timeout: float = 60.0) -> OrderState:
    deadline = time.monotonic() + timeout
    while (state := chain_state(services, order_id)) not in states:
        assert time.monotonic() < deadline, f"order {order_id} stuck in {state.name}"
        time.sleep(0.1)
    return state


def nonce(services: Services, name: str) -> int:
    world = services.chain.world
    return int(world.w3.eth.get_transaction_count(world.address(name)))


@pytest.fixture(scope="module")
def faucet_url(services: Services) -> Iterator[str]:
    """The charge server, in this process, paying from the arbiter's account (idle in these tests)."""
    faucet = Faucet(services.chain.world.sender("arbiter"), FaucetPolicy(5 * ETHER, 3600, 30))
    server = make_server(faucet, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# ---------------------------------------------------------------------------- accounts


def test_accounts_and_coins(services: Services, faucet_url: str, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    home = tmp_path / "home"
    data = tomllib.loads((services.home("buyer") / "cpchain.toml").read_text())
    data["core"]["rc_dir"] = str(home)
    data["account"] = {"charge_server": faucet_url}
    config = write_config(tmp_path / "cpchain.toml", data)
    secret = "a new wallet password"

    assert pdash(config, "account", "list", "--json").json() == {"accounts": [], "current": None}
    created = pdash(config, "account", "create", "--json", secret=secret).json()
    assert created["current"] and created["encryption_public_key"]
    key_file = tmp_path / "key"
    key_file.write_text(bytes(services.chain.world.accounts["other"].key).hex())
    key_file.chmod(0o644)
    pdash(config, "account", "import", "--key-file", str(key_file), secret=secret).failed("chmod 600")
    key_file.chmod(0o600)
    imported = pdash(config, "account", "import", "--key-file", str(key_file), "--json", secret=secret).json()
    other = services.chain.world.address("other")
    assert imported["address"] == other and not imported["current"]  # the first account stays selected
    listed = cli(config, "account", "list", "--json").json()
    assert [a["address"] for a in listed["accounts"]] == sorted([created["address"], other])
    assert listed["current"] == created["address"]
    cli(config, "account", "import", "--key-file", str(key_file), secret=secret).failed("already in the wallet")
    cli(config, "account", "import", secret=secret).failed("one of the arguments")

    # Coins: a new account has none, the faucet sends some, and they can be sent on.
    assert cli(config, "balance", "--json").json()["balance_wei"] == "0"
    funded = cli(config, "faucet", "--json").json()
    assert funded["address"] == created["address"] and int(funded["amount_wei"]) == 5 * ETHER
    cli(config, "faucet").failed("funded recently")
    assert cli(config, "balance", "--json").json()["balance_wei"] == str(5 * ETHER)
    sent = cli(config, "send", other, "1.5", "--json", secret=secret).json()
    assert sent["amount_wei"] == str(3 * ETHER // 2) and sent["tx_hash"].startswith("0x")

    # Switch, export (a 0600 backup that imports elsewhere), and the password file rules.
    switched = cli(config, "account", "switch", other, "--json").json()
    assert switched["address"] == other and switched["current"]
    assert int(cli(config, "balance", "--json").json()["balance_wei"]) > 100 * ETHER
    backup = tmp_path / "backup.json"
    assert cli(config, "account", "export", "--out", str(backup), "--json").json()["backup"] == str(backup)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    cli(config, "account", "export", "--out", str(backup)).failed("refusing to overwrite")
    password_file = tmp_path / "password"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o644)
    cli(config, "send", created["address"], "1", "--password-file", str(password_file)).failed("chmod 600")
    password_file.chmod(0o600)
    assert cli(config, "send", created["address"], "1wei", "--password-file", str(password_file), "--json").json()
    cli(config, "account", "switch", "0x" + "12" * 20).failed("no account")
    cli(config, "send", created["address"], "1", secret="").failed("no password")

    elsewhere = tmp_path / "elsewhere.toml"
    write_config(elsewhere, {**data, "core": {"rc_dir": str(tmp_path / "other-home")}})
    restored = cli(elsewhere, "account", "import", "--backup", str(backup), "--json", secret=secret).json()
    assert restored["address"] == other and restored["encryption_public_key"] == imported["encryption_public_key"]


# ---------------------------------------------------------------------------- a whole trade


def test_a_file_trade_through_the_console_script(services: Services, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    seller, buyer = config_for(services, "seller"), config_for(services, "buyer")
    s_pw, b_pw = password("seller"), password("buyer")
    original = random_file(tmp_path / "weather.csv", 400_000)

    published = pdash(seller, "publish", str(original), "--title", "Hourly weather of Shanghai", "--price", "10",
                      "--tag", "weather", "--category", "climate", "--progress", "--json", secret=s_pw)  # fmt: skip
    listing = published.json()
    market_hash = listing["market_hash"]
    assert listing["published"] and listing["price"] == str(10 * ETHER) and listing["upload"]["plain_size"] == 400_000
    assert "encrypt" in published.err and "upload" in published.err and "100%" in published.err

    found = pdash(buyer, "search", "Shanghai", "--json").json()
    assert market_hash in [r["market_hash"] for r in found["results"]]
    shown = pdash(buyer, "show", market_hash, "--json").json()
    assert shown["verified"] and shown["data_hash"] == listing["upload"]["data_hash"]
    assert "signature    verified" in cli(buyer, "show", market_hash).out
    proxies = cli(buyer, "proxy", "list", "--json").json()["proxies"]
    assert {p["address"] for p in proxies} == {p.address for p in services.proxies.values()}
    assert all(int(p["deposit_wei"]) > 0 and p["eligible"] for p in proxies)

    order = pdash(buyer, "buy", market_hash, "--json", secret=b_pw).json()
    oid = order["order_id"]
    assert order["state"] == "CREATED" and order["price_wei"] == str(10 * ETHER) and order["role"] == "buyer"
    # A second order, taken back before the seller confirms it.
    spare = cli(buyer, "buy", market_hash, "--json", secret=b_pw).json()["order_id"]
    assert cli(buyer, "withdraw", str(spare), "--json", secret=b_pw).json()["state"] == "WITHDRAWN"

    mine = pdash(seller, "orders", "--json", secret=s_pw).json()["orders"]
    pending = {o["order_id"]: o for o in mine}
    assert pending[oid]["state"] == "CREATED" and pending[oid]["role"] == "seller"
    assert "confirm" in pending[oid]["actions"] and pending[oid]["seconds_left"] > 3600
    assert pending[spare]["state"] == "WITHDRAWN" and pending[spare]["actions"] == []
    assert "CREATED" in cli(seller, "orders", "--active", secret=s_pw).out

    # The seller's automation, as a user runs it: in the background until SIGTERM.
    runner = subprocess.Popen([str(PDASH), "run", "--interval", "0.2", "--json"], env=env_for(seller, s_pw),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_state(services, oid, OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED)
        received = pdash(buyer, "receive", str(oid), "--progress", "--json", secret=b_pw).json()
        assert received["purchase"]["decrypted"] and received["purchase"]["verified"]
        assert Path(received["purchase"]["path"]).read_bytes() == original.read_bytes()
        wait_state(services, oid, OrderState.PROXY_DELIVERED)

        # A third order, delivered by the running seller too, that the buyer disputes.
        disputed = cli(buyer, "buy", market_hash, "--json", secret=b_pw).json()["order_id"]
        wait_state(services, disputed, OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED)
        assert cli(buyer, "receive", str(disputed), secret=b_pw).code == 0
        wait_state(services, disputed, OrderState.PROXY_DELIVERED)
        assert cli(buyer, "dispute", str(disputed), "--json", secret=b_pw).json()["state"] == "DISPUTED"
    finally:
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert {(d["order_id"], d["task"]) for d in summary["done"]} >= {(oid, "confirm"), (oid, "deliver"),
                                                                        (disputed, "deliver")}  # fmt: skip
    assert summary["failed"] == [] and summary["steps"] > 0

    confirmed = pdash(buyer, "confirm", str(oid), "--json", secret=b_pw).json()
    assert confirmed["state"] == "FINISHED" and chain_state(services, oid) is OrderState.FINISHED
    services.index_market()
    rated = pdash(buyer, "rate", str(oid), "5", "--comment", "accurate", "--proxy-rating", "4", "--json",
                  secret=b_pw).json()  # fmt: skip
    assert rated["review"]["rating"] == 5 and rated["review"]["author"] == services.chain.world.address("buyer")
    assert services.chain.world.escrow.status(oid).buyer_rated
    cli(buyer, "rate", str(oid), "4", "--proxy-rating", "4", secret=b_pw).failed("")  # once only

    final = {o["order_id"]: o for o in cli(buyer, "orders", "--json", secret=b_pw).json()["orders"]}
    assert final[oid]["state"] == "FINISHED" and final[oid]["purchase"]["decrypted"]
    assert final[spare]["state"] == "WITHDRAWN" and final[disputed]["state"] == "DISPUTED"
    assert "received:" in cli(buyer, "orders", "--role", "buyer", secret=b_pw).out


# ---------------------------------------------------------------------------- error paths


def test_every_error_is_one_line_and_leaves_the_wallet_consistent(services: Services, tmp_path: Path,
                                                                    cli: Callable[..., Ran]) -> None:  # fmt: skip
    seller, buyer = config_for(services, "seller"), config_for(services, "buyer")
    s_pw, b_pw = password("seller"), password("buyer")
    product = cli(seller, "publish", str(random_file(tmp_path / "a.csv", 5000)), "--title", "Errors", "--price",
                  "2", "--json", secret=s_pw).json()["market_hash"]  # fmt: skip
    dear = cli(seller, "publish", str(random_file(tmp_path / "b.csv", 100)), "--title", "Dear", "--price",
               "1000000", "--json", secret=s_pw).json()["market_hash"]  # fmt: skip
    dead = f"http://127.0.0.1:{services.chain.nobody}"
    nowhere = f"127.0.0.1:{services.chain.nobody}"
    no_market = config_for(services, "buyer", "-no-market", market={"market_url": dead})
    unreachable = {"proxy": {"tracker": nowhere, "boot_nodes": [nowhere]},
                   "proxy.discovery": {"tracker_timeout": 1.0, "lookup_timeout": 1.0}}  # fmt: skip
    no_tracker = config_for(services, "buyer", "-no-tracker", **unreachable)
    no_chain = config_for(services, "buyer", "-no-chain", chain={"local_provider_addr": dead})
    assert cli(buyer, "orders", secret=b_pw).code == 0  # the buyer's database exists and is in step
    before = snapshot(services, "buyer"), snapshot(services, "seller")
    nonces = nonce(services, "buyer"), nonce(services, "seller")

    failures = [
        (cli(buyer, "buy", product, secret="wrong"), "wrong password"),
        (cli(buyer, "orders", secret="wrong"), "wrong password"),
        (cli(buyer, "buy", dear, secret=b_pw), "insufficient funds"),
        (cli(buyer, "send", services.chain.world.address("other"), "100000", secret=b_pw), "insufficient funds"),
        (cli(buyer, "show", HASH_NOWHERE), "no product"),
        (cli(buyer, "buy", HASH_NOWHERE, secret=b_pw), "no product"),
        (cli(buyer, "show", "../etc"), "not a market hash"),
        (cli(buyer, "buy", product, "--proxy", services.chain.world.address("other"), secret=b_pw), "deposit"),
        (cli(seller, "buy", product, secret=s_pw), "own product"),
        (cli(no_market, "search", "weather"), "market"),
        (cli(no_market, "show", product), "market"),
        (cli(no_market, "buy", product, secret=b_pw), "market"),
        (cli(no_tracker, "proxy", "list"), "tracker"),
        (cli(no_tracker, "buy", product, secret=b_pw), "tracker"),
        (cli(no_chain, "balance"), "chain node"),
        (cli(no_chain, "orders", secret=b_pw), "chain node"),
        (cli(buyer, "confirm", "999999", secret=b_pw), "does not exist"),
        (cli(buyer, "receive", "999999", secret=b_pw), "does not exist"),
        (cli(buyer, "buy"), "required: market_hash"),
        (cli(buyer, "frobnicate"), "invalid choice"),
        (cli(buyer, "rate", "x", "5"), "invalid int value"),
        (cli(buyer, "send", "0xnot", "1", secret=b_pw), "not an address"),
        (cli(buyer, "send", services.chain.world.address("other"), "lots", secret=b_pw), "not an amount"),
        (cli(buyer, "search", "--min-price", "-1"), "not an amount"),
        (cli(seller, "publish", str(tmp_path / "missing.csv"), "--title", "x", "--price", "1", secret=s_pw),
         "not a file"),
        (cli(seller, "publish", str(tmp_path / "a.csv"), "--title", "", "--price", "1", secret=s_pw), "title"),
        (cli(seller, "publish", str(tmp_path / "a.csv"), secret=s_pw), "needs a file"),
        (cli(buyer, "--config", str(tmp_path / "none.toml"), "orders", secret=b_pw), "not found"),
    ]  # fmt: skip
    wrong = []
    for ran, match in failures:
        try:
            ran.failed(match)
        except AssertionError:
            wrong.append((ran, match))
    assert not wrong, wrong
    assert (snapshot(services, "buyer"), snapshot(services, "seller")) == before
    assert (nonce(services, "buyer"), nonce(services, "seller")) == nonces

    # An order the lifecycle refuses actions on: each refusal is one line, nothing is sent.
    oid = cli(buyer, "buy", product, "--json", secret=b_pw).json()["order_id"]
    before, nonces = snapshot(services, "buyer"), (nonce(services, "buyer"), nonce(services, "seller"))
    cli(buyer, "confirm", str(oid), secret=b_pw).failed("wrong state")
    cli(buyer, "dispute", str(oid), secret=b_pw).failed("wrong state")
    cli(buyer, "receive", str(oid), secret=b_pw).failed("not fetched")
    cli(buyer, "rate", str(oid), "5", secret=b_pw).failed("not complete")
    cli(buyer, "rate", str(oid), "9", secret=b_pw).failed("between 1 and 5")
    cli(buyer, "claim-timeout", str(oid), secret=b_pw).failed("deadline not reached")
    cli(services.home("other") / "cpchain.toml", "confirm", str(oid), secret=password("other")).failed("neither")
    assert snapshot(services, "buyer") == before
    assert (nonce(services, "buyer"), nonce(services, "seller")) == nonces

    # The seller cannot reach the order's proxy: the order is accepted (the chain moved, and
    # the database agrees) but not delivered; confirming again delivers it.
    cut_off = config_for(services, "seller", "-no-tracker", **unreachable)
    cli(cut_off, "confirm", str(oid), secret=s_pw).failed("proxy")
    assert chain_state(services, oid) is OrderState.SELLER_CONFIRMED
    row = sqlite3.connect(services.home("seller") / "wallet" / "wallet.db").execute(
        "SELECT state, delivered FROM orders WHERE order_id = ?", (oid,)).fetchone()  # fmt: skip
    assert row == (int(OrderState.SELLER_CONFIRMED), 0)
    assert "confirm" in {o["order_id"]: o for o in cli(seller, "orders", "--json", secret=s_pw).json()["orders"]}[
        oid]["actions"]  # fmt: skip
    delivered = cli(seller, "confirm", str(oid), "--json", secret=s_pw).json()
    assert delivered["delivered"] and delivered["state"] in ("PROXY_FETCHED", "PROXY_DELIVERED")

    # The market is down while publishing: the listing is kept as pending, then published.
    upload = random_file(tmp_path / "late.csv", 1000)
    no_market_seller = config_for(services, "seller", "-no-market", market={"market_url": dead})
    cli(no_market_seller, "publish", str(upload), "--title", "Late", "--price", "1", secret=s_pw).failed("market")
    rows = sqlite3.connect(services.home("seller") / "wallet" / "wallet.db").execute(
        "SELECT title, published FROM products WHERE title = 'Late'").fetchall()  # fmt: skip
    assert rows == [("Late", 0)]
    retried = cli(seller, "publish", "--retry", "--json", secret=s_pw).json()["published"]
    assert [p["title"] for p in retried] == ["Late"] and retried[0]["published"]
    assert cli(buyer, "show", retried[0]["market_hash"], "--json").json()["title"] == "Late"
    assert cli(seller, "publish", "--retry", secret=s_pw).out.strip() == "nothing pending"

    # The stream commands are still served, with their own errors.
    assert cli(buyer, "stream", "--help").code == 0


def test_a_market_hash_beginning_with_a_dash_is_an_argument_not_an_option() -> None:
    from cpchain.wallet.cli import build_parser

    # URL-safe base64 starts with "-" one time in 64; "-h…" and "-v…" would otherwise read as flags
    for word in ("-" + "a" * 42, "-h" + "Q_" * 20 + "x", "-v" + "-" * 41):
        args = build_parser().parse_args(["show", word, "--json"])
        assert args.market_hash == word and args.json
        assert build_parser().parse_args(["buy", word]).market_hash == word

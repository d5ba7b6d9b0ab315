"""The faucet as a user meets it: a real HTTP server on 127.0.0.1, paying from a funded account.

Every test runs on both chain backends (the `world` fixture). The faucet's clock is injected,
so rate-limit expiry is tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.connection import dev_bank, in_process_chain
from cpchain.chain.faucet import MAX_BODY, Faucet, FaucetPolicy, make_server
from cpchain.chain.tx import TxSender
from tests.chain.conftest import ETHER, World

AMOUNT = 3 * ETHER
PERIOD = 3600


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        assert self.headers.get("content-type", "").startswith("text/html"), self.headers
        return self.body.decode("utf-8")


@dataclass
class FaucetServer:
    faucet: Faucet
    clock: FakeClock
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> Response:
        headers = {"Content-Type": content_type} if body is not None else {}
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def fund(self, address: Any) -> Response:
        return self.request("POST", "/api/fund", json.dumps({"address": address}).encode())

    def form(self, address: str) -> Response:
        body = urllib.parse.urlencode({"address": address}).encode()
        return self.request("POST", "/", body, "application/x-www-form-urlencoded")

    def raw(self, method: str, path: str, headers: dict[str, str], body: bytes = b"", timeout: float = 1) -> Response:
        """A request with exactly these headers (no Content-Length computed for us)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


ServerFactory = Callable[..., FaucetServer]


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    """Start faucet servers on free ports; all are shut down at teardown."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(
        sender: TxSender,
        *,
        amount_wei: int = AMOUNT,
        per_address_seconds: int = PERIOD,
        max_requests_per_minute: int = 30,
    ) -> FaucetServer:
        clock = FakeClock()
        policy = FaucetPolicy(amount_wei, per_address_seconds, max_requests_per_minute)
        faucet = Faucet(sender, policy, clock=clock)
        server = make_server(faucet, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        host, port = server.server_address[:2]
        return FaucetServer(faucet, clock, str(host), int(port))

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def faucet(world: World, serve: ServerFactory) -> FaucetServer:
    return serve(world.bank)


def fresh_address() -> str:
    account: LocalAccount = Account.create()
    return account.address


def balance(world: World, address: str) -> int:
    return int(world.w3.eth.get_balance(address))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the page and the JSON endpoint


def test_get_root_returns_the_form(faucet: FaucetServer) -> None:
    resp = faucet.request("GET", "/")
    assert resp.status == 200
    page = resp.text
    assert '<form method="post" action="/">' in page
    assert 'name="address"' in page
    assert "Get 3 CPC" in page


def test_fund_pays_exactly_the_amount_and_returns_the_tx_hash(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    bank_before = balance(world, world.bank.address)
    resp = faucet.fund(address)
    assert resp.status == 200, resp.body
    result = resp.json()
    assert result["address"] == address
    assert result["amount_wei"] == str(AMOUNT)
    assert balance(world, address) == AMOUNT
    tx = world.w3.eth.get_transaction(result["tx_hash"])
    assert tx["to"] == address and tx["value"] == AMOUNT and tx["from"] == world.bank.address
    assert world.w3.eth.get_transaction_receipt(result["tx_hash"])["status"] == 1
    assert balance(world, world.bank.address) < bank_before - AMOUNT  # the amount plus gas


def test_lowercase_address_is_accepted_and_answered_checksummed(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    resp = faucet.fund("  " + address.lower() + " ")
    assert resp.status == 200, resp.body
    assert resp.json()["address"] == address
    assert balance(world, address) == AMOUNT


def test_same_address_within_the_period_is_429_until_it_expires(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    assert faucet.fund(address).status == 200
    faucet.clock.advance(10)

    again = faucet.fund(address)
    assert again.status == 429
    assert "error" in again.json() and address in again.json()["error"]
    retry_after = int(again.headers["retry-after"])
    assert PERIOD - 10 <= retry_after <= PERIOD - 10 + 1
    # The same address spelt in lowercase is the same address.
    assert faucet.fund(address.lower()).status == 429
    assert balance(world, address) == AMOUNT

    faucet.clock.advance(PERIOD - 10 - 1)
    last_second = faucet.fund(address)
    assert last_second.status == 429
    assert int(last_second.headers["retry-after"]) in (1, 2)

    faucet.clock.advance(1)  # exactly one period after the payout
    assert faucet.fund(address).status == 200
    assert balance(world, address) == 2 * AMOUNT


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"address": "0x12"}', id="short-hex"),
        pytest.param(b'{"address": "hello"}', id="not-hex"),
        pytest.param(b'{"address": ""}', id="empty"),
        pytest.param(b'{"address": "   "}', id="blank"),
        pytest.param(b'{"address": 12}', id="number"),
        pytest.param(b'{"address": null}', id="null"),
        pytest.param(b'{"address": ["0x000000000000000000000000000000000000dEaD"]}', id="list"),
        pytest.param(b'{"addr": "0x000000000000000000000000000000000000dEaD"}', id="missing-field"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b"address=0x000000000000000000000000000000000000dEaD", id="not-json"),
        pytest.param(b'{"address": "0x0000', id="truncated-json"),
        pytest.param(b'["0x000000000000000000000000000000000000dEaD"]', id="json-array"),
        pytest.param(b'"0x000000000000000000000000000000000000dEaD"', id="json-string"),
        pytest.param(b"", id="no-body"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_malformed_requests_are_400_json(world: World, faucet: FaucetServer, body: bytes) -> None:
    bank_before = balance(world, world.bank.address)
    resp = faucet.request("POST", "/api/fund", body)
    assert resp.status == 400, resp.body
    error = resp.json()
    assert set(error) == {"error"} and isinstance(error["error"], str) and error["error"]
    assert balance(world, world.bank.address) == bank_before


def test_bad_checksum_is_400_and_names_the_problem(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    # Flip the case of one letter: still mixed case, so the checksum must hold, and it does not.
    index = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    broken = address[:index] + address[index].swapcase() + address[index + 1 :]
    assert broken != address and broken.lower() == address.lower()
    resp = faucet.fund(broken)
    assert resp.status == 400
    assert "checksum" in resp.json()["error"]
    assert balance(world, address) == 0


def test_body_over_the_limit_is_413(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    padding = " " * (MAX_BODY + 100)
    big_json = json.dumps({"address": address, "pad": padding}).encode()
    resp = faucet.request("POST", "/api/fund", big_json)
    assert resp.status == 413
    assert "error" in resp.json()

    big_form = urllib.parse.urlencode({"address": address, "pad": padding}).encode()
    page = faucet.request("POST", "/", big_form, "application/x-www-form-urlencoded")
    assert page.status == 413
    assert "too large" in page.text
    assert balance(world, address) == 0

    # Exactly at the limit is still read.
    exact = json.dumps({"address": address, "pad": ""}).encode()
    exact = exact[:-1] + b" " * (MAX_BODY - len(exact)) + b"}"
    assert len(exact) == MAX_BODY
    assert faucet.request("POST", "/api/fund", exact).status == 200


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_malformed_content_length_is_400(serve: ServerFactory, length: str) -> None:
    """Transport-level: one backend is enough (the in-process chain)."""
    w3 = in_process_chain()
    faucet = serve(TxSender(w3, dev_bank(w3)))
    headers = {"Content-Type": "application/json", "Content-Length": length, "Connection": "close"}
    resp = faucet.raw("POST", "/api/fund", headers)
    assert resp.status == 400
    assert "error" in resp.json()


def test_global_cap_per_minute_is_429(world: World, serve: ServerFactory) -> None:
    faucet = serve(world.bank, max_requests_per_minute=2)
    first, second, third = fresh_address(), fresh_address(), fresh_address()
    assert faucet.fund(first).status == 200
    faucet.clock.advance(1)
    assert faucet.fund(second).status == 200

    busy = faucet.fund(third)
    assert busy.status == 429
    assert "busy" in busy.json()["error"]
    assert int(busy.headers["retry-after"]) > 0
    assert balance(world, third) == 0

    faucet.clock.advance(60)  # the first payout is now more than a minute old
    assert faucet.fund(third).status == 200
    assert balance(world, third) == AMOUNT


def test_the_faucets_own_address_is_refused(world: World, faucet: FaucetServer) -> None:
    bank_before = balance(world, world.bank.address)
    for spelling in (world.bank.address, world.bank.address.lower()):
        resp = faucet.fund(spelling)
        assert resp.status == 400
        assert "own address" in resp.json()["error"]
    assert balance(world, world.bank.address) == bank_before


# ---------------------------------------------------------------- the HTML form


def test_form_post_with_a_valid_address_shows_the_tx_hash(world: World, faucet: FaucetServer) -> None:
    address = fresh_address()
    resp = faucet.form(address)
    assert resp.status == 200
    page = resp.text
    assert address in page
    assert balance(world, address) == AMOUNT
    block = world.w3.eth.get_block("latest", full_transactions=True)
    tx_hashes = ["0x" + bytes(tx["hash"]).hex() for tx in block["transactions"]]  # type: ignore[index, call-overload]
    assert any(tx_hash in page for tx_hash in tx_hashes), page


def test_form_post_with_a_bad_address_is_400_html_with_the_message_escaped(world: World, faucet: FaucetServer) -> None:
    bank_before = balance(world, world.bank.address)
    resp = faucet.form("<script>alert(1)</script>")
    assert resp.status == 400
    page = resp.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "not an address" in page
    assert "<form" in page  # the form is shown again
    assert faucet.form("").status == 400
    assert balance(world, world.bank.address) == bank_before


def test_form_post_rate_limit_is_429_html(faucet: FaucetServer) -> None:
    address = fresh_address()
    assert faucet.form(address).status == 200
    again = faucet.form(address)
    assert again.status == 429
    assert "funded recently" in again.text


# ---------------------------------------------------------------- other endpoints


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/api/fund"), ("POST", "/api/status"),
                                              ("POST", "/api/fund/"), ("GET", "/api")])  # fmt: skip
def test_unknown_path_is_404_json(faucet: FaucetServer, method: str, path: str) -> None:
    body = b'{"address": "0x000000000000000000000000000000000000dEaD"}' if method == "POST" else None
    resp = faucet.request(method, path, body)
    assert resp.status == 404
    assert resp.json() == {"error": "not found"}


def test_status_reports_the_balance_and_chain_id(world: World, faucet: FaucetServer) -> None:
    resp = faucet.request("GET", "/api/status")
    assert resp.status == 200
    status = resp.json()
    assert status["faucet"] == world.bank.address
    assert int(status["balance_wei"]) == balance(world, world.bank.address)
    assert status["chain_id"] == world.w3.eth.chain_id
    assert int(status["amount_wei"]) == AMOUNT
    assert status["per_address_seconds"] == PERIOD

    assert faucet.fund(fresh_address()).status == 200
    after = faucet.request("GET", "/api/status").json()
    assert int(after["balance_wei"]) == balance(world, world.bank.address) < int(status["balance_wei"]) - AMOUNT


# ---------------------------------------------------------------- a failing payment


def test_failed_payment_is_503_and_the_address_can_retry(world: World, serve: ServerFactory) -> None:
    empty: LocalAccount = Account.create()
    faucet = serve(TxSender(world.w3, empty, poll_interval=0.01))
    address = fresh_address()

    resp = faucet.fund(address)
    assert resp.status == 503, resp.body
    assert "payment failed" in resp.json()["error"]
    assert balance(world, address) == 0
    assert faucet.request("GET", "/api/status").json()["balance_wei"] == "0"

    world.bank.send_value(empty.address, 10 * AMOUNT)
    retry = faucet.fund(address)  # same clock instant: it was not marked as funded
    assert retry.status == 200, retry.body
    assert balance(world, address) == AMOUNT
    assert faucet.fund(address).status == 429

"""The faucet ("charge server"): hands out test coins on a local chain, politely.

Owns its HTTP endpoints and rate limits; sends from one local account (keystore + password
file), never through a node-held account. Endpoints: GET / (a form), POST / (form submit),
POST /api/fund with {"address": "0x..."} (JSON), GET /api/status.
"""

from __future__ import annotations

import html
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from web3 import Web3

from cpchain.chain.connection import checksum
from cpchain.chain.errors import ChainError, InvalidAddress
from cpchain.chain.tx import TxSender

log = logging.getLogger(__name__)
MAX_BODY = 4096


class FaucetRefused(Exception):
    """A request the faucet will not serve; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: HTTPStatus, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass
class FaucetPolicy:
    amount_wei: int
    per_address_seconds: int
    max_requests_per_minute: int


class Faucet:
    """The rules: one payout per address per period, a global cap per minute."""

    def __init__(self, sender: TxSender, policy: FaucetPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.sender = sender
        self.policy = policy
        self.clock = clock
        self._last_paid: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def fund(self, raw_address: Any) -> dict[str, Any]:
        if not isinstance(raw_address, str) or not raw_address.strip():
            raise FaucetRefused("give an address to fund", HTTPStatus.BAD_REQUEST)
        try:
            address = checksum(raw_address.strip())
        except InvalidAddress as exc:
            raise FaucetRefused(str(exc), HTTPStatus.BAD_REQUEST) from None
        if address == self.sender.address:
            raise FaucetRefused("that is the faucet's own address", HTTPStatus.BAD_REQUEST)
        with self._lock:
            now = self.clock()
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            if len(self._recent) >= self.policy.max_requests_per_minute:
                raise FaucetRefused("the faucet is busy; try again in a minute", HTTPStatus.TOO_MANY_REQUESTS, 60)
            last = self._last_paid.get(address)
            if last is not None and now - last < self.policy.per_address_seconds:
                wait = math.ceil(self.policy.per_address_seconds - (now - last))
                raise FaucetRefused(
                    f"{address} was funded recently; try again in {wait} s", HTTPStatus.TOO_MANY_REQUESTS, wait
                )
            self._last_paid[address] = now
            self._recent.append(now)
        try:
            receipt = self.sender.send_value(address, self.policy.amount_wei)
        except ChainError as exc:
            with self._lock:
                self._last_paid.pop(address, None)
                if now in self._recent:
                    self._recent.remove(now)
            log.warning("faucet payment to %s failed: %s", address, exc)
            raise FaucetRefused(f"payment failed: {exc}", HTTPStatus.SERVICE_UNAVAILABLE) from None
        log.info("funded %s with %d wei", address, self.policy.amount_wei)
        return {
            "address": address,
            "amount_wei": str(self.policy.amount_wei),
            "tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(),
        }

    def status(self) -> dict[str, Any]:
        w3: Web3 = self.sender.w3
        return {
            "faucet": self.sender.address,
            "balance_wei": str(w3.eth.get_balance(self.sender.address)),
            "amount_wei": str(self.policy.amount_wei),
            "per_address_seconds": self.policy.per_address_seconds,
            "chain_id": w3.eth.chain_id,
        }


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>PDash faucet</title></head>
<body><h1>PDash faucet</h1><p>{message}</p>
<form method="post" action="/"><label>Address <input name="address" size="44" required
pattern="0x[0-9a-fA-F]{{40}}"></label> <button type="submit">Get {amount} CPC</button></form>
</body></html>"""


def make_handler(faucet: Faucet) -> type[BaseHTTPRequestHandler]:
    amount = Web3.from_wei(faucet.policy.amount_wei, "ether")

    class Handler(BaseHTTPRequestHandler):
        server_version = "pdash-faucet"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str, retry_after: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if retry_after:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, payload: dict[str, Any], retry_after: int | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", retry_after)

        def _page(self, status: HTTPStatus, message: str) -> None:
            body = PAGE.format(message=html.escape(message), amount=amount).encode()
            self._send(status, body, "text/html; charset=utf-8")

        def _body(self) -> bytes:
            raw = (self.headers.get("Content-Length") or "0").strip()
            if not raw.isdigit():
                self.close_connection = True
                raise FaucetRefused("bad Content-Length", HTTPStatus.BAD_REQUEST)
            length = int(raw)
            if length > MAX_BODY:
                self.close_connection = True
                raise FaucetRefused("request too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return self.rfile.read(length)

        def do_GET(self) -> None:
            if self.path == "/":
                self._page(HTTPStatus.OK, f"Enter your address to receive {amount} CPC.")
            elif self.path == "/api/status":
                self._json(HTTPStatus.OK, faucet.status())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            is_api = self.path == "/api/fund"
            if not is_api and self.path != "/":
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            try:
                raw = self._body()
                if is_api:
                    try:
                        payload = json.loads(raw or b"null")
                    except ValueError:
                        raise FaucetRefused("body must be JSON", HTTPStatus.BAD_REQUEST) from None
                    if not isinstance(payload, dict):
                        raise FaucetRefused('body must be {"address": "0x..."}', HTTPStatus.BAD_REQUEST)
                    address = payload.get("address")
                else:
                    address = (parse_qs(raw.decode("utf-8", "replace")).get("address") or [""])[0]
                result = faucet.fund(address)
            except FaucetRefused as exc:
                if is_api:
                    self._json(exc.status, {"error": str(exc)}, exc.retry_after)
                else:
                    self._page(exc.status, str(exc))
                return
            if is_api:
                self._json(HTTPStatus.OK, result)
            else:
                self._page(HTTPStatus.OK, f"Sent {amount} CPC to {result['address']} (tx {result['tx_hash']}).")

    return Handler


def make_server(faucet: Faucet, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(faucet))
    server.daemon_threads = True
    return server

"""A typed HTTP client of the market API, for the wallet, the CLI, tests and benchmarks.

Owns the wire format of requests and the mapping of error replies to MarketError; must not
import Django (it runs in the wallet). Login signs the market's challenge with the account
key; the token is kept in memory only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from cpchain.crypto.signing import sign_product
from cpchain.types import ProductDescription

COVER_MAX_BYTES = 2_000_000
"""The most cover image bytes `MarketClient.cover` reads (the market's default upload limit)."""


class MarketError(Exception):
    """The market refused a request or could not be reached; `status` is the HTTP status (0: no reply)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class MarketClient:
    def __init__(self, base_url: str, *, timeout: float = 15.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.token = ""
        self.address = ""

    # -- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            reply = self.session.request(method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise MarketError(f"market at {self.base_url} unreachable: {type(exc).__name__}") from None
        if reply.status_code == 204:
            return None
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            message = error.get("message") or f"HTTP {reply.status_code}"
            raise MarketError(f"market: {message}", status=reply.status_code, code=error.get("code", ""))
        return body

    def get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self.request("GET", path, params=params, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=json, **kw)

    # -- accounts ----------------------------------------------------------------------------
    def login(self, account: LocalAccount) -> dict[str, Any]:
        challenge = self.post("/account/v1/login/", {"address": account.address}, auth=False)
        message = str(challenge["message"])
        if f"address: {account.address}" not in message or "Sign in to the PDash market" not in message:
            raise MarketError("market sent a login challenge that is not for this account")
        signature = "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()
        reply = self.post(
            "/account/v1/confirm/",
            {"address": account.address, "nonce": challenge["nonce"], "signature": signature},
            auth=False,
        )
        self.token = str(reply["token"])
        self.address = account.address
        return dict(reply)

    def logout(self) -> None:
        self.post("/account/v1/logout/")
        self.token = ""

    # -- products ----------------------------------------------------------------------------
    def publish(self, account: LocalAccount, product: ProductDescription) -> dict[str, Any]:
        body = {"product": product.to_dict(), "signature": sign_product(account, product.canonical())}
        return dict(self.post("/product/v1/products/", body))

    def replace(self, account: LocalAccount, market_hash: str, product: ProductDescription) -> dict[str, Any]:
        body = {"product": product.to_dict(), "signature": sign_product(account, product.canonical())}
        return dict(self.request("PUT", f"/product/v1/products/{market_hash}/", json=body))

    def product(self, market_hash: str) -> dict[str, Any]:
        return dict(self.get(f"/product/v1/products/{market_hash}/"))

    def search(self, **params: Any) -> dict[str, Any]:
        return dict(self.get("/product/v1/search/", params={k: v for k, v in params.items() if v not in (None, "")}))

    def cover(self, market_hash: str, *, max_bytes: int = COVER_MAX_BYTES) -> bytes | None:
        """A listing's cover image bytes; None when it has none, or the reply is not an image or
        is larger than `max_bytes` (read no further than that). MarketError if the market is unreachable."""
        url = f"{self.base_url}/product/v1/products/{market_hash}/cover/"
        try:
            with self.session.get(url, timeout=self.timeout, stream=True) as reply:
                kind = reply.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if reply.status_code != 200 or not kind.startswith("image/"):
                    return None
                declared = reply.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return None
                data = bytearray()
                for chunk in reply.iter_content(65536):
                    data += chunk
                    if len(data) > max_bytes:
                        return None
                return bytes(data) or None
        except requests.RequestException as exc:
            raise MarketError(f"market at {self.base_url} unreachable: {type(exc).__name__}") from None

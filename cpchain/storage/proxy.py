"""The `proxy` plugin: a relay proxy's file server stores the seller's encrypted file.

Owns the HTTPS transfers to and from a proxy's /store endpoint. Uploads carry the seller's
signed single-use token (bound to the proxy, the file's size and SHA-256); the locator is
the stored object's URL plus the proxy's certificate fingerprint, and every connection is
pinned to that fingerprint. Downloads (done by the order's proxy) resume interrupted
transfers with Range requests and, when given the operator's FetchPolicy, connect only to
an address the policy allowed. Must not decide who may fetch an order (the proxy does).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

from eth_account.signers.local import LocalAccount

from cpchain.config import Config
from cpchain.crypto.hashing import sha256_file
from cpchain.proxy.protocol import Domain, Endpoint, authorization, upload_token
from cpchain.proxy.tls import PinnedHTTPSConnection, is_fingerprint
from cpchain.storage.base import (
    CHUNK,
    Locator,
    LocatorError,
    ObjectMissing,
    Progress,
    StorageError,
    TransferTooLarge,
    copy_stream,
    register,
    validate,
    write_atomically,
)
from cpchain.storage.policy import FetchPolicy

STORE_PATH = re.compile(r"/store/([0-9a-f]{64})")
log = logging.getLogger(__name__)
TRANSIENT = (OSError, http.client.HTTPException, ssl.SSLError)


@dataclass(frozen=True)
class StoreURL:
    host: str
    port: int
    path: str
    fingerprint: str


def parse_locator(locator: Locator) -> StoreURL:
    """The proxy URL of a `proxy` locator, checked field by field."""
    validate(locator)
    url = urllib.parse.urlsplit(str(locator.params["url"]))
    fingerprint = str(locator.params["fingerprint"])
    if url.scheme != "https" or not url.hostname or url.query or url.fragment or url.username:
        raise LocatorError("proxy locator url must be https://host:port/store/<id>")
    try:
        port = url.port or 443
    except ValueError:
        raise LocatorError("proxy locator url has an invalid port") from None
    if not STORE_PATH.fullmatch(url.path):
        raise LocatorError("proxy locator url must name /store/<64 hex digits>")
    if not is_fingerprint(fingerprint):
        raise LocatorError("proxy locator fingerprint must be 64 lowercase hex digits")
    return StoreURL(url.hostname, port, url.path, fingerprint)


def _error_text(response: http.client.HTTPResponse) -> str:
    body = response.read(4096)
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return response.reason


@register
class ProxyStorage:
    type_name: ClassVar[str] = "proxy"
    fields: ClassVar[dict[str, type]] = {"url": str, "fingerprint": str}

    def __init__(
        self,
        *,
        endpoint: Endpoint | None = None,
        account: LocalAccount | None = None,
        domain: Domain | None = None,
        policy: FetchPolicy | None = None,
        timeout: float = 60.0,
        retries: int = 3,
    ) -> None:
        """Uploads need the proxy `endpoint`, the seller's `account` and the chain `domain`;
        downloads need nothing, or the operator's `policy` when the fetcher is a proxy."""
        self.endpoint = endpoint
        self.account = account
        self.domain = domain
        self.policy = policy
        self.timeout = timeout
        self.retries = retries

    @classmethod
    def for_fetching(cls, config: Config, policy: FetchPolicy) -> ProxyStorage:
        """The plugin as a proxy uses it to fetch a seller's file (policy enforced)."""
        del config
        return cls(policy=policy, timeout=min(policy.timeout, 60.0))

    # ------------------------------------------------------------ upload

    def upload(self, source: Path, progress: Progress | None = None) -> Locator:
        if self.endpoint is None or self.account is None or self.domain is None:
            raise StorageError("uploading to a proxy needs its endpoint, the seller's account and the chain domain")
        size = source.stat().st_size
        token = upload_token(
            self.account, proxy=self.endpoint.address, size=size, sha256=sha256_file(source), domain=self.domain
        )
        conn = PinnedHTTPSConnection(self.endpoint.host, self.endpoint.file_port, self.endpoint.fingerprint,
                                     timeout=self.timeout)  # fmt: skip
        try:
            conn.putrequest("POST", "/store", skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
            conn.putheader("Authorization", authorization(token))
            conn.endheaders()
            try:
                with source.open("rb") as src:
                    sent = 0
                    while chunk := src.read(CHUNK):
                        conn.send(chunk)
                        sent += len(chunk)
                        if progress is not None:
                            progress(sent)
            except OSError:
                pass  # the proxy stopped reading: its answer says why
            try:
                response = conn.getresponse()
            except TRANSIENT as exc:
                raise StorageError(f"upload to proxy {self.endpoint.host}: connection lost ({exc})") from None
            if response.status != 201:
                raise StorageError(f"proxy refused the upload ({response.status}): {_error_text(response)}")
            answer = json.loads(response.read(4096))
        except TRANSIENT as exc:
            raise StorageError(f"upload to proxy {self.endpoint.host}: {exc}") from None
        finally:
            conn.close()
        object_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(object_id, str) or not re.fullmatch(r"[0-9a-f]{64}", object_id):
            raise StorageError("proxy answered the upload without a valid object id")
        return Locator(self.type_name, {"url": self.endpoint.file_url(f"/store/{object_id}"),
                                        "fingerprint": self.endpoint.fingerprint})  # fmt: skip

    # ------------------------------------------------------------ download

    def download(
        self, locator: Locator, dest: Path, progress: Progress | None = None, max_bytes: int | None = None
    ) -> str:
        where = parse_locator(locator)
        address = self.policy.check_host(where.host)[0] if self.policy is not None else None
        return write_atomically(dest, lambda fh: self._fetch(where, address, fh, progress, max_bytes))

    def _fetch(
        self, where: StoreURL, address: str | None, fh: BinaryIO, progress: Progress | None, max_bytes: int | None
    ) -> None:
        """GET into `fh`, resuming with Range after a dropped connection (up to `retries` times)."""
        failures = 0
        while True:
            offset = fh.tell()
            try:
                if self._get(where, address, fh, offset, progress, max_bytes):
                    return
            except TRANSIENT as exc:
                failures += 1
                if failures > self.retries:
                    raise StorageError(f"download from proxy {where.host} failed: {exc}") from None
                log.info("download from proxy %s interrupted (%s); resuming at byte %d", where.host, exc, fh.tell())
                time.sleep(min(0.2 * 2**failures, 5.0))

    def _get(self, where: StoreURL, address: str | None, fh: BinaryIO, offset: int, progress: Progress | None,
             max_bytes: int | None) -> bool:  # fmt: skip
        conn = PinnedHTTPSConnection(where.host, where.port, where.fingerprint, timeout=self.timeout, address=address)
        try:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            conn.request("GET", where.path, headers=headers)
            response = conn.getresponse()
            if response.status == 404:
                raise ObjectMissing(f"the proxy has no object {where.path}")
            if response.status == 416 and offset:
                return True  # nothing left after offset
            if response.status not in ((206,) if offset else (200,)):
                raise StorageError(f"proxy answered {response.status}: {_error_text(response)}")
            length = int(response.getheader("Content-Length") or -1)
            if max_bytes is not None and length >= 0 and offset + length > max_bytes:
                raise TransferTooLarge(f"object of {offset + length} bytes exceeds the limit of {max_bytes}")

            def moved(n: int) -> None:
                if progress is not None:
                    progress(offset + n)

            limit = None if max_bytes is None else max_bytes - offset
            copied = copy_stream(response, fh, moved, limit)  # type: ignore[arg-type]
            if length >= 0 and copied != length:
                raise http.client.IncompleteRead(b"", length - copied)
            return True
        finally:
            conn.close()

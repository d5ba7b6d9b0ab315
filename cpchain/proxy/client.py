"""The proxy client library (used by the wallet and the CLI): synchronous, typed errors.

Owns talking to proxies as a seller or a buyer: sending SELLER_DATA and BUYER_DATA over a
TLS connection pinned to the proxy's published certificate, checking that each reply is
signed by that proxy and answers this very request, checking the seller's key grant, and
downloading with progress, resumption (HTTP Range, also across runs via a `.part` file)
and a final SHA-256 check against the order's data hash. Finding a proxy (tracker list
with on-chain standing, DHT lookup) wraps cpchain.proxy.discovery and .tracker.
Must not hold wallet state or keys beyond the account it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import Escrow
from cpchain.crypto.errors import CryptoError
from cpchain.fsutil import StreamingWriter
from cpchain.proxy.discovery import ProxyRecord, lookup_proxy
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER,
    PURPOSE_BUYER,
    PURPOSE_REPLY,
    PURPOSE_SELLER,
    Domain,
    Endpoint,
    KeyGrant,
    ProtocolError,
    authorization,
    check_key_grant,
    download_token,
    frame,
    make_key_grant,
    open_envelope,
    parse_envelope,
    seal,
)
from cpchain.proxy.tls import PinMismatch, PinnedHTTPSConnection, connect_pinned
from cpchain.proxy.tracker import ProxyStanding, TrackerUnavailable, list_live_proxies, proxies_with_standing
from cpchain.readahead import read_ahead
from cpchain.types import OrderTerms, ProductDescription

log = logging.getLogger(__name__)
READ_BUFFER = 1 << 20
DownloadProgress = Callable[[int, int], None]  # (bytes on disk, total)


class ProxyClientError(Exception):
    """Base of every failure of this library; the message is one line for a person."""


class ProxyUnreachable(ProxyClientError):
    """No connection to the proxy (refused, timed out, closed without a reply)."""


class BadReply(ProxyClientError):
    """The reply is not one the proxy signed for this request, or the certificate is not pinned."""


class ProxyRefused(ProxyClientError):
    """The proxy answered with a refusal; `status` is the protocol's Status value."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{pb.Status.Name(status)}: {message}")  # type: ignore[arg-type]
        self.status = status
        self.reason = message


class DownloadFailed(ProxyClientError):
    """The download could not be completed (after retries)."""


class DownloadCorrupt(DownloadFailed):
    """The downloaded file's SHA-256 is not the order's data hash (the file was discarded)."""


class NoProxyAvailable(ProxyClientError):
    """No live proxy with the required standing was found."""


@dataclass(frozen=True)
class SellerReceipt:
    order_id: int
    data_hash: str
    size: int
    fetched_tx: str


@dataclass(frozen=True)
class BuyerGrant:
    """What the buyer needs from the proxy: the seller's verified key grant and the download."""

    order_id: int
    endpoint: Endpoint
    grant: KeyGrant
    data_hash: str
    size: int
    download_path: str
    download_url: str
    delivered: bool
    delivered_tx: str
    missing: tuple[tuple[int, int], ...] = field(default=())

    @property
    def wrapped_key(self) -> bytes:
        return self.grant.wrapped_key


class ProxyClient:
    """One account talking to proxies of one escrow deployment."""

    def __init__(self, account: LocalAccount, domain: Domain, *, timeout: float = 900.0,
                 max_frame: int = DEFAULT_MAX_FRAME, retries: int = 5, retry_delay: float = 1.0) -> None:  # fmt: skip
        self.account = account
        self.domain = domain
        self.timeout = timeout
        self.max_frame = max_frame
        self.retries = retries
        self.retry_delay = retry_delay

    # ------------------------------------------------------------ control channel

    def call(self, endpoint: Endpoint, request: pb.Request, purpose: str) -> pb.Reply:
        """Send one signed request and return the proxy's verified reply (OK or not)."""
        envelope = seal(self.account, purpose, request.SerializeToString(), self.domain)
        nonce = _nonce_of(envelope)
        raw = self._exchange(endpoint, frame(envelope, self.max_frame))
        try:
            opened = open_envelope(raw, purpose=PURPOSE_REPLY, domain=self.domain, nonce_store=None,
                                   expected_signer=endpoint.address)  # fmt: skip
            reply = pb.Reply()
            reply.ParseFromString(opened.message)
        except (ProtocolError, CryptoError, ValueError) as exc:
            raise BadReply(f"reply from {endpoint.host} is not valid: {exc}") from None
        if reply.request_nonce != nonce:
            raise BadReply("the proxy's reply answers another request")
        return reply

    def _exchange(self, endpoint: Endpoint, data: bytes) -> bytes:
        try:
            sock = connect_pinned(endpoint.host, endpoint.control_port, endpoint.fingerprint, self.timeout)
        except PinMismatch as exc:
            raise BadReply(f"{endpoint.host}:{endpoint.control_port}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ProxyUnreachable(f"cannot reach proxy {endpoint.host}:{endpoint.control_port}: {exc}") from None
        try:
            sock.sendall(data)
            (length,) = HEADER.unpack(_read_exact(sock, HEADER.size))
            if length > max(self.max_frame, 1 << 20):
                raise BadReply(f"reply frame of {length} bytes is too large")
            return _read_exact(sock, length)
        except (OSError, ssl.SSLError, EOFError) as exc:
            raise ProxyUnreachable(f"proxy {endpoint.host} closed the connection without a reply ({exc})") from None
        finally:
            sock.close()

    def _ok(self, endpoint: Endpoint, request: pb.Request, purpose: str) -> pb.Reply:
        reply = self.call(endpoint, request, purpose)
        if reply.status != pb.OK:
            raise ProxyRefused(reply.status, reply.error)
        return reply

    def send_seller_data(self, endpoint: Endpoint, order_id: int, product: ProductDescription, locator_json: str,
                         *, wrapped_key: bytes, buyer_key: bytes) -> SellerReceipt:  # fmt: skip
        """As the order's seller: hand the proxy the product, locator and the key wrapped to the buyer.

        Blocks until the proxy fetched, verified and claimed (or refused); safe to retry.
        """
        grant = make_key_grant(self.account, order_id=order_id, wrapped_key=wrapped_key, buyer_key=buyer_key,
                               domain=self.domain)  # fmt: skip
        data = pb.SellerData(order_id=order_id, product=product.canonical().decode(), locator=locator_json,
                             key_grant=grant)  # fmt: skip
        trade = self._ok(endpoint, pb.Request(seller_data=data), PURPOSE_SELLER).trade
        return SellerReceipt(order_id, trade.data_hash, int(trade.size), trade.fetched_tx)

    def send_buyer_data(self, endpoint: Endpoint, order_id: int, terms: OrderTerms) -> BuyerGrant:
        """As the order's buyer: the seller's key grant (verified against the order) and where to download."""
        if endpoint.address.lower() not in (terms.proxy.lower(), terms.proxy2.lower()):
            raise BadReply(f"{endpoint.address} is not one of the order's proxies")
        reply = self._ok(endpoint, pb.Request(buyer_data=pb.BuyerData(order_id=order_id)), PURPOSE_BUYER)
        trade = reply.trade
        try:
            grant = check_key_grant(trade.key_grant, order_id=order_id, terms=terms, domain=self.domain)
        except ProtocolError as exc:
            raise BadReply(f"the proxy passed on an invalid key grant: {exc}") from None
        if trade.data_hash != terms.data_hash.hex():
            raise BadReply("the proxy reports a data hash other than the order's")
        return BuyerGrant(
            order_id=order_id,
            endpoint=endpoint,
            grant=grant,
            data_hash=trade.data_hash,
            size=int(trade.size),
            download_path=trade.download_path,
            download_url=trade.download_url,
            delivered=trade.delivered,
            delivered_tx=trade.delivered_tx,
            missing=tuple((int(r.start), int(r.end)) for r in trade.missing),
        )

    # ------------------------------------------------------------ download

    def download(self, grant: BuyerGrant, dest: Path, terms: OrderTerms, progress: DownloadProgress | None = None,
                 *, top_up: bool = True, sink: DownloadSink | None = None) -> Path:  # fmt: skip
        """Download the order's ciphertext to `dest`, resuming a `.part` file, and verify it.

        With `top_up`, byte ranges the proxy has no record of sending (after its restart or a
        dropped connection) are fetched again and compared, so it can attest the delivery.
        `sink` (a decryptor) gets every byte as it arrives, so the buyer's next step overlaps
        the download; when the bytes cannot reach it once each and in order from the first
        (a resumed download), it is abandoned and the caller starts it over from `dest`.
        """
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        failures = 0
        # The bytes are hashed as they are written (a second pass over a large file costs as
        # much as the download); only bytes already on disk from an earlier attempt are read back.
        digest, hashed = hashlib.sha256(), 0
        fed = 0  # bytes `sink` was given, in order from the first
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have > grant.size:
                part.unlink()
                have = 0
            if hashed != have:
                digest, hashed = _sha256_of(part) if have else hashlib.sha256(), have
            if sink is not None and have != fed:
                sink.abandon()
                sink = None
            if have == grant.size:
                break
            writer = _HashingWriter(digest, sink)
            try:
                with part.open("ab") as out:
                    writer.out = StreamingWriter(out)
                    self._get_range(grant, have, grant.size, writer, progress)
                hashed = have + writer.written
            except (OSError, ssl.SSLError, http.client.HTTPException, DownloadFailed) as exc:
                hashed = -1  # how much of the interrupted write reached the file: read it back
                if isinstance(exc, DownloadCorrupt):
                    raise
                failures += 1
                if failures > self.retries:
                    raise DownloadFailed(f"download of order {grant.order_id} failed: {exc}") from None
                log.info("download interrupted (%s); resuming", exc)
                time.sleep(self.retry_delay)
            fed = have + writer.written
        if digest.hexdigest() != terms.data_hash.hex():
            part.unlink()
            raise DownloadCorrupt("the downloaded file is not the ciphertext the order committed to")
        if top_up:
            self._top_up(grant, part, terms)
        os.replace(part, dest)
        return dest

    def _get_range(self, grant: BuyerGrant, start: int, end: int, out: Any, progress: DownloadProgress | None,
                   compare: Path | None = None) -> None:  # fmt: skip
        """GET bytes [start, end) into `out` (or compare them with the file `compare`)."""
        endpoint = grant.endpoint
        token = download_token(self.account, order_id=grant.order_id, proxy=endpoint.address, domain=self.domain)
        timeout = min(self.timeout, 60)
        conn = PinnedHTTPSConnection(endpoint.host, endpoint.file_port, endpoint.fingerprint, timeout=timeout)
        try:
            headers = {"Authorization": authorization(token)}
            if start or end < grant.size:
                headers["Range"] = f"bytes={start}-{end - 1}"
            try:
                conn.request("GET", grant.download_path, headers=headers)
            except PinMismatch as exc:
                raise BadReply(f"{endpoint.host}:{endpoint.file_port}: {exc}") from None
            response = conn.getresponse()
            if response.status not in (200, 206):
                raise _http_refusal(response)
            if response.status == 200 and start:
                raise DownloadFailed("the proxy ignored the range request")
            left = end - start

            def read_into(buffer: memoryview) -> int:
                nonlocal left
                if not left:
                    return 0
                n = response.readinto(buffer[: min(len(buffer), left)])
                if not n:
                    raise DownloadFailed(f"connection ended at byte {end - left} of {end}")
                left -= n
                return n

            done = start
            # The next chunk comes off the socket (TLS) while this one is hashed, decrypted and written.
            with (
                compare.open("rb") if compare else contextlib.nullcontext() as local,
                contextlib.closing(read_ahead(read_into, READ_BUFFER)) as chunks,
            ):
                if local is not None:
                    local.seek(start)
                for chunk in chunks:
                    if local is not None:
                        if local.read(len(chunk)) != chunk:
                            raise DownloadCorrupt(f"the proxy served other bytes at offset {done}")
                    else:
                        out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, grant.size)
        except (TimeoutError, ConnectionError) as exc:
            raise DownloadFailed(f"download stalled: {exc}") from None
        finally:
            conn.close()

    def _top_up(self, grant: BuyerGrant, path: Path, terms: OrderTerms, rounds: int = 3) -> None:
        for _ in range(rounds):
            status = self.send_buyer_data(grant.endpoint, grant.order_id, terms)
            if status.delivered or not status.missing:
                return
            for start, end in status.missing:
                log.info("order %d: fetching bytes %d-%d again for the proxy's records", grant.order_id, start, end)
                self._get_range(grant, start, end, None, None, compare=path)

    def wait_delivered(self, grant: BuyerGrant, terms: OrderTerms, timeout: float = 60.0,
                       poll: float = 0.5) -> BuyerGrant:  # fmt: skip
        """Poll the proxy until it reports proxyDelivered confirmed (after a complete download)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.send_buyer_data(grant.endpoint, grant.order_id, terms)
            if status.delivered:
                return status
            if time.monotonic() > deadline:
                raise DownloadFailed(f"the proxy has not attested delivery of order {grant.order_id}")
            time.sleep(poll)


# ---------------------------------------------------------------- finding a proxy


def endpoint_of(record: ProxyRecord) -> Endpoint:
    """An Endpoint from a verified DHT or tracker record."""
    return Endpoint(
        address=record.address,
        host=record.host,
        control_port=int(record.ports["control"]),
        file_port=int(record.ports["file"]),
        fingerprint=record.tls_fingerprint,
    )


def resolve(address: str, bootstrap: Sequence[tuple[str, int]], domain: Domain, *, host: str = "127.0.0.1",
            timeout: float = 10.0) -> Endpoint:  # fmt: skip
    """Look a proxy's signed record up in the DHT (an ephemeral node; any number may run at once)."""
    record = asyncio.run(lookup_proxy(address, list(bootstrap), chain_id=domain.chain_id, contract=domain.contract,
                                      host=host, timeout=timeout))  # fmt: skip
    if record is None:
        raise ProxyUnreachable(f"no valid DHT record for proxy {address}")
    return endpoint_of(record)


def pick_proxy(tracker: tuple[str, int], escrow: Escrow, *, exclude: Sequence[str] = (),
               timeout: float = 5.0) -> ProxyStanding:  # fmt: skip
    """The live proxy with the best on-chain standing (eligible, credit, ratings, deposit).

    NoProxyAvailable if the tracker lists none that may be named in a new order.
    """
    try:
        records = asyncio.run(list_live_proxies(tracker, chain_id=escrow.deployment.chain_id,
                                                contract=escrow.address, timeout=timeout))  # fmt: skip
    except TrackerUnavailable as exc:
        raise ProxyUnreachable(f"tracker {tracker[0]}:{tracker[1]}: {exc}") from None
    skip = {a.lower() for a in exclude}
    for standing in proxies_with_standing(records, escrow):
        if standing.eligible and standing.address.lower() not in skip:
            return standing
    raise NoProxyAvailable("no live proxy with a bonded deposit is registered with the tracker")


# ---------------------------------------------------------------- helpers


def _nonce_of(envelope: bytes) -> str:
    return str(parse_envelope(envelope)[1].payload["nonce"])


def _read_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise EOFError("connection closed")
        chunks += chunk
    return bytes(chunks)


def _sha256_of(path: Path) -> Any:
    """A running SHA-256 of the file's bytes, to be continued with the rest of its content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_BUFFER):
            digest.update(chunk)
    return digest


class DownloadSink(Protocol):
    """What follows a download's bytes as they arrive (the buyer's decryptor)."""

    def write(self, data: memoryview, /) -> object: ...

    def abandon(self) -> None:
        """The bytes will not all arrive once each and in order: stop following."""


class _HashingWriter:
    """Writes to `out` and feeds the same bytes to `digest` and `sink`, counting them."""

    def __init__(self, digest: Any, sink: DownloadSink | None = None) -> None:
        self.digest = digest
        self.sink = sink
        self.out: Any = None
        self.written = 0

    def write(self, data: memoryview) -> None:
        self.out.write(data)
        self.digest.update(data)
        if self.sink is not None:
            self.sink.write(data)
        self.written += len(data)


def _http_refusal(response: http.client.HTTPResponse) -> ProxyClientError:
    body = response.read(4096)
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = response.reason
    if response.status >= 500:
        return DownloadFailed(f"proxy error {response.status}: {message}")
    return ProxyRefused(_STATUS_OF_HTTP.get(response.status, pb.MALFORMED), f"HTTP {response.status}: {message}")


_STATUS_OF_HTTP = {401: pb.BAD_SIGNATURE, 403: pb.WRONG_SIGNER, 404: pb.UNKNOWN_ORDER, 409: pb.NOT_READY,
                   410: pb.WRONG_STATE, 416: pb.MALFORMED}  # fmt: skip

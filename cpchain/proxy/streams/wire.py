"""What stream clients and the proxy must encode identically: frames, tokens, requests, locators.

Owns the binary framing of records on WebSocket messages, the signed tokens (publish,
subscribe) and signed requests (open, end, bind) with their purposes and bodies, channel
ids and topics, the channel commitment that a stream product's data hash holds, and the
stream locator. Pure functions and data: no sockets, no Kafka, no Twisted, no chain.

Framing (integers big-endian):

    record          = seq (u64) || sealed           (cpchain.proxy.streams.records)
    publish frame   = { length (u32) || record }*    client -> proxy, one WS message or REST body
    chunk           = a publish frame of consecutive records: one Kafka message
    delivery frame  = { position (u64) || length (u32) || record }*   proxy -> subscriber

A record's position is (Kafka offset of its chunk) << 20 | (its index in the chunk):
increasing along the channel, not dense. Subscribers resume from a position.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address

from cpchain.crypto.errors import VerificationFailed
from cpchain.crypto.signing import VerifiedPayload, sign_payload, verify_payload
from cpchain.proxy.protocol import Domain, ProtocolError, authorization, read_token
from cpchain.proxy.streams.model import Code, StreamRefused

PURPOSE_OPEN = "pdash/stream/open/v1"
PURPOSE_END = "pdash/stream/end/v1"
PURPOSE_BIND = "pdash/stream/bind/v1"
PURPOSE_PUBLISH = "pdash/stream/publish/v1"
PURPOSE_SUBSCRIBE = "pdash/stream/subscribe/v1"

REQUEST_TTL = 300
TOKEN_TTL = 900
STORAGE_TYPE = "stream"
_COMMITMENT_LABEL = b"pdash/stream-channel/v1\x00"
_CHANNEL_ID = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"[0-9]{1,20}")

SEQ = struct.Struct(">Q")
POSITION_SHIFT = 20
MAX_CHUNK_RECORDS = 1 << POSITION_SHIFT
_LEN = struct.Struct(">I")
_DELIVERY_HEAD = struct.Struct(">QI")


class WireError(ValueError):
    """Bytes that are not a well-formed frame or record."""


# ---------------------------------------------------------------- channels


def new_channel_id() -> str:
    """128 random bits: not guessable, unlike the original's uuid1 paths."""
    return secrets.token_hex(16)


def is_channel_id(value: object) -> bool:
    return isinstance(value, str) and _CHANNEL_ID.fullmatch(value) is not None


def channel_commitment(proxy: str, channel_id: str) -> bytes:
    """The data hash of a stream product: SHA-256 over a label, the hosting proxy and the channel id.

    The order commits to it on chain (dataHash), so an order names exactly one channel on one
    proxy, and proxyDelivered's deliverHash for a stream order is this value.
    """
    if not is_channel_id(channel_id):
        raise WireError("channel id must be 32 lowercase hex characters")
    return hashlib.sha256(_COMMITMENT_LABEL + checksum(proxy).encode() + b"\x00" + channel_id.encode()).digest()


def checksum(address: str) -> str:
    if not isinstance(address, str) or not is_hex_address(address):
        raise WireError(f"{address!r} is not an address")
    return str(to_checksum_address(address))


# ---------------------------------------------------------------- records and frames


def position(kafka_offset: int, index: int) -> int:
    return (kafka_offset << POSITION_SHIFT) | index


def split_position(value: int) -> tuple[int, int]:
    """(Kafka offset of the chunk, index of the record in it)."""
    return value >> POSITION_SHIFT, value & (MAX_CHUNK_RECORDS - 1)


def record_seq(record: bytes) -> int:
    if len(record) < SEQ.size:
        raise WireError("record shorter than its sequence number")
    return int(SEQ.unpack_from(record)[0])


def pack_records(records: Iterable[bytes]) -> bytes:
    parts: list[bytes] = []
    for record in records:
        parts.append(_LEN.pack(len(record)))
        parts.append(record)
    return b"".join(parts)


def unpack_records(frame: bytes, max_record: int) -> list[bytes]:
    """The records of a publish frame; WireError for a truncated frame or an oversized record."""
    records: list[bytes] = []
    view = memoryview(frame)
    pos, end = 0, len(frame)
    while pos < end:
        if end - pos < _LEN.size:
            raise WireError("truncated record length")
        (length,) = _LEN.unpack_from(view, pos)
        pos += _LEN.size
        if length > max_record:
            raise WireError(f"record of {length} bytes exceeds the limit of {max_record}")
        if length < SEQ.size or end - pos < length:
            raise WireError("truncated or empty record")
        records.append(bytes(view[pos : pos + length]))
        pos += length
        if len(records) >= MAX_CHUNK_RECORDS:
            raise WireError(f"more than {MAX_CHUNK_RECORDS - 1} records in one frame")
    return records


def chunk_records(records: list[bytes], max_bytes: int) -> list[list[bytes]]:
    """Consecutive records grouped into chunks of at most `max_bytes` framed bytes (one record
    larger than that gets a chunk of its own)."""
    chunks: list[list[bytes]] = []
    size = 0
    for record in records:
        framed = _LEN.size + len(record)
        if not chunks or size + framed > max_bytes or len(chunks[-1]) >= MAX_CHUNK_RECORDS - 1:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += framed
    return chunks


def pack_delivery(items: Iterable[tuple[int, bytes]]) -> bytes:
    parts: list[bytes] = []
    for offset, record in items:
        parts.append(_DELIVERY_HEAD.pack(offset, len(record)))
        parts.append(record)
    return b"".join(parts)


def unpack_delivery(frame: bytes) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    view = memoryview(frame)
    pos, end = 0, len(frame)
    while pos < end:
        if end - pos < _DELIVERY_HEAD.size:
            raise WireError("truncated delivery header")
        offset, length = _DELIVERY_HEAD.unpack_from(view, pos)
        pos += _DELIVERY_HEAD.size
        if end - pos < length:
            raise WireError("truncated delivered record")
        items.append((int(offset), bytes(view[pos : pos + length])))
        pos += length
    return items


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise WireError("expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise WireError("invalid base64") from None


# ---------------------------------------------------------------- tokens and signed requests


def encode_token(account: LocalAccount, purpose: str, body: Mapping[str, Any], domain: Domain, ttl: int) -> str:
    """A bearer token: the signed payload, base64url (the file server's token encoding)."""
    signed = sign_payload(account, purpose, body, chain_id=domain.chain_id, contract=domain.contract, ttl=ttl)
    return base64.urlsafe_b64encode(signed.to_json().encode()).rstrip(b"=").decode()


def publish_token(account: LocalAccount, *, channel: str, proxy: str, domain: Domain, ttl: int = TOKEN_TTL) -> str:
    """The seller's token for publishing into one channel on one proxy (reusable until it expires)."""
    return encode_token(account, PURPOSE_PUBLISH, {"channel": channel, "proxy": checksum(proxy)}, domain, ttl)


def subscribe_token(account: LocalAccount, *, channel: str, order_id: int, proxy: str, domain: Domain,
                    ttl: int = TOKEN_TTL) -> str:  # fmt: skip
    """The buyer's token for reading one channel under one paid order (reusable until it expires)."""
    body = {"channel": channel, "order_id": str(order_id), "proxy": checksum(proxy)}
    return encode_token(account, PURPOSE_SUBSCRIBE, body, domain, ttl)


def auth_header(token: str) -> str:
    return authorization(token)


def _signed_request(account: LocalAccount, purpose: str, body: Mapping[str, Any], domain: Domain) -> bytes:
    signed = sign_payload(account, purpose, body, chain_id=domain.chain_id, contract=domain.contract, ttl=REQUEST_TTL)
    return signed.to_json().encode()


def open_request(account: LocalAccount, *, proxy: str, domain: Domain, retention: int = 0) -> bytes:
    """A seller's request for a new channel (retention 0: the proxy's default)."""
    return _signed_request(account, PURPOSE_OPEN, {"proxy": checksum(proxy), "retention": str(retention)}, domain)


def end_request(account: LocalAccount, *, channel: str, proxy: str, domain: Domain) -> bytes:
    return _signed_request(account, PURPOSE_END, {"channel": channel, "proxy": checksum(proxy)}, domain)


def bind_request(account: LocalAccount, *, channel: str, order_id: int, proxy: str, product: str, key_grant: str,
                 domain: Domain) -> bytes:  # fmt: skip
    """The seller's request binding a paid stream order to its channel (the stream SELLER_DATA)."""
    body = {"channel": channel, "order_id": str(order_id), "proxy": checksum(proxy), "product": product,
            "key_grant": key_grant}  # fmt: skip
    return _signed_request(account, PURPOSE_BIND, body, domain)


def verify_request(raw: bytes, *, purpose: str, domain: Domain, max_ttl: int, now: Any) -> VerifiedPayload:
    """A signed request body, verified (signature, purpose, domain, expiry); StreamRefused otherwise.

    No nonce store: every request is idempotent (a retry returns the first answer).
    """
    try:
        return verify_payload(raw, purpose=purpose, chain_id=domain.chain_id, contract=domain.contract,
                              nonce_store=None, max_ttl=max_ttl, now=now)  # fmt: skip
    except VerificationFailed as exc:
        raise StreamRefused(Code.UNAUTHENTICATED, f"request: {exc}") from None


def verify_token(header: str | None, *, purpose: str, domain: Domain, max_ttl: int, now: Any) -> VerifiedPayload:
    """A token from an Authorization header, verified; StreamRefused(UNAUTHENTICATED) otherwise."""
    try:
        return read_token(header, purpose=purpose, domain=domain, nonce_store=None, max_ttl=max_ttl, now=now)
    except ProtocolError as exc:
        raise StreamRefused(Code.UNAUTHENTICATED, str(exc)) from None


def body_channel(body: Mapping[str, Any]) -> str:
    value = body.get("channel")
    if not is_channel_id(value):
        raise StreamRefused(Code.MALFORMED, "field 'channel' must be a channel id")
    return str(value)


def body_number(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise StreamRefused(Code.MALFORMED, f"field {name!r} must be a decimal string")
    return int(value)


def body_text(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise StreamRefused(Code.MALFORMED, f"field {name!r} must be a string of at most {limit} characters")
    return value


def body_proxy(body: Mapping[str, Any]) -> str:
    value = body.get("proxy")
    if not isinstance(value, str) or not is_hex_address(value):
        raise StreamRefused(Code.MALFORMED, "field 'proxy' must be an address")
    return str(to_checksum_address(value))


# ---------------------------------------------------------------- endpoints and locators


@dataclass(frozen=True)
class StreamEndpoint:
    """How to reach one proxy's stream ports; the certificate is pinned by its SHA-256."""

    proxy: str
    host: str
    ws_port: int
    http_port: int
    fingerprint: str

    def ws_url(self, path: str) -> str:
        return f"wss://{_url_host(self.host)}:{self.ws_port}{path}"

    def http_url(self, path: str) -> str:
        return f"https://{_url_host(self.host)}:{self.http_port}{path}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class StreamLocator:
    """Where a stream product lives: a channel on a proxy (type "stream", like a storage locator)."""

    endpoint: StreamEndpoint
    channel: str

    def to_dict(self) -> dict[str, object]:
        e = self.endpoint
        return {"type": STORAGE_TYPE, "proxy": e.proxy, "host": e.host, "ws_port": e.ws_port,
                "http_port": e.http_port, "fingerprint": e.fingerprint, "channel": self.channel}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamLocator:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise WireError("stream locator is not JSON") from None
        if not isinstance(data, dict) or set(data) != {"type", "proxy", "host", "ws_port", "http_port",
                                                       "fingerprint", "channel"}:  # fmt: skip
            raise WireError("stream locator must have exactly type, proxy, host, ports, fingerprint and channel")
        if data["type"] != STORAGE_TYPE or not is_channel_id(data["channel"]):
            raise WireError("not a stream locator")
        ports = (data["ws_port"], data["http_port"])
        if not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
            raise WireError("stream locator ports must be TCP ports")
        host, fingerprint = data["host"], data["fingerprint"]
        if not isinstance(host, str) or not host or len(host) > 253:
            raise WireError("stream locator host must be a host name or address")
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise WireError("stream locator fingerprint must be 64 hex characters")
        endpoint = StreamEndpoint(checksum(data["proxy"]), host, ports[0], ports[1], fingerprint)
        return cls(endpoint, data["channel"])

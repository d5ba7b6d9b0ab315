"""The proxy's wire formats: frames, signed envelopes, key grants and bearer tokens.

Owns everything a proxy and its clients must encode identically: the 4-byte length framing
of the control channel, the signed Envelope around each protobuf message, the seller's
signed key grant the buyer verifies, and the download/upload tokens of the file server.
Pure functions and data only: no sockets, no chain, no Twisted (the client library, the
storage plugin and the server all import it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address
from google.protobuf.message import DecodeError

from cpchain.crypto.errors import (
    ExpiredMessage,
    MalformedMessage,
    ReplayedMessage,
    VerificationFailed,
    WrongDomain,
    WrongPurpose,
    WrongSigner,
)
from cpchain.crypto.signing import (
    NonceStore,
    SignedMessage,
    VerifiedPayload,
    recover_signer,
    sign_payload,
    verify_payload,
)
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.types import OrderTerms

PURPOSE_SELLER = "pdash/proxy/seller-data/v1"
PURPOSE_BUYER = "pdash/proxy/buyer-data/v1"
PURPOSE_REPLY = "pdash/proxy/reply/v1"
PURPOSE_DOWNLOAD = "pdash/proxy/download/v1"
PURPOSE_UPLOAD = "pdash/proxy/upload/v1"
PURPOSE_KEY_GRANT = "pdash/key-grant/v1"

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 256 * 1024
REQUEST_TTL = 300
TOKEN_TTL = 900
KEY_GRANT_TTL = 90 * 86400  # informational: a grant is bound to one order and buyer key instead
TOKEN_SCHEME = "PDash-Token"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class ProtocolError(Exception):
    """A frame, envelope, grant or token that must be refused; `status` is the reply code."""

    status: pb.Status = pb.MALFORMED

    def __init__(self, message: str, status: pb.Status | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class FrameTooLarge(ProtocolError):
    status = pb.FRAME_TOO_LARGE


@dataclass(frozen=True)
class Domain:
    """Which chain and escrow deployment every signature of this protocol is bound to."""

    chain_id: int
    contract: str


@dataclass(frozen=True)
class Endpoint:
    """How to reach one proxy: its account, host, TLS ports and pinned certificate."""

    address: str
    host: str
    control_port: int
    file_port: int
    fingerprint: str  # SHA-256 hex of the DER certificate

    def file_url(self, path: str) -> str:
        return f"https://{_url_host(self.host)}:{self.file_port}{path}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------- framing


def frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Length-prefix one message; FrameTooLarge if it exceeds what the peer accepts."""
    if len(payload) > max_frame:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds the limit of {max_frame}")
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Incremental decoder: feed received bytes, get whole frames; never buffers beyond the limit."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Frames completed by `data`; FrameTooLarge as soon as a header announces too much."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self.max_frame:
                self._buffer.clear()
                raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {self.max_frame}")
            if len(self._buffer) < HEADER.size + length:
                break
            frames.append(bytes(self._buffer[HEADER.size : HEADER.size + length]))
            del self._buffer[: HEADER.size + length]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


# ---------------------------------------------------------------- signed envelopes


def seal(account: LocalAccount, purpose: str, message: bytes, domain: Domain, *, ttl: int = REQUEST_TTL) -> bytes:
    """A serialized Envelope: `message` plus the account's signature over its SHA-256."""
    signed = sign_payload(
        account,
        purpose,
        {"message_sha256": hashlib.sha256(message).hexdigest()},
        chain_id=domain.chain_id,
        contract=domain.contract,
        ttl=ttl,
    )
    return bytes(pb.Envelope(message=message, signed=signed.to_json()).SerializeToString())


@dataclass(frozen=True)
class Opened:
    """An envelope whose signature, purpose, domain, expiry and nonce were verified."""

    message: bytes
    signer: str
    nonce: str


def _status_of(exc: VerificationFailed) -> pb.Status:
    if isinstance(exc, ExpiredMessage):
        return pb.EXPIRED
    if isinstance(exc, ReplayedMessage):
        return pb.REPLAYED
    if isinstance(exc, (WrongSigner, WrongPurpose, WrongDomain)):
        return pb.BAD_SIGNATURE
    return pb.MALFORMED


def parse_envelope(raw: bytes) -> tuple[bytes, SignedMessage]:
    """The message bytes and the structurally valid signed payload (not yet verified)."""
    envelope = pb.Envelope()
    try:
        envelope.ParseFromString(raw)
    except DecodeError:
        raise ProtocolError("frame is not a protobuf Envelope") from None
    try:
        signed = SignedMessage.from_json(envelope.signed)
    except MalformedMessage as exc:
        raise ProtocolError(f"envelope signature: {exc}") from None
    return envelope.message, signed


def open_envelope(
    raw: bytes,
    *,
    purpose: str,
    domain: Domain,
    nonce_store: NonceStore | None,
    expected_signer: str | Iterable[str] | None = None,
    now: Any = time.time,
) -> Opened:
    """Verify an envelope; ProtocolError with the matching status on any failure.

    The message hash is checked before the nonce is recorded, so a tampered message does
    not use up the nonce of the genuine one.
    """
    message, signed = parse_envelope(raw)
    body = signed.payload["body"]
    if set(body) != {"message_sha256"} or body["message_sha256"] != hashlib.sha256(message).hexdigest():
        raise ProtocolError("the signature does not cover this message", pb.BAD_SIGNATURE)
    try:
        verified = verify_payload(
            signed,
            purpose=purpose,
            chain_id=domain.chain_id,
            contract=domain.contract,
            expected_signer=expected_signer,
            nonce_store=nonce_store,
            now=now,
        )
    except VerificationFailed as exc:
        raise ProtocolError(str(exc), _status_of(exc)) from None
    return Opened(message=message, signer=verified.signer, nonce=verified.nonce)


def request_purpose(request: pb.Request) -> str:
    kind = request.WhichOneof("body")
    if kind == "seller_data":
        return PURPOSE_SELLER
    if kind == "buyer_data":
        return PURPOSE_BUYER
    raise ProtocolError("request carries neither seller_data nor buyer_data")


def parse_request(raw: bytes) -> tuple[pb.Request, SignedMessage]:
    """The request inside an envelope (before verification, to learn its purpose)."""
    message, signed = parse_envelope(raw)
    request = pb.Request()
    try:
        request.ParseFromString(message)
    except DecodeError:
        raise ProtocolError("envelope does not hold a Request") from None
    request_purpose(request)
    return request, signed


def order_id_of(request: pb.Request) -> int:
    order_id = int(request.seller_data.order_id if request.HasField("seller_data") else request.buyer_data.order_id)
    if order_id <= 0:
        raise ProtocolError("order_id must be positive")
    return order_id


# ---------------------------------------------------------------- key grants


@dataclass(frozen=True)
class KeyGrant:
    """The data key wrapped to the buyer's X25519 key, as signed by the seller."""

    order_id: int
    wrapped_key: bytes
    buyer_key: bytes
    seller: str
    text: str = field(repr=False)


def make_key_grant(
    account: LocalAccount, *, order_id: int, wrapped_key: bytes, buyer_key: bytes, domain: Domain
) -> str:
    """The seller's signed statement "for order N, to buyer key K, this wrapped key"."""
    body = {"order_id": str(order_id), "wrapped_key": wrapped_key.hex(), "buyer_key": buyer_key.hex()}
    signed = sign_payload(
        account, PURPOSE_KEY_GRANT, body, chain_id=domain.chain_id, contract=domain.contract, ttl=KEY_GRANT_TTL
    )
    return signed.to_json()


def check_key_grant(text: str, *, order_id: int, terms: OrderTerms, domain: Domain) -> KeyGrant:
    """The grant if the order's seller signed it for this order and buyer key.

    Expiry is not checked: the grant is bound to one order and one buyer key, and the buyer
    verifies it after the seller's request expired. ProtocolError(BAD_KEY_GRANT) otherwise.
    """

    def bad(why: str) -> ProtocolError:
        return ProtocolError(f"key grant: {why}", pb.BAD_KEY_GRANT)

    try:
        signed = SignedMessage.from_json(text)
        signer = recover_signer(signed.text, signed.signature)
    except MalformedMessage as exc:
        raise bad(str(exc)) from None
    payload = signed.payload
    if signer != payload["signer"] or signer.lower() != terms.seller.lower():
        raise bad("not signed by the order's seller")
    if payload["purpose"] != PURPOSE_KEY_GRANT:
        raise bad("signed for another purpose")
    if payload["chain_id"] != domain.chain_id or payload["contract"] != to_checksum_address(domain.contract):
        raise bad("signed for another chain or contract")
    body = payload["body"]
    if set(body) != {"order_id", "wrapped_key", "buyer_key"}:
        raise bad("unexpected fields")
    if body["order_id"] != str(order_id):
        raise bad("made for another order")
    if body["buyer_key"] != terms.buyer_key.hex():
        raise bad("made for another buyer key")
    wrapped = body["wrapped_key"]
    if not isinstance(wrapped, str) or not _HEX.fullmatch(wrapped) or not 48 <= len(wrapped) // 2 <= 1024:
        raise bad("wrapped key is malformed")
    return KeyGrant(order_id, bytes.fromhex(wrapped), terms.buyer_key, signer, text)


# ---------------------------------------------------------------- file server tokens


def _encode_token(signed: SignedMessage) -> str:
    return base64.urlsafe_b64encode(signed.to_json().encode()).rstrip(b"=").decode()


def authorization(token: str) -> str:
    """The Authorization header value carrying a token."""
    return f"{TOKEN_SCHEME} {token}"


def download_token(account: LocalAccount, *, order_id: int, proxy: str, domain: Domain, ttl: int = TOKEN_TTL) -> str:
    """A buyer's token for one order's download from one proxy (reusable until it expires, for resumes)."""
    body = {"order_id": str(order_id), "proxy": to_checksum_address(proxy)}
    return _encode_token(
        sign_payload(account, PURPOSE_DOWNLOAD, body, chain_id=domain.chain_id, contract=domain.contract, ttl=ttl)
    )


def upload_token(
    account: LocalAccount, *, proxy: str, size: int, sha256: str, domain: Domain, ttl: int = TOKEN_TTL
) -> str:
    """A seller's single-use token for storing one file of this size and hash on one proxy."""
    body = {"proxy": to_checksum_address(proxy), "size": str(size), "sha256": sha256}
    return _encode_token(
        sign_payload(account, PURPOSE_UPLOAD, body, chain_id=domain.chain_id, contract=domain.contract, ttl=ttl)
    )


def read_token(
    header: str | None,
    *,
    purpose: str,
    domain: Domain,
    nonce_store: NonceStore | None,
    max_ttl: int = 3600,
    now: Any = time.time,
) -> VerifiedPayload:
    """Verify a token from an Authorization header; ProtocolError naming what is wrong."""
    if not header:
        raise ProtocolError("a signed token is required", pb.BAD_SIGNATURE)
    scheme, _, value = header.strip().partition(" ")
    if scheme != TOKEN_SCHEME or not value or len(value) > 8192:
        raise ProtocolError(f"authorization must be '{TOKEN_SCHEME} <token>'")
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ProtocolError("token is not base64") from None
    try:
        return verify_payload(
            text,
            purpose=purpose,
            chain_id=domain.chain_id,
            contract=domain.contract,
            nonce_store=nonce_store,
            max_ttl=max_ttl,
            now=now,
        )
    except VerificationFailed as exc:
        raise ProtocolError(f"token: {exc}", _status_of(exc)) from None


def body_int(body: Mapping[str, Any], name: str) -> int:
    """A non-negative integer carried as a decimal string in a signed body."""
    value = body.get(name)
    if not isinstance(value, str) or not value.isdigit() or len(value) > 30:
        raise ProtocolError(f"token field {name!r} must be a decimal string")
    return int(value)


def body_address(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not is_hex_address(value):
        raise ProtocolError(f"token field {name!r} must be an address")
    return str(to_checksum_address(value))


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None

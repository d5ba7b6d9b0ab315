"""EIP-191 (personal_sign) signed payloads with domain, expiry and replay protection.

Owns the canonical text that gets signed, the wire format of signed messages,
their verification and the nonce stores that stop replays. Must not touch
keystores (callers pass an unlocked account), the network or the chain.

The signed text is canonical JSON (sorted keys, compact, ASCII) of::

    {"body", "chain_id", "contract", "expires", "nonce", "purpose", "signer"}

Purpose, chain id and contract stop a signature made for one protocol step,
network or deployment from being accepted by another; ``expires`` plus the
per-signer nonce store make each message usable once, for a short time.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import (
    is_checksum_address,
    is_hex_address,
    to_checksum_address,
)
from eth_utils.exceptions import ValidationError

from ._json import loads_limited
from .errors import (
    ExpiredMessage,
    InvalidArgument,
    InvalidPayload,
    MalformedMessage,
    ReplayedMessage,
    WrongDomain,
    WrongPurpose,
    WrongSigner,
)

__all__ = [
    "DEFAULT_MAX_TTL",
    "DEFAULT_TTL",
    "MAX_MESSAGE_BYTES",
    "MemoryNonceStore",
    "NonceStore",
    "SignedMessage",
    "SqliteNonceStore",
    "VerifiedPayload",
    "canonical_json",
    "recover_signer",
    "sign_payload",
    "verify_payload",
]

DEFAULT_TTL = 300
DEFAULT_MAX_TTL = 3600
MAX_MESSAGE_BYTES = 1 << 20
_MAX_DEPTH = 32
_MAX_LABEL = 128
_PAYLOAD_FIELDS = frozenset({"purpose", "chain_id", "contract", "nonce", "expires", "signer", "body"})
_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
_NONCE_RE = re.compile(r"[0-9A-Za-z_\-]{1,128}")

Clock = Callable[[], float]


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, compact, ASCII): the exact text that is signed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _normalise_json(value: Any, depth: int = 0) -> Any:
    """Return a plain-JSON copy of ``value`` or raise ``TypeError``/``ValueError``.

    Floats are refused because their textual form differs between languages,
    which would make signatures fail to verify outside Python.
    """
    if depth > _MAX_DEPTH:
        raise ValueError("body nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("body keys must be strings")
            out[key] = _normalise_json(item, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise_json(item, depth + 1) for item in value]
    raise TypeError(f"unsupported body value of type {type(value).__name__} (floats are not allowed)")


@dataclass(frozen=True)
class SignedMessage:
    """A payload plus its EIP-191 signature, as sent over the wire."""

    payload: dict[str, Any] = field(hash=False)
    signature: str

    @property
    def text(self) -> str:
        """The exact string that was signed (canonical JSON of ``payload``)."""
        return canonical_json(self.payload)

    def to_json(self) -> str:
        """Serialise for transport; :meth:`from_json` is the inverse."""
        return canonical_json({"payload": self.payload, "signature": self.signature})

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> SignedMessage:
        """Parse and structurally validate a message; raise :class:`MalformedMessage` if invalid.

        Only the shape is checked here; :func:`verify_payload` checks the signature.
        """
        if isinstance(data, (str, bytes)):
            if len(data) > MAX_MESSAGE_BYTES:
                raise MalformedMessage("signed message is too large")
            try:
                data = loads_limited(data)
            except ValueError:
                raise MalformedMessage("signed message is not valid JSON") from None
        if not isinstance(data, Mapping) or set(data) != {"payload", "signature"}:
            raise MalformedMessage("signed message must be an object with payload and signature")
        return cls(
            payload=_validate_payload(data["payload"]),
            signature=_validate_signature(data["signature"]),
        )


@dataclass(frozen=True)
class VerifiedPayload:
    """What a verifier may trust after :func:`verify_payload` succeeded."""

    signer: str
    body: dict[str, Any] = field(hash=False)
    nonce: str
    expires: int
    purpose: str


def _validate_signature(signature: object) -> str:
    if not isinstance(signature, str) or not _SIGNATURE_RE.fullmatch(signature):
        raise MalformedMessage("signature must be 0x followed by 65 hex bytes")
    return signature


def _is_plain_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_payload(payload: object) -> dict[str, Any]:
    if not isinstance(payload, Mapping) or set(payload) != _PAYLOAD_FIELDS:
        raise MalformedMessage(f"payload must have exactly the fields {sorted(_PAYLOAD_FIELDS)}")
    purpose = payload["purpose"]
    if not isinstance(purpose, str) or not 0 < len(purpose) <= _MAX_LABEL:
        raise MalformedMessage("purpose must be a non-empty string")
    chain_id = payload["chain_id"]
    if not _is_plain_int(chain_id) or chain_id <= 0:
        raise MalformedMessage("chain_id must be a positive integer")
    for name in ("contract", "signer"):
        value = payload[name]
        if not isinstance(value, str) or not is_checksum_address(value):
            raise MalformedMessage(f"{name} must be a checksummed address")
    nonce = payload["nonce"]
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise MalformedMessage("nonce must be 1..128 characters of [0-9A-Za-z_-]")
    expires = payload["expires"]
    if not _is_plain_int(expires) or expires < 0:
        raise MalformedMessage("expires must be a non-negative integer")
    body = payload["body"]
    if not isinstance(body, Mapping):
        raise MalformedMessage("body must be an object")
    try:
        normalised = _normalise_json(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"body is not plain JSON: {exc}") from None
    return {
        "purpose": purpose,
        "chain_id": chain_id,
        "contract": payload["contract"],
        "nonce": nonce,
        "expires": expires,
        "signer": payload["signer"],
        "body": normalised,
    }


def _checksum(address: object, what: str) -> str:
    if not isinstance(address, str) or not is_hex_address(address):
        raise InvalidArgument(f"{what} is not a valid hex address")
    return str(to_checksum_address(address))


def sign_payload(
    account: LocalAccount,
    purpose: str,
    body: Mapping[str, Any],
    *,
    chain_id: int,
    contract: str,
    nonce: str | None = None,
    ttl: int = DEFAULT_TTL,
    now: Clock = time.time,
) -> SignedMessage:
    """Sign ``body`` for one ``purpose`` on one (chain, contract), valid for ``ttl`` seconds.

    ``body`` must be plain JSON without floats (use ints in wei or strings).
    Raises :class:`InvalidPayload` for inputs that cannot be signed canonically.
    """
    if not isinstance(purpose, str) or not 0 < len(purpose) <= _MAX_LABEL:
        raise InvalidPayload("purpose must be a non-empty string of at most 128 characters")
    if not _is_plain_int(chain_id) or chain_id <= 0:
        raise InvalidPayload("chain_id must be a positive integer")
    if not _is_plain_int(ttl) or ttl <= 0:
        raise InvalidPayload("ttl must be a positive integer number of seconds")
    if not isinstance(contract, str) or not is_hex_address(contract):
        raise InvalidPayload("contract is not a valid hex address")
    if nonce is None:
        nonce = secrets.token_hex(16)
    elif not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise InvalidPayload("nonce must be 1..128 characters of [0-9A-Za-z_-]")
    if not isinstance(body, Mapping):
        raise InvalidPayload("body must be a mapping")
    try:
        plain_body = _normalise_json(body)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"body is not plain JSON: {exc}") from None
    payload: dict[str, Any] = {
        "purpose": purpose,
        "chain_id": chain_id,
        "contract": to_checksum_address(contract),
        "nonce": nonce,
        "expires": int(now()) + ttl,
        "signer": account.address,
        "body": plain_body,
    }
    if len(canonical_json(payload)) > MAX_MESSAGE_BYTES - 200:
        raise InvalidPayload("payload is too large")
    signed = account.sign_message(encode_defunct(text=canonical_json(payload)))
    return SignedMessage(payload=payload, signature="0x" + bytes(signed.signature).hex())


def recover_signer(text: str, signature: str | bytes) -> str:
    """Return the checksum address that produced an EIP-191 ``signature`` over ``text``.

    Raises :class:`MalformedMessage` if the signature cannot be parsed or recovered.
    """
    if isinstance(signature, str):
        signature = _validate_signature(signature)
        raw = bytes.fromhex(signature[2:])
    else:
        raw = bytes(signature)
    if len(raw) != 65:
        raise MalformedMessage("signature must be 65 bytes")
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=raw))
    except (BadSignature, ValidationError, ValueError):
        raise MalformedMessage("signature cannot be recovered") from None


def verify_payload(
    msg: SignedMessage | str | bytes | Mapping[str, Any],
    *,
    purpose: str,
    chain_id: int,
    contract: str,
    expected_signer: str | Iterable[str] | None = None,
    nonce_store: NonceStore | None,
    now: Clock = time.time,
    max_ttl: int = DEFAULT_MAX_TTL,
) -> VerifiedPayload:
    """Check signature, signer, purpose, domain, expiry and nonce; return the trusted fields.

    Checks run in that order and the nonce is recorded last, so a message
    refused for any other reason does not use up its nonce. ``nonce_store`` is
    required on purpose: pass ``None`` only where replay is harmless. The store
    must use the same clock as ``now``.
    """
    if isinstance(msg, SignedMessage):
        msg = SignedMessage(
            payload=_validate_payload(msg.payload),
            signature=_validate_signature(msg.signature),
        )
    else:
        msg = SignedMessage.from_json(msg)
    payload = msg.payload
    want_contract = _checksum(contract, "contract")
    allowed: set[str] | None
    if expected_signer is None:
        allowed = None
    elif isinstance(expected_signer, str):
        allowed = {_checksum(expected_signer, "expected_signer")}
    else:
        allowed = {_checksum(s, "expected_signer") for s in expected_signer}

    recovered = recover_signer(msg.text, msg.signature)
    if recovered != payload["signer"]:
        raise WrongSigner("signature was not made by the payload's signer")
    if allowed is not None and recovered not in allowed:
        raise WrongSigner(f"signer {recovered} is not an expected signer")
    if payload["purpose"] != purpose:
        raise WrongPurpose(f"message is for {payload['purpose']!r}, expected {purpose!r}")
    if payload["chain_id"] != chain_id:
        raise WrongDomain(f"message is for chain {payload['chain_id']}, expected {chain_id}")
    if payload["contract"] != want_contract:
        raise WrongDomain(f"message is for contract {payload['contract']}, expected {want_contract}")
    t = now()
    expires: int = payload["expires"]
    if t > expires:
        raise ExpiredMessage("message has expired")
    if expires - t > max_ttl:
        raise ExpiredMessage(f"message lifetime exceeds the allowed {max_ttl} s")
    if nonce_store is not None and not nonce_store.check_and_store(recovered, payload["nonce"], expires):
        raise ReplayedMessage("message nonce was already used")
    return VerifiedPayload(
        signer=recovered,
        body=payload["body"],
        nonce=payload["nonce"],
        expires=expires,
        purpose=payload["purpose"],
    )


# --- nonce stores --------------------------------------------------------------


@runtime_checkable
class NonceStore(Protocol):
    """Remembers (signer, nonce) pairs until they expire."""

    def check_and_store(self, signer: str, nonce: str, expires: int) -> bool:
        """Atomically record the pair; return False if it was already recorded."""
        ...


class MemoryNonceStore:
    """Thread-safe in-process nonce store that forgets entries once they expire.

    Forgetting is safe because expired messages are refused anyway; it keeps
    memory proportional to (accepted messages per second x max ttl).
    """

    def __init__(self, now: Clock = time.time) -> None:
        self._now = now
        self._seen: dict[tuple[str, str], int] = {}
        self._heap: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()

    def _purge(self, t: float) -> None:
        while self._heap and self._heap[0][0] < t:
            _, signer, nonce = heapq.heappop(self._heap)
            self._seen.pop((signer, nonce), None)

    def check_and_store(self, signer: str, nonce: str, expires: int) -> bool:
        """Record (signer, nonce) until ``expires``; False if already present."""
        with self._lock:
            self._purge(self._now())
            key = (signer, nonce)
            if key in self._seen:
                return False
            self._seen[key] = expires
            heapq.heappush(self._heap, (expires, signer, nonce))
            return True

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._now())
            return len(self._seen)


class SqliteNonceStore:
    """Nonce store in SQLite, shared safely by threads and by processes using one file.

    A primary key on (signer, nonce) inside an IMMEDIATE transaction means two
    processes racing on the same nonce cannot both be told it is fresh.
    """

    def __init__(self, path: str | Path, *, now: Clock = time.time, timeout: float = 10.0) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._set_up(timeout)

    def _set_up(self, timeout: float) -> None:
        """Switch to WAL and create the schema, retrying while another process does the same.

        Changing the journal mode can report "database is locked" at once, without waiting
        on the busy timeout, when two processes open a new file together.
        """
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS used_nonces ("
                    " signer TEXT NOT NULL, nonce TEXT NOT NULL, expires INTEGER NOT NULL,"
                    " PRIMARY KEY (signer, nonce)) WITHOUT ROWID"
                )
                self._conn.execute("CREATE INDEX IF NOT EXISTS used_nonces_expires ON used_nonces (expires)")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def check_and_store(self, signer: str, nonce: str, expires: int) -> bool:
        """Record (signer, nonce) until ``expires``; False if already present."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM used_nonces WHERE expires < ?", (self._now(),))
                cur = conn.execute(
                    "INSERT OR IGNORE INTO used_nonces (signer, nonce, expires) VALUES (?, ?, ?)",
                    (signer, nonce, int(expires)),
                )
                fresh = cur.rowcount == 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return fresh

    def __len__(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM used_nonces WHERE expires >= ?", (self._now(),)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


PRODUCT_SIGNING_PREFIX = "PDash product listing\n"


def sign_product(account: LocalAccount, canonical: bytes) -> str:
    """EIP-191 signature of a product description's canonical encoding (never expires:
    a listing stays verifiable for as long as orders refer to it)."""
    text = PRODUCT_SIGNING_PREFIX + canonical.decode("utf-8")
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def product_signer(canonical: bytes, signature: str) -> str:
    """The address that signed `canonical` with :func:`sign_product`; MalformedMessage if none."""
    return recover_signer(PRODUCT_SIGNING_PREFIX + canonical.decode("utf-8"), signature)

"""X25519 ECIES key wrapping (hand a data key to exactly one recipient).

Owns the wrapped-key format and X25519 key (de)serialisation. Must not touch
account keystores, password handling or bulk data encryption.

Format: ``ephemeral_pub (32) || nonce (12) || AES-256-GCM(key) (len(key) + 16)``
with ``aes_key = HKDF-SHA256(X25519(eph, recipient), salt = eph_pub || recipient_pub,
info = b"pdash-ecies-v1")``. Public keys are 32 raw bytes so they fit a
Solidity ``bytes32``.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .errors import DecryptionFailed, InvalidKey, MalformedCiphertext

__all__ = [
    "ECIES_INFO",
    "PUBLIC_KEY_SIZE",
    "WRAP_OVERHEAD",
    "generate_private_key",
    "private_key_bytes",
    "private_key_from_bytes",
    "public_key_bytes",
    "unwrap_key",
    "wrap_key",
]

ECIES_INFO = b"pdash-ecies-v1"
PUBLIC_KEY_SIZE = 32
PRIVATE_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
WRAP_OVERHEAD = PUBLIC_KEY_SIZE + _NONCE_SIZE + _TAG_SIZE
"""Bytes added to the wrapped key: 60, so a 32-byte data key wraps to 92 bytes."""


def generate_private_key() -> X25519PrivateKey:
    """Return a fresh X25519 private key."""
    return X25519PrivateKey.generate()


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    """Load a 32-byte raw X25519 private key (as stored sealed in the wallet)."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != PRIVATE_KEY_SIZE:
        raise InvalidKey(f"X25519 private key must be {PRIVATE_KEY_SIZE} raw bytes")
    return X25519PrivateKey.from_private_bytes(bytes(raw))


def _private(priv: X25519PrivateKey | bytes) -> X25519PrivateKey:
    if isinstance(priv, X25519PrivateKey):
        return priv
    return private_key_from_bytes(priv)


def private_key_bytes(priv: X25519PrivateKey) -> bytes:
    """Raw 32-byte private key, for sealing with :func:`cpchain.crypto.keystore.seal_secret`."""
    return priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_key_bytes(priv: X25519PrivateKey | bytes) -> bytes:
    """Raw 32-byte public key for a private key (given as object or raw bytes)."""
    return _private(priv).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _public(raw: bytes) -> X25519PublicKey:
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != PUBLIC_KEY_SIZE:
        raise InvalidKey(f"X25519 public key must be {PUBLIC_KEY_SIZE} raw bytes")
    return X25519PublicKey.from_public_bytes(bytes(raw))


def _derive(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=ECIES_INFO,
    ).derive(shared)
    return AESGCM(key)


def wrap_key(recipient_public: bytes, key: bytes) -> bytes:
    """Encrypt ``key`` so that only the holder of ``recipient_public``'s private key can read it.

    A fresh ephemeral key per call means wrapping the same key twice yields
    unlinkable outputs.
    """
    recipient = _public(recipient_public)
    recipient_pub = bytes(recipient_public)
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = eph.exchange(recipient)
    except ValueError:  # low-order point: the shared secret would be all zeros
        raise InvalidKey("recipient public key is not a usable X25519 key") from None
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return eph_pub + nonce + _derive(shared, eph_pub, recipient_pub).encrypt(nonce, key, None)


def unwrap_key(recipient_private: X25519PrivateKey | bytes, wrapped: bytes) -> bytes:
    """Recover a key wrapped by :func:`wrap_key`.

    Raises :class:`MalformedCiphertext` if ``wrapped`` is too short and
    :class:`DecryptionFailed` for a wrong recipient or any tampering.
    """
    priv = _private(recipient_private)
    if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) < WRAP_OVERHEAD:
        raise MalformedCiphertext(f"wrapped key must be at least {WRAP_OVERHEAD} bytes")
    wrapped = bytes(wrapped)
    eph_pub = wrapped[:PUBLIC_KEY_SIZE]
    nonce = wrapped[PUBLIC_KEY_SIZE : PUBLIC_KEY_SIZE + _NONCE_SIZE]
    body = wrapped[PUBLIC_KEY_SIZE + _NONCE_SIZE :]
    recipient_pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        return _derive(shared, eph_pub, recipient_pub).decrypt(nonce, body, None)
    except (InvalidTag, ValueError):
        raise DecryptionFailed("cannot unwrap key (wrong recipient or tampered data)") from None

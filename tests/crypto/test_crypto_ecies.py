"""Tests for cpchain.crypto.ecies: X25519 key wrapping."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from cpchain.crypto import (
    DecryptionFailed,
    InvalidKey,
    MalformedCiphertext,
    private_key_bytes,
    private_key_from_bytes,
    public_key_bytes,
    unwrap_key,
    wrap_key,
)
from cpchain.crypto.ecies import WRAP_OVERHEAD, generate_private_key


@pytest.fixture
def recipient() -> X25519PrivateKey:
    return generate_private_key()


def test_round_trip(recipient: X25519PrivateKey) -> None:
    key = os.urandom(32)
    wrapped = wrap_key(public_key_bytes(recipient), key)
    assert len(wrapped) == 32 + WRAP_OVERHEAD == 92
    assert unwrap_key(recipient, wrapped) == key
    assert unwrap_key(private_key_bytes(recipient), wrapped) == key


@settings(max_examples=30, deadline=None)
@given(key=st.binary(max_size=200))
def test_round_trip_any_length(key: bytes) -> None:
    priv = generate_private_key()
    assert unwrap_key(priv, wrap_key(public_key_bytes(priv), key)) == key


def test_format_matches_spec(recipient: X25519PrivateKey) -> None:
    """Re-derive independently: eph_pub || nonce || AES-GCM, HKDF salt eph||recipient."""
    key = os.urandom(32)
    recipient_pub = public_key_bytes(recipient)
    wrapped = wrap_key(recipient_pub, key)
    eph_pub, nonce, body = wrapped[:32], wrapped[32:44], wrapped[44:]
    shared = recipient.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    aes_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=b"pdash-ecies-v1",
    ).derive(shared)
    assert AESGCM(aes_key).decrypt(nonce, body, None) == key


def test_wraps_are_unlinkable(recipient: X25519PrivateKey) -> None:
    pub = public_key_bytes(recipient)
    a, b = wrap_key(pub, b"k" * 32), wrap_key(pub, b"k" * 32)
    assert a[:32] != b[:32] and a != b


def test_wrong_recipient(recipient: X25519PrivateKey) -> None:
    wrapped = wrap_key(public_key_bytes(recipient), os.urandom(32))
    with pytest.raises(DecryptionFailed):
        unwrap_key(generate_private_key(), wrapped)


@pytest.mark.parametrize("pos", [0, 31, 32, 43, 44, 60, 75, 91])
def test_tampered_byte(recipient: X25519PrivateKey, pos: int) -> None:
    wrapped = bytearray(wrap_key(public_key_bytes(recipient), os.urandom(32)))
    wrapped[pos] ^= 0x01
    with pytest.raises(DecryptionFailed):
        unwrap_key(recipient, bytes(wrapped))


def test_low_order_ephemeral_key_is_rejected(recipient: X25519PrivateKey) -> None:
    wrapped = wrap_key(public_key_bytes(recipient), os.urandom(32))
    with pytest.raises(DecryptionFailed):
        unwrap_key(recipient, bytes(32) + wrapped[32:])


@pytest.mark.parametrize("length", [0, 1, 32, WRAP_OVERHEAD - 1])
def test_bad_length_is_malformed(recipient: X25519PrivateKey, length: int) -> None:
    with pytest.raises(MalformedCiphertext):
        unwrap_key(recipient, os.urandom(length))


def test_malformed_is_a_decryption_failure(recipient: X25519PrivateKey) -> None:
    with pytest.raises(DecryptionFailed):
        unwrap_key(recipient, b"short")


def test_truncated_wrapped_key(recipient: X25519PrivateKey) -> None:
    wrapped = wrap_key(public_key_bytes(recipient), os.urandom(32))
    with pytest.raises(DecryptionFailed):
        unwrap_key(recipient, wrapped[:-1])


@pytest.mark.parametrize("pub", [b"", b"\x01" * 31, b"\x01" * 33])
def test_bad_public_key_length(pub: bytes) -> None:
    with pytest.raises(InvalidKey):
        wrap_key(pub, b"k" * 32)


def test_low_order_recipient_key_is_rejected() -> None:
    with pytest.raises(InvalidKey):
        wrap_key(bytes(32), b"k" * 32)


def test_key_serialisation(recipient: X25519PrivateKey) -> None:
    raw = private_key_bytes(recipient)
    assert len(raw) == 32
    again = private_key_from_bytes(raw)
    assert public_key_bytes(again) == public_key_bytes(recipient) == public_key_bytes(raw)
    assert len(public_key_bytes(recipient)) == 32
    with pytest.raises(InvalidKey):
        private_key_from_bytes(b"x" * 31)
    with pytest.raises(InvalidKey):
        unwrap_key(b"x" * 31, b"\x00" * 92)

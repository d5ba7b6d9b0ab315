"""Typed exceptions for :mod:`cpchain.crypto`.

Owns the exception hierarchy only. Every failure a caller may need to react to
gets its own class so callers never have to parse messages; messages never
contain secrets (keys, passwords, plaintext).
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptionFailed",
    "ExpiredMessage",
    "HashMismatch",
    "InputTooLarge",
    "InsecurePasswordFile",
    "InvalidArgument",
    "InvalidBackup",
    "InvalidKey",
    "InvalidKeystore",
    "InvalidPayload",
    "InvalidPrivateKey",
    "KeystoreError",
    "KeystoreExists",
    "MalformedCiphertext",
    "MalformedMessage",
    "PasswordFileError",
    "ReplayedMessage",
    "TruncatedCiphertext",
    "VerificationFailed",
    "WrongDomain",
    "WrongPassword",
    "WrongPurpose",
    "WrongSigner",
]


class CryptoError(Exception):
    """Base class so callers can catch every failure of this package at once."""


# --- caller mistakes -------------------------------------------------------


class InvalidArgument(CryptoError):
    """A parameter is out of range (segment size, sequence number, ttl, ...)."""


class InvalidKey(InvalidArgument):
    """Key material has the wrong type, length or is not a valid curve point."""


class InvalidPayload(InvalidArgument):
    """A payload to sign cannot be encoded deterministically (bad body/address)."""


class InputTooLarge(CryptoError):
    """The input exceeds what the format can represent (e.g. 2**32 segments)."""


# --- keystore / password handling ------------------------------------------


class KeystoreError(CryptoError):
    """Base for account keystore, sealed-secret and backup failures."""


class InvalidKeystore(KeystoreError):
    """The keystore JSON is not a well-formed, supported v3 keystore."""


class InvalidPrivateKey(KeystoreError, InvalidKey):
    """A private key to import is not a valid secp256k1 key."""


class WrongPassword(KeystoreError):
    """The password does not open the keystore / sealed secret.

    For authenticated encryption a wrong password and a tampered blob are
    indistinguishable, so this also covers corruption of the encrypted part.
    """


class KeystoreExists(KeystoreError):
    """Refusing to overwrite an existing keystore file."""


class PasswordFileError(KeystoreError):
    """A password file cannot be read or decoded."""


class InsecurePasswordFile(PasswordFileError):
    """A password file is readable/writable by group or others (mode & 0o077)."""


class InvalidBackup(KeystoreError):
    """A wallet backup document is malformed or inconsistent."""


# --- decryption ------------------------------------------------------------


class DecryptionFailed(CryptoError):
    """Authentication failed: wrong key, tampering, reordering or trailing data.

    Any output produced before this is raised must be discarded.
    """


class TruncatedCiphertext(DecryptionFailed):
    """The stream authenticated up to a segment boundary but its final segment is missing."""


class MalformedCiphertext(DecryptionFailed):
    """The ciphertext cannot even be parsed (bad magic, version, length, encoding)."""


class HashMismatch(CryptoError):
    """Data hashed while streaming does not match the expected digest."""


# --- signed messages -------------------------------------------------------


class VerificationFailed(CryptoError):
    """Base for every reason a signed message is refused."""


class MalformedMessage(VerificationFailed):
    """The signed message is not valid JSON / lacks or mistypes a field."""


class WrongSigner(VerificationFailed):
    """The signature does not recover to the claimed / an expected signer."""


class ExpiredMessage(VerificationFailed):
    """The message has expired, or claims a lifetime longer than allowed."""


class WrongPurpose(VerificationFailed):
    """The message was signed for another purpose (cross-protocol replay)."""


class WrongDomain(VerificationFailed):
    """The message was signed for another chain id or contract."""


class ReplayedMessage(VerificationFailed):
    """The (signer, nonce) pair was already accepted before."""

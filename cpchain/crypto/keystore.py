"""Password-protected key material: Ethereum v3 keystores, sealed secrets, backups.

Owns the account keystore files (geth-compatible v3 JSON via eth_account), the
password-sealed secret format used for the X25519 encryption key and other
wallet secrets (e.g. storage credentials), password files, and the backup
document that keeps both together. Must not touch the chain, the network or
the wallet's database, and never logs, prints or writes a password or a
plaintext key anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address

from cpchain.fsutil import fsync_dir

from ._json import loads_limited
from .ecies import private_key_bytes, private_key_from_bytes, public_key_bytes
from .errors import (
    InsecurePasswordFile,
    InvalidArgument,
    InvalidBackup,
    InvalidKey,
    InvalidKeystore,
    InvalidPrivateKey,
    KeystoreError,
    KeystoreExists,
    MalformedCiphertext,
    PasswordFileError,
    WrongPassword,
)

__all__ = [
    "BACKUP_TYPE",
    "DEFAULT_SCRYPT_N",
    "FAST_KDF_ITERATIONS",
    "SEALED_SECRET_TYPE",
    "SEAL_SCRYPT_N",
    "KeystoreAccount",
    "RestoredBackup",
    "create_account",
    "create_encryption_key",
    "export_backup",
    "export_keystore",
    "import_backup",
    "import_keystore",
    "import_private_key",
    "load_keystore",
    "open_encryption_key",
    "open_secret",
    "read_password_file",
    "save_keystore",
    "seal_encryption_key",
    "seal_secret",
    "unlock",
]

DEFAULT_SCRYPT_N = 2**18
"""scrypt cost for account keystores (geth/eth_account standard, ~256 MiB, ~1 s)."""
FAST_KDF_ITERATIONS = 1024
"""PBKDF2 iterations used with ``fast_kdf=True``: for tests only, offers no real protection."""
SEAL_SCRYPT_N = 2**14
"""scrypt cost for sealed secrets (16 MiB): they are opened often, right after an unlock."""

# Upper bounds on work factors accepted from files, so an untrusted keystore or
# backup cannot make us burn gigabytes of memory or minutes of CPU.
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_MEMORY = 1 << 30
MAX_PBKDF2_ITERATIONS = 10_000_000
_MAX_FILE_BYTES = 1 << 20
_MAX_SECRET_BYTES = 1 << 16

SEALED_SECRET_TYPE = "pdash-sealed-secret"
SEALED_SECRET_VERSION = 1
BACKUP_TYPE = "pdash-wallet-backup"
BACKUP_VERSION = 1

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# --- helpers -----------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(value: object, nbytes: int | None = None) -> TypeGuard[str]:
    if not isinstance(value, str) or len(value) % 2:
        return False
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return False
    return nbytes is None or len(raw) == nbytes


def _check_scrypt_params(n: object, r: object, p: object) -> bool:
    return (
        _is_int(n)
        and _is_int(r)
        and _is_int(p)
        and 2 <= n <= MAX_SCRYPT_N
        and n & (n - 1) == 0
        and 1 <= r <= 32
        and 1 <= p <= 16
        and 128 * r * n <= MAX_SCRYPT_MEMORY
    )


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise InvalidArgument("password must be a str")
    return password.encode("utf-8")


def _read_limited(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KeystoreError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(data) > _MAX_FILE_BYTES:
        raise KeystoreError(f"{what} {path} is too large")
    return data


# --- account keystores -------------------------------------------------------


@dataclass(frozen=True)
class KeystoreAccount:
    """An account as stored on disk: checksum address plus encrypted v3 keystore.

    Holds no plaintext key, so it is safe to keep around, print or persist;
    use :func:`unlock` to get a signing :class:`LocalAccount`.
    """

    address: str
    keystore: dict[str, Any] = field(repr=False, hash=False)


def _kdf_choice(fast_kdf: bool, kdf_iterations: int | None) -> tuple[Literal["pbkdf2", "scrypt"], int]:
    if kdf_iterations is not None and (not _is_int(kdf_iterations) or kdf_iterations < 1):
        raise InvalidArgument("kdf_iterations must be a positive int")
    if fast_kdf:
        return "pbkdf2", kdf_iterations or FAST_KDF_ITERATIONS
    n = kdf_iterations or DEFAULT_SCRYPT_N
    if not _check_scrypt_params(n, 8, 1):
        raise InvalidArgument(f"scrypt n must be a power of two in [2, {MAX_SCRYPT_N}]")
    return "scrypt", n


def _validate_keystore(obj: object) -> dict[str, Any]:
    """Check that ``obj`` is a supported v3 keystore and return a normalised deep copy."""
    if not isinstance(obj, Mapping):
        raise InvalidKeystore("keystore must be a JSON object")
    ks: dict[str, Any] = copy.deepcopy(dict(obj))
    if "crypto" not in ks and "Crypto" in ks:  # older geth files capitalise it
        ks["crypto"] = ks.pop("Crypto")
    if ks.get("version") != 3:
        raise InvalidKeystore("only version 3 keystores are supported")
    address = ks.get("address")
    if address is not None and not (isinstance(address, str) and is_hex_address(address)):
        raise InvalidKeystore("keystore address is not a valid hex address")
    crypto = ks.get("crypto")
    if not isinstance(crypto, dict):
        raise InvalidKeystore("keystore has no crypto section")
    if crypto.get("cipher") != "aes-128-ctr":
        raise InvalidKeystore("unsupported keystore cipher")
    params = crypto.get("cipherparams")
    if not isinstance(params, dict) or not _is_hex(params.get("iv"), 16):
        raise InvalidKeystore("keystore cipherparams.iv must be 16 hex bytes")
    if not _is_hex(crypto.get("ciphertext"), 32):
        raise InvalidKeystore("keystore ciphertext must be 32 hex bytes")
    if not _is_hex(crypto.get("mac"), 32):
        raise InvalidKeystore("keystore mac must be 32 hex bytes")
    kdfparams = crypto.get("kdfparams")
    if not isinstance(kdfparams, dict):
        raise InvalidKeystore("keystore has no kdfparams")
    if kdfparams.get("dklen") != 32 or not _is_hex(kdfparams.get("salt")):
        raise InvalidKeystore("keystore kdfparams need dklen 32 and a hex salt")
    kdf = crypto.get("kdf")
    if kdf == "scrypt":
        if not _check_scrypt_params(kdfparams.get("n"), kdfparams.get("r"), kdfparams.get("p")):
            raise InvalidKeystore("keystore scrypt parameters are invalid or too expensive")
    elif kdf == "pbkdf2":
        c = kdfparams.get("c")
        if kdfparams.get("prf") != "hmac-sha256" or not (_is_int(c) and 1 <= c <= MAX_PBKDF2_ITERATIONS):
            raise InvalidKeystore("keystore pbkdf2 parameters are invalid or too expensive")
    else:
        raise InvalidKeystore("unsupported keystore kdf")
    return ks


def _coerce_keystore(
    keystore: Mapping[str, Any] | KeystoreAccount | str | bytes,
) -> dict[str, Any]:
    if isinstance(keystore, KeystoreAccount):
        return _validate_keystore(keystore.keystore)
    if isinstance(keystore, (str, bytes)):
        try:
            parsed = loads_limited(keystore)
        except ValueError:
            raise InvalidKeystore("keystore is not valid JSON") from None
        return _validate_keystore(parsed)
    return _validate_keystore(keystore)


def _encrypt_key(key: bytes, password: str, fast_kdf: bool, kdf_iterations: int | None) -> KeystoreAccount:
    kdf, iterations = _kdf_choice(fast_kdf, kdf_iterations)
    _password_bytes(password)
    keystore = Account.encrypt(key, password, kdf=kdf, iterations=iterations)
    address = to_checksum_address(keystore["address"])
    return KeystoreAccount(address=address, keystore=keystore)


def create_account(password: str, *, fast_kdf: bool = False, kdf_iterations: int | None = None) -> KeystoreAccount:
    """Create a new random account encrypted under ``password``.

    Uses scrypt (n = ``kdf_iterations`` or 2**18). ``fast_kdf=True`` switches to
    PBKDF2 with few iterations so test suites stay fast; never use it for real keys.
    """
    fresh: LocalAccount = Account.create()
    return _encrypt_key(bytes(fresh.key), password, fast_kdf, kdf_iterations)


def _parse_private_key(key: str | bytes) -> bytes:
    if isinstance(key, str):
        text = key.strip()
        text = text[2:] if text[:2].lower() == "0x" else text
        if len(text) != 64 or not _is_hex(text):
            raise InvalidPrivateKey("private key must be 32 bytes of hex (64 hex digits)")
        raw = bytes.fromhex(text)
    elif isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if len(raw) != 32:
            raise InvalidPrivateKey("private key must be 32 bytes")
    else:
        raise InvalidPrivateKey("private key must be hex text or bytes")
    if not 0 < int.from_bytes(raw, "big") < _SECP256K1_N:
        raise InvalidPrivateKey("private key is outside the secp256k1 range")
    return raw


def import_private_key(
    key_hex: str | bytes,
    password: str,
    *,
    fast_kdf: bool = False,
    kdf_iterations: int | None = None,
) -> KeystoreAccount:
    """Encrypt an existing secp256k1 private key (hex, optional 0x) into a keystore.

    Error messages never echo the key.
    """
    return _encrypt_key(_parse_private_key(key_hex), password, fast_kdf, kdf_iterations)


def unlock(keystore_json: Mapping[str, Any] | KeystoreAccount | str | bytes, password: str) -> LocalAccount:
    """Decrypt a keystore (dict, JSON text or :class:`KeystoreAccount`) into a signing account.

    Raises :class:`WrongPassword` if the MAC does not match and
    :class:`InvalidKeystore` for malformed input or an address that does not
    belong to the decrypted key.
    """
    ks = _coerce_keystore(keystore_json)
    _password_bytes(password)
    try:
        key = Account.decrypt(ks, password)
    except ValueError as exc:
        if "mac mismatch" in str(exc).lower():
            raise WrongPassword("wrong password for keystore") from None
        raise InvalidKeystore("keystore cannot be decrypted") from None
    try:
        account: LocalAccount = Account.from_key(key)
    except ValueError:
        raise InvalidKeystore("keystore decrypts to an invalid private key") from None
    claimed = ks.get("address")
    if claimed is not None and to_checksum_address(claimed) != account.address:
        raise InvalidKeystore("keystore address does not match its key")
    return account


def import_keystore(
    json_or_path: Mapping[str, Any] | str | bytes | os.PathLike[str],
    password: str,
) -> KeystoreAccount:
    """Import a keystore given as dict, JSON text or file path, proving the password opens it.

    Importing only after a successful decrypt means a typo in the password is
    caught now rather than when the user first needs to sign.
    """
    if isinstance(json_or_path, os.PathLike) or (
        isinstance(json_or_path, str) and not json_or_path.lstrip().startswith("{")
    ):
        ks = load_keystore(json_or_path)
    else:
        ks = _coerce_keystore(json_or_path)
    account = unlock(ks, password)
    return KeystoreAccount(address=account.address, keystore=ks)


def export_keystore(account: KeystoreAccount) -> dict[str, Any]:
    """Return a deep copy of the v3 keystore JSON (safe to share: it is encrypted)."""
    return copy.deepcopy(account.keystore)


def _keystore_filename(address: str, when: datetime) -> str:
    when = when.astimezone(UTC)
    stamp = when.strftime("%Y-%m-%dT%H-%M-%S") + f".{when.microsecond:06d}000Z"
    return f"UTC--{stamp}--{address.lower().removeprefix('0x')}"


def save_keystore(
    directory: str | os.PathLike[str],
    keystore: Mapping[str, Any] | KeystoreAccount,
    *,
    timestamp: datetime | None = None,
) -> Path:
    """Write a keystore as ``UTC--<time>--<address>`` (geth layout), mode 0600.

    The file is written to a temp file, fsynced and hard-linked into place,
    so it appears complete or not at all, and an existing file is never
    replaced (:class:`KeystoreExists`). Missing directories are created 0700.
    """
    ks = _coerce_keystore(keystore)
    address = ks.get("address")
    if address is None:
        raise InvalidKeystore("keystore has no address; cannot name the file")
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / _keystore_filename(address, timestamp or datetime.now(UTC))
    if final.exists():
        raise KeystoreExists(f"refusing to overwrite {final}")
    data = json.dumps(ks, separators=(",", ":")).encode("ascii")

    fd, tmp_name = tempfile.mkstemp(prefix=".keystore-", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)  # atomic and fails if ``final`` exists
        except FileExistsError:
            raise KeystoreExists(f"refusing to overwrite {final}") from None
        except OSError:
            # Filesystem without hard links: exclusive create still never overwrites.
            try:
                out = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise KeystoreExists(f"refusing to overwrite {final}") from None
            with os.fdopen(out, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(directory)
    return final


def load_keystore(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a keystore file without decrypting it."""
    data = _read_limited(Path(path), "keystore")
    return _coerce_keystore(data)


def read_password_file(path: str | os.PathLike[str]) -> str:
    """Read a password from a file, dropping one trailing newline.

    Refuses (:class:`InsecurePasswordFile`) files that group or others may
    access (mode & 0o077), so a password cannot sit readable on a shared host.
    """
    path = Path(path)
    # O_NONBLOCK so a FIFO planted at ``path`` cannot hang us before the type check.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise PasswordFileError(f"cannot open password file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)  # stat the opened file: no check-then-open race
        if not stat.S_ISREG(st.st_mode):
            raise PasswordFileError(f"password file {path} is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise InsecurePasswordFile(
                f"password file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                "it must not be accessible by group or others (chmod 600)"
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(_MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_SECRET_BYTES:
        raise PasswordFileError(f"password file {path} is too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordFileError(f"password file {path} is not valid UTF-8") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise PasswordFileError(f"password file {path} is empty")
    return text


# --- sealed secrets ----------------------------------------------------------


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sealed_aad(sealed: Mapping[str, Any]) -> bytes:
    """Everything but the ciphertext is authenticated, so no parameter can be swapped."""
    return _canonical({k: sealed[k] for k in ("type", "version", "kdf", "kdfparams", "cipher", "nonce", "meta")})


def _scrypt_aes(password: str, salt: bytes, n: int, r: int, p: int) -> AESGCM:
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(_password_bytes(password))
    return AESGCM(key)


def seal_secret(
    secret: bytes,
    password: str,
    *,
    scrypt_n: int = SEAL_SCRYPT_N,
    meta: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Encrypt a small secret under a password (scrypt + AES-256-GCM) as a JSON-able dict.

    ``meta`` is stored in clear but authenticated: useful for labels or a
    public key the wallet must show without asking for the password.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) > _MAX_SECRET_BYTES:
        raise InvalidArgument(f"secret must be bytes of at most {_MAX_SECRET_BYTES} bytes")
    if not _check_scrypt_params(scrypt_n, 8, 1):
        raise InvalidArgument(f"scrypt_n must be a power of two in [2, {MAX_SCRYPT_N}]")
    meta_dict = dict(meta or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta_dict.items()):
        raise InvalidArgument("meta must map str to str")
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    sealed: dict[str, Any] = {
        "type": SEALED_SECRET_TYPE,
        "version": SEALED_SECRET_VERSION,
        "kdf": "scrypt",
        "kdfparams": {"n": scrypt_n, "r": 8, "p": 1, "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
        "meta": meta_dict,
    }
    aes = _scrypt_aes(password, salt, scrypt_n, 8, 1)
    sealed["ciphertext"] = aes.encrypt(nonce, bytes(secret), _sealed_aad(sealed)).hex()
    return sealed


def _validate_sealed(sealed: object) -> dict[str, Any]:
    if isinstance(sealed, (str, bytes)):
        try:
            sealed = loads_limited(sealed)
        except ValueError:
            raise MalformedCiphertext("sealed secret is not valid JSON") from None
    if not isinstance(sealed, Mapping):
        raise MalformedCiphertext("sealed secret must be a JSON object")
    doc: dict[str, Any] = copy.deepcopy(dict(sealed))
    if doc.get("type") != SEALED_SECRET_TYPE:
        raise MalformedCiphertext("not a sealed secret")
    if doc.get("version") != SEALED_SECRET_VERSION:
        raise MalformedCiphertext(f"unsupported sealed secret version {doc.get('version')!r}")
    if doc.get("kdf") != "scrypt" or doc.get("cipher") != "aes-256-gcm":
        raise MalformedCiphertext("unsupported sealed secret kdf/cipher")
    params = doc.get("kdfparams")
    if not isinstance(params, dict) or not _check_scrypt_params(params.get("n"), params.get("r"), params.get("p")):
        raise MalformedCiphertext("sealed secret scrypt parameters are invalid or too expensive")
    salt = params.get("salt")
    if not _is_hex(salt) or not 16 <= len(salt) // 2 <= 64:
        raise MalformedCiphertext("sealed secret salt must be 16..64 hex bytes")
    if not _is_hex(doc.get("nonce"), 12):
        raise MalformedCiphertext("sealed secret nonce must be 12 hex bytes")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise MalformedCiphertext("sealed secret meta must map str to str")
    ct = doc.get("ciphertext")
    if not _is_hex(ct) or not 16 <= len(ct) // 2 <= _MAX_SECRET_BYTES + 16:
        raise MalformedCiphertext("sealed secret ciphertext has a bad encoding or length")
    return doc


def open_secret(sealed: Mapping[str, Any] | str | bytes, password: str) -> bytes:
    """Decrypt a :func:`seal_secret` document.

    Raises :class:`MalformedCiphertext` for a malformed document and
    :class:`WrongPassword` if the password is wrong or the document was altered.
    """
    doc = _validate_sealed(sealed)
    params = doc["kdfparams"]
    aes = _scrypt_aes(password, bytes.fromhex(params["salt"]), params["n"], params["r"], params["p"])
    try:
        return aes.decrypt(
            bytes.fromhex(doc["nonce"]),
            bytes.fromhex(doc["ciphertext"]),
            _sealed_aad(doc),
        )
    except InvalidTag:
        raise WrongPassword("wrong password for sealed secret (or it was tampered with)") from None


# --- X25519 encryption key -----------------------------------------------------


def create_encryption_key() -> X25519PrivateKey:
    """Create the account's X25519 key, used to receive wrapped data keys (see :mod:`.ecies`)."""
    return X25519PrivateKey.generate()


def seal_encryption_key(
    private_key: X25519PrivateKey, password: str, *, scrypt_n: int = SEAL_SCRYPT_N
) -> dict[str, Any]:
    """Seal an X25519 private key; its public key stays readable in ``meta['public_key']``."""
    meta = {"kind": "x25519", "public_key": public_key_bytes(private_key).hex()}
    return seal_secret(private_key_bytes(private_key), password, scrypt_n=scrypt_n, meta=meta)


def open_encryption_key(sealed: Mapping[str, Any] | str | bytes, password: str) -> X25519PrivateKey:
    """Open a sealed X25519 key and check it matches the public key recorded beside it."""
    doc = _validate_sealed(sealed)
    if doc["meta"].get("kind") != "x25519":
        raise MalformedCiphertext("sealed secret is not an X25519 encryption key")
    raw = open_secret(doc, password)
    try:
        key = private_key_from_bytes(raw)
    except InvalidKey:
        raise MalformedCiphertext("sealed encryption key has the wrong length") from None
    expected = doc["meta"].get("public_key")
    if expected is not None and public_key_bytes(key).hex() != expected.lower():
        raise MalformedCiphertext("sealed encryption key does not match its public key")
    return key


# --- backups -------------------------------------------------------------------


@dataclass(frozen=True)
class RestoredBackup:
    """Result of :func:`import_backup`: the account and its opened encryption key."""

    account: KeystoreAccount
    encryption_key: X25519PrivateKey = field(repr=False, compare=False)
    sealed_encryption_key: dict[str, Any] = field(repr=False, hash=False)

    @property
    def encryption_public_key(self) -> bytes:
        """32-byte X25519 public key (what gets published on chain)."""
        return public_key_bytes(self.encryption_key)


def export_backup(keystore: Mapping[str, Any] | KeystoreAccount, sealed_enc_key: Mapping[str, Any]) -> dict[str, Any]:
    """Bundle the account keystore and the sealed encryption key into one backup document.

    Losing either half loses access to purchased data, hence one document.
    Both halves stay encrypted; nothing here needs the password.
    """
    try:
        ks = _coerce_keystore(keystore)
        sealed = _validate_sealed(sealed_enc_key)
    except (InvalidKeystore, MalformedCiphertext) as exc:
        raise InvalidBackup(f"cannot back up: {exc}") from exc
    address = ks.get("address")
    if address is None:
        raise InvalidBackup("keystore has no address")
    return {
        "type": BACKUP_TYPE,
        "version": BACKUP_VERSION,
        "address": to_checksum_address(address),
        "keystore": ks,
        "encryption_key": sealed,
    }


def import_backup(backup: Mapping[str, Any] | str | bytes, password: str) -> RestoredBackup:
    """Restore a backup, proving ``password`` opens both the keystore and the encryption key.

    Raises :class:`InvalidBackup` for malformed documents and :class:`WrongPassword`
    if the password fails to open either part.
    """
    if isinstance(backup, (str, bytes)):
        try:
            backup = loads_limited(backup)
        except ValueError:
            raise InvalidBackup("backup is not valid JSON") from None
    if not isinstance(backup, Mapping):
        raise InvalidBackup("backup must be a JSON object")
    if backup.get("type") != BACKUP_TYPE:
        raise InvalidBackup("not a PDASH wallet backup")
    if backup.get("version") != BACKUP_VERSION:
        raise InvalidBackup(f"unsupported backup version {backup.get('version')!r}")
    try:
        ks = _coerce_keystore(backup.get("keystore"))  # type: ignore[arg-type]
        sealed = _validate_sealed(backup.get("encryption_key"))
    except (InvalidKeystore, MalformedCiphertext) as exc:
        raise InvalidBackup(f"backup is malformed: {exc}") from exc
    claimed = backup.get("address")
    if not isinstance(claimed, str) or not is_hex_address(claimed):
        raise InvalidBackup("backup address is missing or invalid")

    account = unlock(ks, password)
    if account.address != to_checksum_address(claimed):
        raise InvalidBackup("backup address does not match its keystore")
    try:
        enc_key = open_encryption_key(sealed, password)
    except WrongPassword:
        raise WrongPassword("password opens the account keystore but not the encryption key") from None
    except MalformedCiphertext as exc:
        raise InvalidBackup(f"backup encryption key is invalid: {exc}") from exc
    return RestoredBackup(
        account=KeystoreAccount(address=account.address, keystore=ks),
        encryption_key=enc_key,
        sealed_encryption_key=sealed,
    )

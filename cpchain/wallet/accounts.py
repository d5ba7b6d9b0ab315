"""The wallet's accounts: create, import, export, list, switch and unlock.

Owns the account directory (`[account] keystore_dir`): per account an Ethereum v3 keystore
in geth's layout (`UTC--<time>--<address>`) and the account's X25519 encryption key sealed
under the same password (`<address>.x25519.json`), plus the `current` file naming the
selected account. Every file is mode 0600 in a 0700 directory; no password or plaintext key
is ever written, logged or put in an exception message. The key formats themselves are
cpchain.crypto's; this module must not touch the chain, the market or the wallet database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address

from cpchain.crypto import (
    CryptoError,
    KeystoreAccount,
    create_account,
    create_encryption_key,
    export_backup,
    import_backup,
    import_keystore,
    import_private_key,
    load_keystore,
    open_encryption_key,
    public_key_bytes,
    save_keystore,
    seal_encryption_key,
    unlock,
)
from cpchain.crypto import WrongPassword as CryptoWrongPassword
from cpchain.crypto.keystore import SEAL_SCRYPT_N
from cpchain.fsutil import atomic_write_text
from cpchain.wallet.errors import AccountError, AccountExists, NoCurrentAccount, UnknownAccount, WrongPassword

__all__ = ["AccountInfo", "AccountStore", "UnlockedAccount"]

KEYSTORE_GLOB = "UTC--*"
ENCRYPTION_SUFFIX = ".x25519.json"
CURRENT_FILE = "current"


@dataclass(frozen=True)
class AccountInfo:
    """An account as listed: nothing secret (the encryption public key is public)."""

    address: str
    keystore_path: Path
    encryption_public_key: bytes | None  # None until the first unlock creates the key


@dataclass(frozen=True)
class UnlockedAccount:
    """A signing account and its X25519 key, in memory only; repr shows the address only."""

    address: str
    account: LocalAccount = field(repr=False, compare=False)
    encryption_key: X25519PrivateKey = field(repr=False, compare=False)

    @property
    def encryption_public_key(self) -> bytes:
        """32 bytes: what a buyer puts in an order so the key can be wrapped to it."""
        return public_key_bytes(self.encryption_key)


def _address(address: str) -> str:
    if not isinstance(address, str) or not is_hex_address(address):
        raise UnknownAccount(f"not an account address: {address!r}")
    return str(to_checksum_address(address))


@contextmanager
def _key_errors(what: str) -> Iterator[None]:
    """Crypto failures as account errors, without ever echoing key material."""
    try:
        yield
    except CryptoWrongPassword:
        raise WrongPassword(f"{what}: wrong password") from None
    except CryptoError as exc:
        raise AccountError(f"{what}: {exc}") from None


class AccountStore:
    """The accounts in one directory. `fast_kdf` (tests only) makes keystores cheap to open."""

    def __init__(self, directory: Path, *, fast_kdf: bool = False, seal_scrypt_n: int = SEAL_SCRYPT_N) -> None:
        self.directory = Path(directory)
        self.fast_kdf = fast_kdf
        self.seal_scrypt_n = seal_scrypt_n

    # ------------------------------------------------------------------ reading

    def _keystore_files(self) -> dict[str, Path]:
        """Checksum address -> keystore file (the newest file wins if there are several)."""
        found: dict[str, Path] = {}
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob(KEYSTORE_GLOB)):
            tail = path.name.rsplit("--", 1)[-1]
            if is_hex_address("0x" + tail):
                found[str(to_checksum_address("0x" + tail))] = path
        return found

    def _encryption_path(self, address: str) -> Path:
        return self.directory / f"{address.lower().removeprefix('0x')}{ENCRYPTION_SUFFIX}"

    def _sealed_encryption_key(self, address: str) -> dict[str, Any] | None:
        path = self._encryption_path(address)
        try:
            sealed = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AccountError(f"cannot read the encryption key of {address}: {exc}") from None
        if not isinstance(sealed, dict):
            raise AccountError(f"{path} is not a sealed encryption key")
        return sealed

    def _info(self, address: str, path: Path) -> AccountInfo:
        sealed = self._sealed_encryption_key(address)
        public = None
        if sealed is not None:
            hex_key = sealed.get("meta", {}).get("public_key")
            public = bytes.fromhex(hex_key) if isinstance(hex_key, str) else None
        return AccountInfo(address, path, public)

    def list(self) -> list[AccountInfo]:
        """Every account, sorted by address."""
        return [self._info(a, p) for a, p in sorted(self._keystore_files().items())]

    def get(self, address: str) -> AccountInfo:
        address = _address(address)
        path = self._keystore_files().get(address)
        if path is None:
            raise UnknownAccount(f"no account {address} in {self.directory}")
        return self._info(address, path)

    def current(self) -> AccountInfo:
        """The selected account; NoCurrentAccount if none is selected or it is gone."""
        try:
            chosen = (self.directory / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise NoCurrentAccount("no account selected: create or import one") from None
        try:
            return self.get(chosen)
        except UnknownAccount:
            raise NoCurrentAccount(f"the selected account {chosen} is no longer in the wallet") from None

    def switch(self, address: str) -> AccountInfo:
        """Select another account (no password needed: nothing is unlocked)."""
        info = self.get(address)
        atomic_write_text(self.directory / CURRENT_FILE, info.address + "\n")
        return info

    # ------------------------------------------------------------------ adding

    def create(self, password: str) -> AccountInfo:
        """A new random account and encryption key, both sealed under `password`."""
        _check_new_password(password)
        with _key_errors("create account"):
            keystore = create_account(password, fast_kdf=self.fast_kdf)
        return self._add(keystore, create_encryption_key(), password)

    def import_private_key(self, private_key: str | bytes, password: str) -> AccountInfo:
        """An existing secp256k1 key (hex) under `password`, with a new encryption key."""
        _check_new_password(password)
        with _key_errors("import private key"):
            keystore = import_private_key(private_key, password, fast_kdf=self.fast_kdf)
        return self._add(keystore, create_encryption_key(), password)

    def import_keystore(
        self, keystore: Mapping[str, Any] | str | bytes | os.PathLike[str], password: str
    ) -> AccountInfo:
        """A v3 keystore (JSON or file) that `password` opens, with a new encryption key.

        Data bought before with another encryption key cannot be opened with the new one:
        to move a wallet with its purchases, use export_backup and import_backup.
        """
        with _key_errors("import keystore"):
            imported = import_keystore(keystore, password)
        return self._add(imported, create_encryption_key(), password)

    def import_backup(self, backup: Mapping[str, Any] | str | bytes | os.PathLike[str], password: str) -> AccountInfo:
        """A backup made by export_backup: the account and its own encryption key."""
        if isinstance(backup, os.PathLike):
            try:
                backup = Path(backup).read_bytes()
            except OSError as exc:
                raise AccountError(f"cannot read backup: {exc.strerror}") from None
        with _key_errors("import backup"):
            restored = import_backup(backup, password)
        return self._add(restored.account, restored.encryption_key, password, sealed=restored.sealed_encryption_key)

    def _add(
        self,
        keystore: KeystoreAccount,
        encryption_key: X25519PrivateKey,
        password: str,
        *,
        sealed: dict[str, Any] | None = None,
    ) -> AccountInfo:
        address = keystore.address
        if address in self._keystore_files():
            raise AccountExists(f"account {address} is already in the wallet")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if sealed is None:
            sealed = seal_encryption_key(encryption_key, password, scrypt_n=self.seal_scrypt_n)
        # The encryption key first: the keystore's appearance is what makes the account exist.
        atomic_write_text(self._encryption_path(address), json.dumps(sealed))
        with _key_errors("save keystore"):
            save_keystore(self.directory, keystore)
        if not (self.directory / CURRENT_FILE).exists():
            self.switch(address)
        return self.get(address)

    # ------------------------------------------------------------------ using

    def unlock(self, address: str, password: str) -> UnlockedAccount:
        """Open the keystore and the encryption key; WrongPassword if either refuses.

        An account whose keystore came without an encryption key (a geth file copied into
        the directory) gets one here, sealed under the same password.
        """
        info = self.get(address)
        with _key_errors(f"unlock {info.address}"):
            account = unlock(load_keystore(info.keystore_path), password)
            sealed = self._sealed_encryption_key(info.address)
            if sealed is None:
                key = create_encryption_key()
                sealed = seal_encryption_key(key, password, scrypt_n=self.seal_scrypt_n)
                atomic_write_text(self._encryption_path(info.address), json.dumps(sealed))
            else:
                key = open_encryption_key(sealed, password)
        return UnlockedAccount(info.address, account, key)

    def unlock_current(self, password: str) -> UnlockedAccount:
        return self.unlock(self.current().address, password)

    def export_keystore(self, address: str) -> dict[str, Any]:
        """The v3 keystore alone (encrypted; for other Ethereum wallets)."""
        info = self.get(address)
        with _key_errors("export keystore"):
            return load_keystore(info.keystore_path)

    def export_backup(self, address: str, dest: Path | None = None) -> dict[str, Any]:
        """Keystore and sealed encryption key in one document (both stay encrypted).

        With `dest`, also written there (mode 0600; an existing file is never replaced).
        """
        info = self.get(address)
        sealed = self._sealed_encryption_key(info.address)
        if sealed is None:
            raise AccountError(f"account {info.address} has no encryption key yet: unlock it once first")
        with _key_errors("export backup"):
            backup = export_backup(load_keystore(info.keystore_path), sealed)
        if dest is not None:
            _write_new(Path(dest), json.dumps(backup, indent=1))
        return backup


def _check_new_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise AccountError("the password must not be empty")


def _write_new(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AccountError(f"refusing to overwrite {path}") from None
    except OSError as exc:
        raise AccountError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())

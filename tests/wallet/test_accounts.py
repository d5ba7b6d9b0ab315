"""Accounts: create, import, export, list, switch, unlock; private files, typed errors, no secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from cpchain.crypto import import_private_key, private_key_bytes, save_keystore, unwrap_key, wrap_key
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.errors import AccountError, AccountExists, NoCurrentAccount, UnknownAccount, WrongPassword

PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "keystore", fast_kdf=True)


def every_file(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


def test_create_unlock_and_private_files(store: AccountStore) -> None:
    info = store.create(PASSWORD)
    assert store.current() == info and store.list() == [info]
    assert info.encryption_public_key is not None and len(info.encryption_public_key) == 32
    unlocked = store.unlock(info.address, PASSWORD)
    assert unlocked.address == unlocked.account.address == info.address
    assert unlocked.encryption_public_key == info.encryption_public_key
    assert info.address in repr(unlocked) and "key" not in repr(unlocked).replace("encryption_key", "")
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    files = every_file(store.directory)
    assert len(files) == 3  # keystore, sealed encryption key, current
    key_hex = bytes(unlocked.account.key).hex()
    x25519_hex = private_key_bytes(unlocked.encryption_key).hex()
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        text = path.read_text()
        assert PASSWORD not in text and key_hex not in text and x25519_hex not in text


def test_wrong_password_unknown_account_and_empty_password(store: AccountStore) -> None:
    info = store.create(PASSWORD)
    with pytest.raises(WrongPassword) as err:
        store.unlock(info.address, "not it")
    assert "not it" not in str(err.value)
    with pytest.raises(UnknownAccount):
        store.unlock("0x" + "12" * 20, PASSWORD)
    with pytest.raises(UnknownAccount):
        store.switch("nonsense")
    with pytest.raises(AccountError, match="empty"):
        store.create("")


def test_no_account_selected(store: AccountStore) -> None:
    with pytest.raises(NoCurrentAccount):
        store.current()
    with pytest.raises(NoCurrentAccount):
        store.unlock_current(PASSWORD)


def test_several_accounts_and_switching(store: AccountStore) -> None:
    first = store.create(PASSWORD)
    second = store.create("another password")
    assert store.current() == first  # creating does not move the selection
    assert [a.address for a in store.list()] == sorted([first.address, second.address])
    store.switch(second.address.lower())
    assert store.current() == second
    assert store.unlock_current("another password").address == second.address
    (store.directory / "current").write_text("0x" + "99" * 20)
    with pytest.raises(NoCurrentAccount, match="no longer"):
        store.current()


def test_backup_round_trip_keeps_both_keys(store: AccountStore, tmp_path: Path) -> None:
    info = store.create(PASSWORD)
    unlocked = store.unlock(info.address, PASSWORD)
    wrapped = wrap_key(unlocked.encryption_public_key, b"d" * 32)  # e.g. a purchase's data key
    dest = tmp_path / "backup.json"
    backup = store.export_backup(info.address, dest)
    assert json.loads(dest.read_text()) == backup and stat.S_IMODE(dest.stat().st_mode) == 0o600
    with pytest.raises(AccountError, match="refusing to overwrite"):
        store.export_backup(info.address, dest)

    other = AccountStore(tmp_path / "elsewhere", fast_kdf=True)
    with pytest.raises(WrongPassword):
        other.import_backup(dest, "wrong")
    assert other.list() == []
    restored = other.import_backup(dest, PASSWORD)
    assert restored.address == info.address and restored.encryption_public_key == info.encryption_public_key
    assert unwrap_key(other.unlock(info.address, PASSWORD).encryption_key, wrapped) == b"d" * 32
    with pytest.raises(AccountExists):
        other.import_backup(backup, PASSWORD)


def test_import_private_key_and_keystore(store: AccountStore, tmp_path: Path) -> None:
    account = Account.create()
    info = store.import_private_key(bytes(account.key).hex(), PASSWORD)
    assert info.address == account.address
    with pytest.raises(AccountExists):
        store.import_private_key("0x" + bytes(account.key).hex(), PASSWORD)
    with pytest.raises(AccountError, match="64 hex digits") as err:
        store.import_private_key("12ab", PASSWORD)
    assert "12ab" not in str(err.value)

    exported = store.export_keystore(info.address)
    elsewhere = AccountStore(tmp_path / "other", fast_kdf=True)
    with pytest.raises(WrongPassword):
        elsewhere.import_keystore(json.dumps(exported), "wrong")
    assert elsewhere.import_keystore(exported, PASSWORD).address == account.address
    with pytest.raises(AccountError):
        elsewhere.import_keystore("{not a keystore", PASSWORD)


def test_a_geth_keystore_dropped_in_gets_its_encryption_key_on_first_unlock(store: AccountStore) -> None:
    account = Account.create()
    save_keystore(store.directory, import_private_key(bytes(account.key).hex(), PASSWORD, fast_kdf=True))
    listed = store.get(account.address)
    assert listed.encryption_public_key is None
    with pytest.raises(AccountError, match="unlock it once"):
        store.export_backup(account.address)
    with pytest.raises(WrongPassword):
        store.unlock(account.address, "wrong")
    assert store.get(account.address).encryption_public_key is None  # nothing written on a wrong password
    unlocked = store.unlock(account.address, PASSWORD)
    assert store.get(account.address).encryption_public_key == unlocked.encryption_public_key
    assert store.unlock(account.address, PASSWORD).encryption_public_key == unlocked.encryption_public_key

"""Tests for cpchain.crypto.keystore: keystores, password files, sealed secrets, backups."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from cpchain.crypto import (
    DecryptionFailed,
    InsecurePasswordFile,
    InvalidArgument,
    InvalidBackup,
    InvalidKeystore,
    InvalidPrivateKey,
    KeystoreAccount,
    KeystoreError,
    KeystoreExists,
    MalformedCiphertext,
    PasswordFileError,
    WrongPassword,
    create_account,
    create_encryption_key,
    export_backup,
    export_keystore,
    import_backup,
    import_keystore,
    import_private_key,
    load_keystore,
    open_encryption_key,
    open_secret,
    public_key_bytes,
    read_password_file,
    save_keystore,
    seal_encryption_key,
    seal_secret,
    unlock,
    unwrap_key,
    wrap_key,
)
from cpchain.crypto import keystore as keystore_mod

KEY_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_ADDRESS = Account.from_key(bytes.fromhex(KEY_HEX)).address

# Web3 Secret Storage test vector (PBKDF2), from the Ethereum wiki.
SPEC_VECTOR: dict[str, Any] = {
    "crypto": {
        "cipher": "aes-128-ctr",
        "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
        "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
        "kdf": "pbkdf2",
        "kdfparams": {
            "c": 262144,
            "dklen": 32,
            "prf": "hmac-sha256",
            "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd",
        },
        "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2",
    },
    "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
    "version": 3,
}
SPEC_KEY = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
FILENAME_RE = re.compile(r"UTC--\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{9}Z--[0-9a-f]{40}")


# --- accounts ----------------------------------------------------------------------


def test_create_and_unlock(fast_account: KeystoreAccount, password: str) -> None:
    ks = fast_account.keystore
    assert ks["version"] == 3 and ks["crypto"]["kdf"] == "pbkdf2"
    acct = unlock(fast_account, password)
    assert acct.address == fast_account.address
    assert unlock(ks, password).address == fast_account.address
    assert unlock(json.dumps(ks), password).address == fast_account.address


def test_create_accounts_are_distinct(password: str) -> None:
    a = create_account(password, fast_kdf=True)
    b = create_account(password, fast_kdf=True)
    assert a.address != b.address


def test_scrypt_is_the_default_kdf(password: str) -> None:
    acct = create_account(password, kdf_iterations=2**4)
    params = acct.keystore["crypto"]["kdfparams"]
    assert acct.keystore["crypto"]["kdf"] == "scrypt"
    assert params["n"] == 2**4
    assert unlock(acct, password).address == acct.address
    assert keystore_mod._kdf_choice(False, None) == ("scrypt", 2**18)
    assert keystore_mod._kdf_choice(True, None) == ("pbkdf2", 1024)
    assert keystore_mod._kdf_choice(True, 7) == ("pbkdf2", 7)


@pytest.mark.parametrize("iterations", [0, -1, 3, 2**21])
def test_bad_kdf_iterations(password: str, iterations: int) -> None:
    with pytest.raises(InvalidArgument):
        create_account(password, kdf_iterations=iterations)


def test_wrong_password(fast_account: KeystoreAccount) -> None:
    with pytest.raises(WrongPassword):
        unlock(fast_account, "wrong")
    with pytest.raises(WrongPassword):
        unlock(fast_account, "")


def test_password_must_be_str(fast_account: KeystoreAccount) -> None:
    with pytest.raises(InvalidArgument):
        unlock(fast_account, b"bytes")  # type: ignore[arg-type]


def test_spec_test_vector() -> None:
    acct = unlock(SPEC_VECTOR, "testpassword")
    assert bytes(acct.key).hex() == SPEC_KEY
    with pytest.raises(WrongPassword):
        unlock(SPEC_VECTOR, "testpassworD")


def test_capitalised_crypto_key_is_accepted() -> None:
    ks = copy.deepcopy(SPEC_VECTOR)
    ks["Crypto"] = ks.pop("crypto")
    assert bytes(unlock(ks, "testpassword").key).hex() == SPEC_KEY


@pytest.mark.parametrize("key", [KEY_HEX, "0x" + KEY_HEX, "0X" + KEY_HEX.upper(), bytes.fromhex(KEY_HEX)])
def test_import_private_key(key: str | bytes, password: str) -> None:
    acct = import_private_key(key, password, fast_kdf=True)
    assert acct.address == KEY_ADDRESS
    assert bytes(unlock(acct, password).key).hex() == KEY_HEX


@pytest.mark.parametrize(
    "key",
    [
        "",
        "0x",
        KEY_HEX[:-2],
        KEY_HEX + "00",
        "zz" + KEY_HEX[2:],
        "00" * 32,
        "ff" * 32,
        b"\x01" * 31,
        12345,
    ],
)
def test_import_invalid_private_key(key: Any, password: str) -> None:
    with pytest.raises(InvalidPrivateKey) as info:
        import_private_key(key, password, fast_kdf=True)
    if isinstance(key, str) and len(key) > 8:
        assert key[4:-4] not in str(info.value)  # never echo key material


def test_import_keystore_variants(tmp_path: Path, fast_account: KeystoreAccount, password: str) -> None:
    ks = fast_account.keystore
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(ks))
    for source in (ks, json.dumps(ks), json.dumps(ks).encode(), "  " + json.dumps(ks), path, str(path)):
        imported = import_keystore(source, password)
        assert imported.address == fast_account.address
        assert imported.keystore["crypto"] == ks["crypto"]


def test_import_keystore_wrong_password(fast_account: KeystoreAccount) -> None:
    with pytest.raises(WrongPassword):
        import_keystore(fast_account.keystore, "nope")


def test_import_keystore_errors(tmp_path: Path, password: str) -> None:
    with pytest.raises(InvalidKeystore):
        import_keystore("{not json", password)
    with pytest.raises(KeystoreError):
        import_keystore(tmp_path / "missing.json", password)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(InvalidKeystore):
        import_keystore(tmp_path / "bad.json", password)
    (tmp_path / "big.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(KeystoreError, match="too large"):
        load_keystore(tmp_path / "big.json")


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("version", 4),
        ("crypto.cipher", "aes-256-cbc"),
        ("crypto.kdf", "argon2"),
        ("crypto.mac", "zz"),
        ("crypto.ciphertext", "00"),
        ("crypto.cipherparams.iv", "00"),
        ("crypto.kdfparams.dklen", 16),
        ("crypto.kdfparams.c", 10**9),  # would take minutes: refused up front
        ("crypto.kdfparams.c", True),
        ("crypto.kdfparams.prf", "hmac-md5"),
        ("crypto.kdfparams.salt", "xyz"),
        ("address", "not-an-address"),
        ("crypto", None),
    ]


@pytest.mark.parametrize(("path", "value"), _mutations())
def test_invalid_keystores_are_refused(path: str, value: Any) -> None:
    ks = copy.deepcopy(SPEC_VECTOR)
    node = ks
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(InvalidKeystore):
        unlock(ks, "testpassword")


def test_expensive_scrypt_keystore_is_refused(fast_account: KeystoreAccount, password: str) -> None:
    acct = create_account(password, kdf_iterations=2**4)
    ks = copy.deepcopy(acct.keystore)
    ks["crypto"]["kdfparams"]["n"] = 2**30
    with pytest.raises(InvalidKeystore):
        unlock(ks, password)
    ks["crypto"]["kdfparams"]["n"] = 1000  # not a power of two
    with pytest.raises(InvalidKeystore):
        unlock(ks, password)


def test_address_mismatch_is_refused(fast_account: KeystoreAccount, password: str) -> None:
    ks = copy.deepcopy(fast_account.keystore)
    ks["address"] = "11" * 20
    with pytest.raises(InvalidKeystore, match="address"):
        unlock(ks, password)


def test_export_keystore_is_a_copy(fast_account: KeystoreAccount) -> None:
    exported = export_keystore(fast_account)
    assert exported == fast_account.keystore
    exported["crypto"]["mac"] = "00"
    assert fast_account.keystore["crypto"]["mac"] != "00"


def test_repr_leaks_nothing(fast_account: KeystoreAccount) -> None:
    text = repr(fast_account)
    assert fast_account.keystore["crypto"]["ciphertext"] not in text
    assert fast_account.address in text


# --- keystore files -------------------------------------------------------------------


def test_save_keystore(tmp_path: Path, fast_account: KeystoreAccount, password: str) -> None:
    target = tmp_path / "keys" / "nested"
    path = save_keystore(target, fast_account)
    assert FILENAME_RE.fullmatch(path.name)
    assert path.name.endswith(fast_account.address[2:].lower())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert load_keystore(path) == fast_account.keystore
    assert import_keystore(path, password).address == fast_account.address
    assert [p.name for p in target.iterdir()] == [path.name]  # no temp files left


def test_save_keystore_name_uses_utc(tmp_path: Path, fast_account: KeystoreAccount) -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    path = save_keystore(tmp_path, fast_account.keystore, timestamp=when)
    assert path.name == f"UTC--2024-01-02T03-04-05.678901000Z--{fast_account.address[2:].lower()}"


def test_save_keystore_never_overwrites(tmp_path: Path, fast_account: KeystoreAccount, password: str) -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    path = save_keystore(tmp_path, fast_account, timestamp=when)
    before = path.read_bytes()
    other = create_account(password, fast_kdf=True)
    forged = dict(other.keystore, address=fast_account.keystore["address"])
    with pytest.raises(KeystoreExists):
        save_keystore(tmp_path, forged, timestamp=when)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_keystore_race_lost_at_link_time(
    tmp_path: Path, fast_account: KeystoreAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer creates the file between our existence check and the link."""
    when = datetime(2024, 1, 2, tzinfo=UTC)
    real_link = os.link

    def racing_link(src: Any, dst: Any) -> None:
        Path(dst).write_text("other writer")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(KeystoreExists):
        save_keystore(tmp_path, fast_account, timestamp=when)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].read_text() == "other writer"


def test_save_keystore_without_hard_links(
    tmp_path: Path, fast_account: KeystoreAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: Any, dst: Any) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    when = datetime(2024, 1, 2, tzinfo=UTC)
    path = save_keystore(tmp_path, fast_account, timestamp=when)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keystore(path) == fast_account.keystore
    with pytest.raises(KeystoreExists):
        save_keystore(tmp_path, fast_account, timestamp=when)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_keystore_requires_address(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeystore):
        save_keystore(tmp_path, SPEC_VECTOR)
    with pytest.raises(InvalidKeystore):
        save_keystore(tmp_path, {"version": 3})


# --- password files -------------------------------------------------------------------


def _pw_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "pw"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"secret", "secret"),
        (b"secret\n", "secret"),
        (b"secret\r\n", "secret"),
        (b"secret\n\n", "secret\n"),
        (b" spaced \n", " spaced "),
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_read_password_file(tmp_path: Path, content: bytes, expected: str) -> None:
    assert read_password_file(_pw_file(tmp_path, content)) == expected


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o777, 0o610])
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_insecure_password_file(tmp_path: Path, mode: int) -> None:
    path = _pw_file(tmp_path, b"hunter2\n", mode)
    with pytest.raises(InsecurePasswordFile, match="chmod 600") as info:
        read_password_file(path)
    assert "hunter2" not in str(info.value)


def test_owner_only_modes_are_fine(tmp_path: Path) -> None:
    assert read_password_file(_pw_file(tmp_path, b"pw", 0o400)) == "pw"


def test_password_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PasswordFileError):
        read_password_file(tmp_path / "missing")
    with pytest.raises(PasswordFileError, match="empty"):
        read_password_file(_pw_file(tmp_path, b"\n"))
    with pytest.raises(PasswordFileError, match="UTF-8"):
        read_password_file(_pw_file(tmp_path, b"\xff\xfe"))
    with pytest.raises(PasswordFileError, match="too large"):
        read_password_file(_pw_file(tmp_path, b"x" * 70_000))
    sub = tmp_path / "dir"
    sub.mkdir(mode=0o700)
    with pytest.raises(PasswordFileError):
        read_password_file(sub)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_password_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(PasswordFileError, match="regular file"):
        read_password_file(fifo)


# --- sealed secrets ---------------------------------------------------------------------


def test_seal_open_round_trip(password: str, scrypt_n: int) -> None:
    for secret in (b"", b"s3-access-key:secret", os.urandom(1000)):
        sealed = seal_secret(secret, password, scrypt_n=scrypt_n)
        assert open_secret(sealed, password) == secret
        assert open_secret(json.dumps(sealed), password) == secret
        assert json.loads(json.dumps(sealed)) == sealed
    assert sealed["version"] == 1 and sealed["cipher"] == "aes-256-gcm"


def test_seal_default_cost_is_2_pow_14(password: str) -> None:
    sealed = seal_secret(b"x", password)
    assert sealed["kdfparams"]["n"] == 2**14
    assert open_secret(sealed, password) == b"x"


def test_sealed_secrets_are_randomised(password: str, scrypt_n: int) -> None:
    a = seal_secret(b"same", password, scrypt_n=scrypt_n)
    b = seal_secret(b"same", password, scrypt_n=scrypt_n)
    assert a["kdfparams"]["salt"] != b["kdfparams"]["salt"]
    assert a["ciphertext"] != b["ciphertext"]


def test_open_secret_wrong_password(password: str, scrypt_n: int) -> None:
    sealed = seal_secret(b"secret", password, scrypt_n=scrypt_n)
    with pytest.raises(WrongPassword) as info:
        open_secret(sealed, password + "x")
    assert password not in str(info.value)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(ciphertext=("00" if d["ciphertext"][:2] != "00" else "11") + d["ciphertext"][2:]),
        lambda d: d.update(nonce="00" * 12),
        lambda d: d["kdfparams"].update(n=d["kdfparams"]["n"] * 2),
        lambda d: d["kdfparams"].update(salt="00" * 16),
        lambda d: d["meta"].update(kind="other"),
    ],
)
def test_tampered_sealed_secret(password: str, scrypt_n: int, mutate: Any) -> None:
    sealed = seal_secret(b"secret", password, scrypt_n=scrypt_n, meta={"kind": "test"})
    mutate(sealed)
    with pytest.raises(WrongPassword):
        open_secret(sealed, password)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(type="other"),
        lambda d: d.update(version=2),
        lambda d: d.update(kdf="pbkdf2"),
        lambda d: d.update(cipher="aes-128-gcm"),
        lambda d: d.update(nonce="00"),
        lambda d: d.update(ciphertext="zz"),
        lambda d: d.update(ciphertext="00" * 4),
        lambda d: d.pop("meta"),
        lambda d: d.update(meta={"a": 1}),
        lambda d: d.update(kdfparams=None),
        lambda d: d["kdfparams"].update(n=2**30),
        lambda d: d["kdfparams"].update(n=1000),
        lambda d: d["kdfparams"].update(r=0),
        lambda d: d["kdfparams"].update(p=True),
        lambda d: d["kdfparams"].update(salt="00"),
    ],
)
def test_malformed_sealed_secret(password: str, scrypt_n: int, mutate: Any) -> None:
    sealed = seal_secret(b"secret", password, scrypt_n=scrypt_n)
    mutate(sealed)
    with pytest.raises(MalformedCiphertext):
        open_secret(sealed, password)


@pytest.mark.parametrize("bad", ["not json", "[]", b"{}", 42])
def test_malformed_sealed_document(password: str, bad: Any) -> None:
    with pytest.raises(MalformedCiphertext):
        open_secret(bad, password)


def test_seal_secret_bad_arguments(password: str) -> None:
    with pytest.raises(InvalidArgument):
        seal_secret(b"x" * 70_000, password)
    with pytest.raises(InvalidArgument):
        seal_secret("text", password)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        seal_secret(b"x", password, scrypt_n=1000)
    with pytest.raises(InvalidArgument):
        seal_secret(b"x", password, scrypt_n=2**8, meta={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        seal_secret(b"x", None, scrypt_n=2**8)  # type: ignore[arg-type]


def test_wrong_password_is_a_keystore_error_not_decryption_failed(password: str, scrypt_n: int) -> None:
    sealed = seal_secret(b"x", password, scrypt_n=scrypt_n)
    with pytest.raises(KeystoreError):
        open_secret(sealed, "bad")
    try:
        open_secret(sealed, "bad")
    except DecryptionFailed:  # pragma: no cover - documents the hierarchy
        pytest.fail("WrongPassword must not be a DecryptionFailed")
    except WrongPassword:
        pass


# --- encryption key ---------------------------------------------------------------------


def test_encryption_key_seal_and_use(password: str, scrypt_n: int) -> None:
    priv = create_encryption_key()
    sealed = seal_encryption_key(priv, password, scrypt_n=scrypt_n)
    assert sealed["meta"] == {"kind": "x25519", "public_key": public_key_bytes(priv).hex()}
    opened = open_encryption_key(sealed, password)
    assert public_key_bytes(opened) == public_key_bytes(priv)
    wrapped = wrap_key(bytes.fromhex(sealed["meta"]["public_key"]), b"k" * 32)
    assert unwrap_key(opened, wrapped) == b"k" * 32
    with pytest.raises(WrongPassword):
        open_encryption_key(sealed, "bad")


def test_open_encryption_key_rejects_other_secrets(password: str, scrypt_n: int) -> None:
    with pytest.raises(MalformedCiphertext):
        open_encryption_key(seal_secret(b"x" * 32, password, scrypt_n=scrypt_n), password)
    short = seal_secret(b"x" * 31, password, scrypt_n=scrypt_n, meta={"kind": "x25519"})
    with pytest.raises(MalformedCiphertext):
        open_encryption_key(short, password)
    mismatched = seal_secret(b"x" * 32, password, scrypt_n=scrypt_n, meta={"kind": "x25519", "public_key": "00" * 32})
    with pytest.raises(MalformedCiphertext):
        open_encryption_key(mismatched, password)


# --- backups ----------------------------------------------------------------------------


@pytest.fixture
def backup_parts(fast_account: KeystoreAccount, password: str, scrypt_n: int) -> tuple[KeystoreAccount, dict[str, Any]]:
    sealed = seal_encryption_key(create_encryption_key(), password, scrypt_n=scrypt_n)
    return fast_account, sealed


def test_backup_round_trip(backup_parts: tuple[KeystoreAccount, dict[str, Any]], password: str) -> None:
    account, sealed = backup_parts
    backup = export_backup(account, sealed)
    assert backup["type"] == "pdash-wallet-backup" and backup["address"] == account.address
    restored = import_backup(json.dumps(backup), password)
    assert restored.account.address == account.address
    assert restored.account.keystore == account.keystore
    assert restored.encryption_public_key.hex() == sealed["meta"]["public_key"]
    assert restored.sealed_encryption_key == sealed
    assert unlock(restored.account, password).address == account.address
    assert "encryption_key=" not in repr(restored)
    assert import_backup(backup, password).account == restored.account


def test_backup_wrong_password(backup_parts: tuple[KeystoreAccount, dict[str, Any]]) -> None:
    backup = export_backup(*backup_parts)
    with pytest.raises(WrongPassword):
        import_backup(backup, "wrong")


def test_backup_with_mismatched_passwords(fast_account: KeystoreAccount, password: str, scrypt_n: int) -> None:
    sealed = seal_encryption_key(create_encryption_key(), "another password", scrypt_n=scrypt_n)
    backup = export_backup(fast_account, sealed)
    with pytest.raises(WrongPassword, match="encryption key"):
        import_backup(backup, password)
    with pytest.raises(WrongPassword):
        import_backup(backup, "another password")  # opens the key but not the keystore


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(type="x"),
        lambda b: b.update(version=9),
        lambda b: b.update(address="0x" + "12" * 20),
        lambda b: b.update(address="nope"),
        lambda b: b.pop("keystore"),
        lambda b: b.update(keystore={"version": 3}),
        lambda b: b.update(encryption_key={"type": "x"}),
        lambda b: b["encryption_key"]["meta"].pop("kind"),
    ],
)
def test_malformed_backup(backup_parts: tuple[KeystoreAccount, dict[str, Any]], password: str, mutate: Any) -> None:
    backup = export_backup(*backup_parts)
    mutate(backup)
    with pytest.raises(InvalidBackup):
        import_backup(backup, password)


@pytest.mark.parametrize("bad", ["not json", "[]", b"null"])
def test_backup_not_an_object(password: str, bad: Any) -> None:
    with pytest.raises(InvalidBackup):
        import_backup(bad, password)


def test_export_backup_validates(fast_account: KeystoreAccount) -> None:
    with pytest.raises(InvalidBackup):
        export_backup(fast_account, {"type": "nope"})
    with pytest.raises(InvalidBackup):
        export_backup({"version": 1}, {"type": "nope"})


# --- secrets never leak ------------------------------------------------------------------


def test_no_secret_in_logs_or_errors(caplog: pytest.LogCaptureFixture, tmp_path: Path, scrypt_n: int) -> None:
    secret_pw = "Sup3r-Secret-Pa55"
    caplog.set_level(logging.DEBUG)
    acct = import_private_key(KEY_HEX, secret_pw, fast_kdf=True)
    save_keystore(tmp_path, acct)
    errors: list[str] = []
    for attempt in (
        lambda: unlock(acct, secret_pw + "!"),
        lambda: open_secret(seal_secret(b"x", secret_pw, scrypt_n=scrypt_n), secret_pw + "!"),
    ):
        with pytest.raises(WrongPassword) as info:
            attempt()
        errors.append(str(info.value))
    text = caplog.text + "".join(errors) + "".join(p.read_text() for p in tmp_path.iterdir())
    assert secret_pw not in text
    assert KEY_HEX not in text.lower()

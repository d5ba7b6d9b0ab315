"""Wallet storage settings: plugins built from [wallet.storage], S3 keys only in the sealed,
password-protected store (mode 0600), never in plaintext on disk, in reprs or in logs."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from cpchain.config import Config, ConfigError, load_config
from cpchain.crypto import WrongPassword
from cpchain.storage import IpfsStorage, LocalStorage, S3Storage, StorageError
from cpchain.storage.devservers import MotoS3
from cpchain.storage.settings import CredentialStore, build_plugin, credential_store
from tests.storage.conftest import BUCKET, CREDENTIALS
from tests.storage.helpers import make_file

PASSWORD = "correct horse battery staple"


def wallet_config(tmp_path: Path, storage: dict[str, Any] | None = None) -> Config:
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    return config.with_overrides({"wallet": {"storage": storage or {}}})


def test_the_default_plugin_is_local_under_rc_dir(tmp_path: Path) -> None:
    plugin = build_plugin(wallet_config(tmp_path))
    assert isinstance(plugin, LocalStorage) and plugin.root == (tmp_path / "storage").resolve()
    make_file(tmp_path / "c.bin", 10)
    assert Path(str(plugin.upload(tmp_path / "c.bin").params["path"])).parent == plugin.root


def test_ipfs_plugin_from_config(tmp_path: Path) -> None:
    config = wallet_config(tmp_path, {"ipfs": {"api": "http://10.0.0.5:5001/", "public_api": "https://ipfs.example"}})
    plugin = build_plugin(config, "ipfs")
    assert isinstance(plugin, IpfsStorage)
    assert (plugin.api, plugin.public_api) == ("http://10.0.0.5:5001", "https://ipfs.example")
    bad = wallet_config(tmp_path, {"ipfs": {"api": "ftp://x"}})
    with pytest.raises(ConfigError, match=r"section 'wallet\.storage\.ipfs': IPFS API must be an http"):
        build_plugin(bad, "ipfs")


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"default": "dropbox"}, r"key 'wallet\.storage\.default' must be one of local, ipfs, s3, got 'dropbox'"),
        ({"default": "s3"}, r"missing key 'wallet\.storage\.s3\.bucket'"),
        ({"default": "s3", "s3": {"bucket": "b", "part_size_mib": 1}}, r"'wallet\.storage\.s3\.part_size_mib' must be"),
        ({"default": "s3", "s3": {"bucket": "b", "presign_seconds": 10**6}}, r"presign_seconds' must be between"),
        ({"default": "s3", "s3": {"bucket": "b", "endpoint": "s3.example"}}, r"S3 endpoint must be an http"),
    ],
)
def test_bad_storage_settings_name_the_key(tmp_path: Path, storage: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_plugin(wallet_config(tmp_path, storage), password=PASSWORD)


def test_a_type_the_wallet_cannot_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot build a 'proxy' plugin from its config"):
        build_plugin(wallet_config(tmp_path), "proxy")


def test_credentials_are_sealed_in_a_private_file(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "wallet" / "creds.json")
    assert store.s3(PASSWORD) is None
    store.save({"other": {"token": "kept"}}, PASSWORD)
    store.set_s3(CREDENTIALS, PASSWORD)
    raw = store.path.read_text()
    assert CREDENTIALS.secret_access_key not in raw and CREDENTIALS.access_key_id not in raw
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.s3(PASSWORD) == CREDENTIALS
    assert store.load(PASSWORD)["other"] == {"token": "kept"}
    with pytest.raises(WrongPassword):
        store.s3("wrong password")
    assert CREDENTIALS.secret_access_key not in repr(CREDENTIALS) + str(CREDENTIALS)
    assert leftover_temp_files(store.path.parent) == []


def leftover_temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_s3_plugin_needs_the_password_and_stored_keys(tmp_path: Path) -> None:
    config = wallet_config(tmp_path, {"default": "s3", "s3": {"bucket": BUCKET}})
    with pytest.raises(StorageError, match="wallet password is needed"):
        build_plugin(config)
    with pytest.raises(StorageError, match=r"no S3 credentials in .*storage-credentials\.json"):
        build_plugin(config, password=PASSWORD)
    credential_store(config).set_s3(CREDENTIALS, PASSWORD)
    with pytest.raises(WrongPassword):
        build_plugin(config, password="not it")


def test_s3_plugin_from_config_uploads_without_logging_the_secret(
    tmp_path: Path, moto: MotoS3, caplog: pytest.LogCaptureFixture
) -> None:
    config = wallet_config(
        tmp_path,
        {"default": "s3", "s3": {"bucket": BUCKET, "endpoint": moto.endpoint, "prefix": "w/", "presign_seconds": 900}},
    )
    credential_store(config).set_s3(CREDENTIALS, PASSWORD)
    caplog.set_level(logging.DEBUG)
    plugin = build_plugin(config, password=PASSWORD)
    assert isinstance(plugin, S3Storage)
    make_file(tmp_path / "c.bin", 1000)
    locator = plugin.upload(tmp_path / "c.bin")
    presigned = plugin.presign(locator)
    plugin.download(locator, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "c.bin").read_bytes()
    assert str(locator.params["key"]).startswith("w/") and "X-Amz-Expires=900" in str(presigned.params["url"])
    assert "botocore" in caplog.text  # boto3 did log at DEBUG, and the secret is nowhere in it
    assert CREDENTIALS.secret_access_key not in caplog.text

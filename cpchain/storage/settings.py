"""Storage plugins built from the wallet's config, and the sealed store of their secrets.

Owns `[wallet.storage]`: which plugin takes new uploads, the local directory, the IPFS API,
the S3 endpoint and bucket. Secrets (S3 access keys) never go in the config:
CredentialStore seals them under the wallet password (cpchain.crypto.seal_secret: scrypt +
AES-256-GCM) in one file of mode 0600, so they are plaintext only in memory, and
S3Credentials keeps the secret out of reprs and so out of log lines. The `proxy` plugin is
not built here: its uploads need the proxy chosen for a trade and the unlocked account.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cpchain.config import Config, ConfigError
from cpchain.crypto import MalformedCiphertext, open_secret, seal_secret
from cpchain.fsutil import atomic_write_text
from cpchain.storage.base import LocatorError, Plugin, StorageError
from cpchain.storage.httpfetch import parse_url
from cpchain.storage.ipfs import IpfsStorage
from cpchain.storage.local import LocalStorage
from cpchain.storage.s3 import S3Credentials, S3Settings, S3Storage

STORE_KIND = "pdash-storage-credentials"
MIB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
MIN_PART_MIB = 5  # S3's smallest multipart part


class CredentialStore:
    """Storage secrets, `{"s3": {"access_key_id": ..., "secret_access_key": ...}}`, sealed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, password: str) -> dict[str, dict[str, str]]:
        """Everything stored (empty if there is no file); WrongPassword if `password` is wrong."""
        if not self.path.exists():
            return {}
        sealed = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(sealed, dict) or sealed.get("meta", {}).get("kind") != STORE_KIND:
            raise MalformedCiphertext(f"{self.path} is not a storage credentials file")
        data = json.loads(open_secret(sealed, password))
        if not isinstance(data, dict):
            raise MalformedCiphertext(f"{self.path} holds no credentials table")
        return data

    def save(self, data: dict[str, dict[str, str]], password: str) -> None:
        sealed = seal_secret(json.dumps(data).encode("utf-8"), password, meta={"kind": STORE_KIND})
        atomic_write_text(self.path, json.dumps(sealed), mode=0o600)

    def set_s3(self, credentials: S3Credentials, password: str) -> None:
        """Store (or replace) the S3 key pair, keeping any other secret in the file."""
        data = self.load(password)
        data["s3"] = {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key}
        self.save(data, password)

    def s3(self, password: str) -> S3Credentials | None:
        entry = self.load(password).get("s3")
        if entry is None:
            return None
        return S3Credentials(entry["access_key_id"], entry["secret_access_key"])


def credential_store(config: Config) -> CredentialStore:
    return CredentialStore(config.path("wallet.storage.credentials_file"))


@contextmanager
def _key_errors(config: Config, section: str) -> Iterator[None]:
    """A malformed URL in the config is a ConfigError naming the section and the file."""
    try:
        yield
    except LocatorError as exc:
        raise ConfigError(f"{config.where}: section '{section}': {exc}") from None


def s3_settings(config: Config) -> S3Settings:
    section = config.section("wallet.storage.s3")
    settings = S3Settings(
        bucket=str(config.require("wallet.storage.s3.bucket")),
        endpoint=str(section["endpoint"]),
        region=str(section["region"]),
        prefix=str(section["prefix"]),
    )
    if settings.endpoint:
        with _key_errors(config, "wallet.storage.s3"):
            parse_url(settings.endpoint, "S3 endpoint")
    return settings


def _in_range(config: Config, key: str, low: int, high: int) -> int:
    value = int(config.get(key))
    if not low <= value <= high:
        raise ConfigError(f"{config.where}: key '{key}' must be between {low} and {high}, got {value}")
    return value


def _local(config: Config, password: str | None) -> Plugin:
    return LocalStorage(config.path("wallet.storage.local_dir"))


def _ipfs(config: Config, password: str | None) -> Plugin:
    section = config.section("wallet.storage.ipfs")
    with _key_errors(config, "wallet.storage.ipfs"):
        return IpfsStorage(
            str(config.require("wallet.storage.ipfs.api")),
            public_api=str(section["public_api"]) or None,
            timeout=float(section["timeout_seconds"]),
        )


def _s3(config: Config, password: str | None) -> Plugin:
    settings = s3_settings(config)
    part_mib = _in_range(config, "wallet.storage.s3.part_size_mib", MIN_PART_MIB, 5 * 1024)
    presign = _in_range(config, "wallet.storage.s3.presign_seconds", 1, MAX_PRESIGN_SECONDS)
    store = credential_store(config)
    if password is None:
        raise StorageError("the wallet password is needed to open the S3 credentials")
    credentials = store.s3(password)
    if credentials is None:
        raise StorageError(f"no S3 credentials in {store.path}; store them with CredentialStore.set_s3")
    return S3Storage(
        settings,
        credentials,
        timeout=float(config.get("wallet.storage.s3.timeout_seconds")),
        part_size=part_mib * MIB,
        presign_expires=presign,
    )


# The plugins a wallet builds from its config alone, by locator type.
BUILDERS: dict[str, Callable[[Config, str | None], Plugin]] = {"local": _local, "ipfs": _ipfs, "s3": _s3}


def build_plugin(config: Config, kind: str | None = None, *, password: str | None = None) -> Plugin:
    """The wallet's plugin of type `kind` (default: `wallet.storage.default`).

    `password` (the wallet's) is needed only by plugins with sealed secrets (s3).
    """
    if kind is None:
        kind = str(config.get("wallet.storage.default"))
        if kind not in BUILDERS:
            raise ConfigError(
                f"{config.where}: key 'wallet.storage.default' must be one of {', '.join(BUILDERS)}, got '{kind}'"
            )
    builder = BUILDERS.get(kind)
    if builder is None:
        raise StorageError(f"the wallet cannot build a {kind!r} plugin from its config; one of {', '.join(BUILDERS)}")
    return builder(config, password)

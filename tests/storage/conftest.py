"""The storage tests' plugins and routes over the real servers of tests/conftest.py (the
session's js-ipfs daemon and moto S3 server, shared with the proxy tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.storage import FetchPolicy, IpfsStorage, LocalStorage, S3Credentials, S3Settings, S3Storage
from cpchain.storage.devservers import MotoS3
from tests.conftest import S3_BUCKET
from tests.storage.helpers import Route

BUCKET = S3_BUCKET
# moto accepts any key pair; these stand for a seller's real, secret ones.
CREDENTIALS = S3Credentials("AKIAPDASHTESTKEY0001", "pdash-test-secret-9f8e7d6c5b4a")
PART = 8 << 20


@pytest.fixture
def seller_s3(moto: MotoS3) -> S3Storage:
    """The seller's S3 plugin: its own bucket and key pair, 8 MiB parts."""
    return S3Storage(S3Settings(BUCKET, moto.endpoint, prefix="t/"), CREDENTIALS, part_size=PART)


@pytest.fixture
def loopback_policy() -> FetchPolicy:
    """A proxy operator's policy that lets it fetch from this machine's test servers."""
    return FetchPolicy.of(["local", "ipfs", "s3"], 1 << 40, allow_internal=True, timeout=30)


ROUTES = ["local", "ipfs-own-node", "ipfs-proxy", "s3-own-bucket", "s3-presigned"]


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest, tmp_path: Path, loopback_policy: FetchPolicy) -> Route:
    """Each way data travels: the seller's plugin uploads; the seller itself, or a proxy
    under its fetch policy (with a presigned URL for S3), downloads."""
    name = request.param
    if name == "local":
        store = LocalStorage(tmp_path / "store")
        return Route(store, store)
    if name.startswith("ipfs"):
        api = request.getfixturevalue("ipfs_daemon").api
        seller = IpfsStorage(api)
        return Route(seller, seller if name == "ipfs-own-node" else IpfsStorage(policy=loopback_policy))
    seller_s3: S3Storage = request.getfixturevalue("seller_s3")
    if name == "s3-own-bucket":
        return Route(seller_s3, seller_s3)
    return Route(seller_s3, S3Storage(policy=loopback_policy), seller_s3.presign)

"""Test-wide settings: an isolated CPCHAIN_HOME so no test reads or writes ~/.cpchain; the
real storage servers (one js-ipfs daemon and one moto S3 server per session, started on
127.0.0.1 only when a test asks for them), shared by the storage and the proxy tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cpchain.storage.devservers import JsIpfsDaemon, MotoS3

S3_BUCKET = "pdash-test"  # created on the session's moto server


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cpchain-home")
    monkeypatch.setenv("CPCHAIN_HOME", str(home))
    monkeypatch.delenv("CPCHAIN_HOME_CONFIG_PATH", raising=False)
    yield home


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsIpfsDaemon]:
    from cpchain.storage.devservers import DevServerError, JsIpfsDaemon

    daemon = JsIpfsDaemon(tmp_path_factory.mktemp("jsipfs"))
    try:
        daemon.start()
    except DevServerError as exc:
        pytest.fail(str(exc))
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoS3]:
    from cpchain.storage.devservers import MotoS3

    with MotoS3() as server:
        server.create_bucket(S3_BUCKET)
        yield server

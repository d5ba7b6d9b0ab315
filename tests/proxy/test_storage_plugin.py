"""The `proxy` storage plugin against a real proxy's file server: round trips, resumption, refusals."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest

from cpchain.crypto import sha256_file
from cpchain.storage import REGISTRY, Locator, LocatorError, ObjectMissing, PolicyRefused, StorageError
from cpchain.storage.policy import FetchPolicy
from cpchain.storage.proxy import ProxyStorage
from tests.proxy.conftest import Chain, ProxyProc, make_file

LOOPBACK = FetchPolicy.of(["proxy"], 1 << 30, allow_internal=True)


def seller_plugin(chain: Chain, proxy: ProxyProc) -> ProxyStorage:
    return ProxyStorage(endpoint=proxy.endpoint, account=chain.world.accounts["seller"], domain=chain.domain)


@pytest.mark.parametrize("size", [0, 1, 5 << 20])
def test_round_trips(chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path, size: int) -> None:
    source = make_file(tmp_path / "cipher.bin", size)
    seen: list[int] = []
    locator = seller_plugin(chain, proxies["proxy"]).upload(source, progress=seen.append)
    assert REGISTRY["proxy"] is ProxyStorage and Locator.from_json(locator.to_json()) == locator
    assert (seen[-1] if seen else 0) == size
    out = tmp_path / "out" / "copy.bin"
    ProxyStorage(policy=LOOPBACK).download(locator, out, progress=seen.append)
    assert sha256_file(out) == sha256_file(source)


def test_an_interrupted_download_resumes(
    chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = proxies["proxy2"]
    store.stop()
    store.write_config(upload_max_bytes=64 << 20)
    store.start()
    source = make_file(tmp_path / "cipher.bin", 40 << 20)
    locator = seller_plugin(chain, store).upload(source)
    restarted: list[int] = []

    def progress(done: int) -> None:
        if not restarted and done >= 4 << 20:
            restarted.append(done)
            store.kill()
            store.start()

    out = tmp_path / "copy.bin"
    with caplog.at_level("INFO", logger="cpchain.storage.proxy"):
        digest = ProxyStorage(policy=LOOPBACK, retries=5).download(locator, out, progress=progress)
    assert restarted and sha256_file(out) == sha256_file(source) == digest
    assert "resuming at byte" in caplog.text


def test_refusals_leave_no_file(chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path) -> None:
    proxy = proxies["proxy"]
    locator = seller_plugin(chain, proxy).upload(make_file(tmp_path / "c.bin", 1000))
    url, fingerprint = str(locator.params["url"]), str(locator.params["fingerprint"])
    missing = Locator("proxy", {"url": url.rsplit("/", 1)[0] + "/" + secrets.token_hex(32), "fingerprint": fingerprint})
    cases: list[tuple[Locator, FetchPolicy | None, type[Exception], str]] = [
        (missing, LOOPBACK, ObjectMissing, "no object"),
        (locator, FetchPolicy.of(["proxy"], 1 << 30), PolicyRefused, "internal address"),
        (locator, FetchPolicy.of(["proxy"], 1 << 30, hosts=["proxy.example"], allow_internal=True), PolicyRefused,
         "allow list"),
        (Locator("proxy", {"url": url, "fingerprint": "ab" * 32}), LOOPBACK, StorageError, "pinned"),
        (Locator("proxy", {"url": url.replace("https", "http"), "fingerprint": fingerprint}), None, LocatorError,
         "https"),
        (Locator("proxy", {"url": url + "/../../x", "fingerprint": fingerprint}), None, LocatorError, "/store/"),
    ]  # fmt: skip
    for bad, policy, error, fragment in cases:
        out = tmp_path / "out" / "copy.bin"
        with pytest.raises(error, match=fragment):
            ProxyStorage(policy=policy, retries=0).download(bad, out)
        assert not out.exists() and not list(out.parent.glob("*")) if out.parent.exists() else True
    with pytest.raises(LocatorError, match="unknown storage type"):
        Locator.from_json('{"type": "template", "path": "x"}')


def test_an_upload_needs_the_endpoint_and_a_seller(tmp_path: Path) -> None:
    source = tmp_path / "c.bin"
    source.write_bytes(os.urandom(10))
    with pytest.raises(StorageError, match="endpoint"):
        ProxyStorage().upload(source)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == sha256_file(source)


@pytest.mark.benchmark
def test_a_one_gib_round_trip_in_constant_memory(chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path) -> None:
    store = proxies["proxy2"]
    store.stop()
    store.write_config(upload_max_bytes=2 << 30)
    store.start()
    source = make_file(tmp_path / "cipher.bin", 1 << 30)
    locator = seller_plugin(chain, store).upload(source)
    out = tmp_path / "copy.bin"
    ProxyStorage(policy=LOOPBACK).download(locator, out)
    assert sha256_file(out) == sha256_file(source)
    assert store.proc is not None
    status = Path(f"/proc/{store.proc.pid}/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert peak_kib < 150 * 1024

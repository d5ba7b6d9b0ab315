"""The s3 plugin against a real moto S3 server: multipart uploads, presigned URLs under the
fetch policy, credentials that never leave the seller, and every failure (wrong bucket,
missing object, unreachable endpoint, server killed or connection cut mid-download, size
limits) a clear typed error that leaves no file under the final name."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from cpchain.netutil import free_port
from cpchain.storage import (
    FetchPolicy,
    Locator,
    ObjectMissing,
    PolicyRefused,
    S3Settings,
    S3Storage,
    StorageError,
    TransferTooLarge,
)
from cpchain.storage.devservers import MotoS3
from tests.storage.conftest import BUCKET, CREDENTIALS, PART
from tests.storage.helpers import MIB, CuttingRelay, leftovers, make_file


def boto(endpoint: str) -> object:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_large_files_go_up_in_parts_and_small_ones_in_one_request(seller_s3: S3Storage, tmp_path: Path) -> None:
    make_file(tmp_path / "big.bin", 5 * PART + 1)
    make_file(tmp_path / "small.bin", PART - 1)
    big, small = seller_s3.upload(tmp_path / "big.bin"), seller_s3.upload(tmp_path / "small.bin")
    client = boto(str(big.params["endpoint"]))
    etag = client.head_object(Bucket=BUCKET, Key=big.params["key"])["ETag"]  # type: ignore[attr-defined]
    assert etag.strip('"').endswith("-6")  # a multipart ETag names its part count
    assert "-" not in client.head_object(Bucket=BUCKET, Key=small.params["key"])["ETag"]  # type: ignore[attr-defined]
    assert str(big.params["key"]).startswith("t/") and big.params["key"] != small.params["key"]


def test_locators_never_carry_credentials(seller_s3: S3Storage, tmp_path: Path) -> None:
    make_file(tmp_path / "c.bin", 100)
    locator = seller_s3.upload(tmp_path / "c.bin")
    presigned = seller_s3.presign(locator, expires=600)
    assert locator.params["url"] == "" and "X-Amz-Expires=600" in str(presigned.params["url"])
    for text in (locator.to_json(), presigned.to_json(), repr(seller_s3.credentials)):
        assert CREDENTIALS.secret_access_key not in text


def test_only_the_own_bucket_is_read_with_own_credentials(
    seller_s3: S3Storage, moto: MotoS3, tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    """A seller cannot point a proxy's credentials at another bucket: without a presigned
    URL, a locator for a bucket that is not the fetcher's own is refused."""
    make_file(tmp_path / "c.bin", 100)
    locator = seller_s3.upload(tmp_path / "c.bin")
    other = S3Storage(S3Settings("proxy-private", moto.endpoint), CREDENTIALS, policy=loopback_policy)
    with pytest.raises(PolicyRefused, match="has no presigned URL, and this node has no credentials"):
        other.download(locator, tmp_path / "out.bin")
    with pytest.raises(PolicyRefused, match="own bucket can be presigned"):
        other.presign(locator)
    with pytest.raises(PolicyRefused, match="needs a fetch policy"):
        S3Storage().download(seller_s3.presign(locator), tmp_path / "out.bin")
    assert leftovers(tmp_path, "out.bin") == []


def test_a_presigned_url_to_a_refused_host_is_not_fetched(seller_s3: S3Storage, tmp_path: Path) -> None:
    make_file(tmp_path / "c.bin", 100)
    presigned = seller_s3.presign(seller_s3.upload(tmp_path / "c.bin"))
    with pytest.raises(PolicyRefused, match="resolves to an internal address"):
        S3Storage(policy=FetchPolicy.of(["s3"], 1 << 30)).download(presigned, tmp_path / "out.bin")
    for url in ("file:///etc/passwd", "http://user:pw@127.0.0.1/x"):
        with pytest.raises(StorageError, match=r"http or https URL|must not carry credentials"):
            S3Storage(policy=FetchPolicy.of(["s3"], 1 << 30, allow_internal=True)).download(
                Locator("s3", {**presigned.params, "url": url}), tmp_path / "out.bin"
            )
    assert leftovers(tmp_path, "out.bin") == []


def test_a_wrong_bucket_is_one_clear_line(moto: MotoS3, tmp_path: Path, loopback_policy: FetchPolicy) -> None:
    make_file(tmp_path / "small.bin", 10)
    make_file(tmp_path / "big.bin", PART + 1)
    wrong = S3Storage(S3Settings("no-such-bucket", moto.endpoint), CREDENTIALS, part_size=PART)
    for name in ("small.bin", "big.bin"):  # one PUT, and a multipart upload
        with pytest.raises(StorageError, match=f"^bucket 'no-such-bucket' does not exist at {moto.endpoint}$"):
            wrong.upload(tmp_path / name)
    url = f"{moto.endpoint}/no-such-bucket/k.bin"
    with pytest.raises(StorageError, match="names a bucket that does not exist"):
        S3Storage(policy=loopback_policy).download(
            Locator("s3", {"endpoint": moto.endpoint, "bucket": "no-such-bucket", "key": "k.bin", "size": 1,
                           "url": url}), tmp_path / "out.bin",
        )  # fmt: skip


def test_a_missing_object_is_object_missing(
    seller_s3: S3Storage, moto: MotoS3, tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    missing = Locator("s3", {"endpoint": moto.endpoint, "bucket": BUCKET, "key": "t/gone.bin", "size": 5, "url": ""})
    with pytest.raises(ObjectMissing, match=f"no object s3://{BUCKET}/t/gone.bin"):
        seller_s3.download(missing, tmp_path / "out.bin")
    with pytest.raises(ObjectMissing, match="NoSuchKey"):
        S3Storage(policy=loopback_policy).download(seller_s3.presign(missing), tmp_path / "out.bin")
    assert leftovers(tmp_path, "out.bin") == []


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path: Path) -> None:
    make_file(tmp_path / "c.bin", 10)
    dead = S3Storage(S3Settings(BUCKET, "http://127.0.0.1:9"), CREDENTIALS, timeout=5)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"^cannot reach the S3 endpoint http://127\.0\.0\.1:9$"):
        dead.upload(tmp_path / "c.bin")
    locator = Locator("s3", {"endpoint": "http://127.0.0.1:9", "bucket": BUCKET, "key": "k", "size": 10, "url": ""})
    with pytest.raises(StorageError, match=r"^cannot reach the S3 endpoint"):
        dead.download(locator, tmp_path / "out.bin")
    assert time.monotonic() - started < 10
    with pytest.raises(StorageError, match="no S3 bucket and credentials are configured"):
        S3Storage().upload(tmp_path / "c.bin")
    assert leftovers(tmp_path, "out.bin") == []


def test_size_limits_refuse_before_writing(seller_s3: S3Storage, tmp_path: Path) -> None:
    make_file(tmp_path / "c.bin", 2 * MIB)
    locator = seller_s3.upload(tmp_path / "c.bin")
    with pytest.raises(TransferTooLarge, match="exceeds the limit of 1048576"):
        seller_s3.download(locator, tmp_path / "out.bin", max_bytes=MIB)
    understated = Locator("s3", {**locator.params, "size": 10})  # the object itself is larger
    with pytest.raises(TransferTooLarge, match=f"object of {2 * MIB} bytes exceeds the limit of {MIB}"):
        seller_s3.download(understated, tmp_path / "out.bin", max_bytes=MIB)
    policy = FetchPolicy.of(["s3"], MIB, allow_internal=True)
    with pytest.raises(PolicyRefused, match="exceeds this proxy's limit"):
        S3Storage(policy=policy).download(seller_s3.presign(locator), tmp_path / "out.bin")
    with pytest.raises(StorageError, match=f"server announces {2 * MIB} bytes, the locator 10"):
        S3Storage(policy=policy).download(seller_s3.presign(understated), tmp_path / "out.bin")
    assert leftovers(tmp_path, "out.bin") == []


@pytest.mark.parametrize("path", ["own-bucket", "presigned"])
def test_a_connection_cut_mid_download_leaves_no_file(
    path: str, moto: MotoS3, tmp_path: Path, loopback_policy: FetchPolicy
) -> None:
    host, port = moto.endpoint.removeprefix("http://").split(":")
    with CuttingRelay((host, int(port)), cut_after=3 * MIB) as relay:
        seller = S3Storage(S3Settings(BUCKET, relay.url()), CREDENTIALS, policy=loopback_policy)
        make_file(tmp_path / "c.bin", 8 * MIB)
        locator = seller.upload(tmp_path / "c.bin")  # requests pass whole; replies are small
        fetcher = seller if path == "own-bucket" else S3Storage(policy=loopback_policy)
        handed = locator if path == "own-bucket" else seller.presign(locator)
        with pytest.raises(StorageError, match="interrupted"):
            fetcher.download(handed, tmp_path / "out.bin")
        assert relay.cuts >= 1
    assert leftovers(tmp_path, "out.bin") == []


def test_a_server_killed_mid_download_leaves_no_file(tmp_path: Path) -> None:
    """moto in its own process, killed (SIGKILL) once the download has begun."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        boto(endpoint).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        seller = S3Storage(S3Settings(BUCKET, endpoint), CREDENTIALS)
        make_file(tmp_path / "c.bin", 32 * MIB)
        locator = seller.upload(tmp_path / "c.bin")

        def kill_server(done: int) -> None:
            if server.poll() is None:
                server.kill()
                server.wait()

        with pytest.raises(StorageError, match=f"transfer of s3://{BUCKET}/.* interrupted"):
            seller.download(locator, tmp_path / "out.bin", progress=kill_server)
        assert server.returncode == -9
    finally:
        server.kill()
        server.wait()
    assert leftovers(tmp_path, "out.bin") == []


class Redirecting(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_redirect_is_refused_not_followed(tmp_path: Path, loopback_policy: FetchPolicy) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/bucket/key"
        locator = Locator("s3", {"endpoint": "", "bucket": "bucket", "key": "key", "size": 10, "url": url})
        with pytest.raises(PolicyRefused, match=r"answered with a redirect \(HTTP 302\); not followed"):
            S3Storage(policy=loopback_policy).download(locator, tmp_path / "out.bin")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert leftovers(tmp_path, "out.bin") == []

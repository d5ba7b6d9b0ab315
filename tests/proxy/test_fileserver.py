"""The HTTPS file server: who may download, byte ranges, path traversal, and the upload endpoint."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from cpchain.crypto.signing import sign_payload
from cpchain.proxy.protocol import (
    PURPOSE_DOWNLOAD,
    _encode_token,
    authorization,
    download_token,
    upload_token,
)
from cpchain.proxy.tls import PinnedHTTPSConnection
from cpchain.storage.base import StorageError
from cpchain.storage.proxy import ProxyStorage
from tests.proxy.conftest import Chain, ProxyProc, Trade, make_trade, seller_envelope
from tests.proxy.test_refusals import status_of


@pytest.fixture(scope="module")
def served(chain: Chain, proxies: dict[str, ProxyProc]) -> Trade:
    """An order the proxy fetched and may serve to its buyer."""
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, size=300_000)
    assert status_of(chain, proxy, seller_envelope(chain, trade)).status == 0
    return trade


def get(proxy: ProxyProc, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = PinnedHTTPSConnection("127.0.0.1", proxy.ports["server_file_port"], proxy.fingerprint, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def token(chain: Chain, proxy: ProxyProc, order_id: int, who: str = "buyer", **kwargs: object) -> dict[str, str]:
    value = download_token(chain.world.accounts[who], order_id=order_id, proxy=kwargs.pop("audience", proxy.address),
                           domain=chain.domain)  # type: ignore[arg-type]  # fmt: skip
    return {"Authorization": authorization(value)}


def test_the_buyer_downloads_with_a_token(chain: Chain, proxies: dict[str, ProxyProc], served: Trade) -> None:
    proxy = proxies["proxy"]
    status, headers, body = get(proxy, f"/orders/{served.order_id}", token(chain, proxy, served.order_id))
    assert status == 200 and body == served.ciphertext.read_bytes()
    assert headers["accept-ranges"] == "bytes" and headers["etag"] == f'"{served.terms.data_hash.hex()}"'


def test_downloads_without_the_buyers_token_are_refused(
    chain: Chain, proxies: dict[str, ProxyProc], served: Trade
) -> None:
    proxy, path = proxies["proxy"], f"/orders/{served.order_id}"
    status, headers, body = get(proxy, path)
    assert status == 401 and "www-authenticate" in headers and b"token" in body
    assert get(proxy, path, token(chain, proxy, served.order_id, who="other"))[0] == 403
    assert get(proxy, path, token(chain, proxy, served.order_id, who="seller"))[0] == 403
    assert get(proxy, path, token(chain, proxy, served.order_id, audience=proxies["proxy2"].address))[0] == 403
    other = make_trade(chain, proxy.address)
    assert get(proxy, path, token(chain, proxy, other.order_id))[0] == 403  # a token for another order
    assert get(proxy, f"/orders/{other.order_id}", token(chain, proxy, other.order_id))[0] == 409  # not fetched
    body_ = {"order_id": str(served.order_id), "proxy": proxy.address}
    expired = sign_payload(chain.world.accounts["buyer"], PURPOSE_DOWNLOAD, body_, chain_id=chain.domain.chain_id,
                           contract=chain.domain.contract, ttl=60, now=lambda: time.time() - 120)  # fmt: skip
    status, _, body = get(proxy, path, {"Authorization": authorization(_encode_token(expired))})
    assert status == 401 and b"expired" in body
    assert get(proxy, path, {"Authorization": "Bearer nonsense"})[0] == 400


@pytest.mark.parametrize(
    "path",
    [
        "/orders/../../proxy/proxy.db",
        "/orders/1/../../../etc/passwd",
        "/orders/%2e%2e/%2e%2e/etc/passwd",
        "/orders/..%2f..%2fproxy.db",
        "/store/../proxy.db",
        "/store/" + "..%2f" * 8 + "etc%2fpasswd",
        "/orders/01",
        "/orders/1.bin",
        "//etc/passwd",
        "/proxy/proxy.db",
        "/server_root/orders/1.bin",
    ],
)
def test_no_path_reaches_a_file_by_name(chain: Chain, proxies: dict[str, ProxyProc], served: Trade, path: str) -> None:
    proxy = proxies["proxy"]
    status, _, body = get(proxy, path, token(chain, proxy, served.order_id))
    assert status == 404, body
    assert b"SQLite" not in body and b"root:" not in body


def test_ranges_resume_and_head(chain: Chain, proxies: dict[str, ProxyProc], served: Trade) -> None:
    proxy, path = proxies["proxy"], f"/orders/{served.order_id}"
    whole = served.ciphertext.read_bytes()
    auth = token(chain, proxy, served.order_id)
    status, headers, body = get(proxy, path, auth | {"Range": "bytes=1000-1999"})
    assert status == 206 and body == whole[1000:2000]
    assert headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    assert get(proxy, path, auth | {"Range": "bytes=-500"})[2] == whole[-500:]
    assert get(proxy, path, auth | {"Range": f"bytes={len(whole) - 10}-"})[2] == whole[-10:]
    status, headers, _ = get(proxy, path, auth | {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(whole)}"
    status, headers, body = get(proxy, path, auth, method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(whole)


@pytest.fixture
def uploader(chain: Chain, proxies: dict[str, ProxyProc]) -> Iterator[ProxyStorage]:
    yield ProxyStorage(endpoint=proxies["proxy"].endpoint, account=chain.world.accounts["seller"], domain=chain.domain)


def raw_upload(proxy: ProxyProc, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    conn = PinnedHTTPSConnection("127.0.0.1", proxy.ports["server_file_port"], proxy.fingerprint, timeout=10)
    try:
        conn.putrequest("POST", "/store")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def upload_headers(chain: Chain, proxy: ProxyProc, data: bytes, *, size: int | None = None,
                   sha: str | None = None) -> dict[str, str]:  # fmt: skip
    value = upload_token(chain.world.accounts["seller"], proxy=proxy.address, size=len(data) if size is None else size,
                         sha256=sha or hashlib.sha256(data).hexdigest(), domain=chain.domain)  # fmt: skip
    return {"Authorization": authorization(value), "Content-Length": str(len(data) if size is None else size)}


def test_uploads_need_a_matching_single_use_token(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    data = b"ciphertext" * 1000
    assert raw_upload(proxy, {"Content-Length": str(len(data))}, data)[0] == 401
    headers = upload_headers(chain, proxy, data)
    status, body = raw_upload(proxy, headers, data)
    assert status == 201
    object_id = json.loads(body)["id"]
    assert get(proxy, f"/store/{object_id}")[2] == data
    assert raw_upload(proxy, headers, data)[0] == 401  # the token was used
    assert raw_upload(proxy, upload_headers(chain, proxy, data, sha="00" * 32), data)[0] == 400
    assert get(proxy, "/store/" + "ab" * 32)[0] == 404


def test_oversized_uploads_are_refused_before_the_body(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    limit = 8 * 1024 * 1024  # conftest's upload_max_bytes
    headers = upload_headers(chain, proxy, b"", size=limit + 1, sha="00" * 32)
    started = time.monotonic()
    status, body = raw_upload(proxy, headers)  # no body sent: the answer must not wait for it
    assert status == 413 and b"exceeds the limit" in body
    assert time.monotonic() - started < 5
    chunked = {"Authorization": headers["Authorization"], "Transfer-Encoding": "chunked"}
    assert raw_upload(proxy, chunked)[0] == 400
    stored = list((proxy.home / "proxy" / "server_root" / "store").glob("*"))
    assert all(p.stat().st_size <= limit for p in stored)


def test_the_plugin_reports_a_refused_upload(tmp_path: object, uploader: ProxyStorage) -> None:
    from pathlib import Path

    big = Path(str(tmp_path)) / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(9 * 1024 * 1024)
    with pytest.raises(StorageError, match=r"413|exceeds|connection"):
        uploader.upload(big)

"""`bin/proxy-start` serves the stream ports next to the control channel and file server,
under the same pinned TLS identity, and refuses stream requests without a token."""

from __future__ import annotations

import json

from cpchain.proxy.tls import PinnedHTTPSConnection, connect_pinned
from tests.proxy.conftest import ProxyProc


def test_proxy_start_serves_the_stream_rest_port(proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    conn = PinnedHTTPSConnection("127.0.0.1", proxy.ports["server_stream_http_port"], proxy.fingerprint, timeout=10)
    try:
        conn.request("GET", "/v1/orders/1")
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 401 and "token" in json.dumps(body).lower()


def test_proxy_start_serves_websocket_under_the_pinned_identity(proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    port = proxy.ports["server_stream_ws_port"]
    with connect_pinned("127.0.0.1", port, proxy.fingerprint, timeout=10) as sock:
        sock.sendall(b"GET /v1/channels/" + b"0" * 32 + b"/records HTTP/1.1\r\nHost: x\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip
        reply = sock.recv(4096)
    # No token: the handshake is refused with an HTTP error, not upgraded.
    assert reply.startswith(b"HTTP/1.1 4") and b"101" not in reply.split(b"\r\n", 1)[0]

"""The REST stream server (twisted.web, behind the proxy's TLS).

Owns HTTP routing and bodies of the stream API. A body's declared length is checked as
soon as the headers arrive, before any byte of it is read (records: max_batch_bytes in
base64; signed requests: 64 KiB); chunked bodies are refused. Every answer is JSON;
refusals are 4xx with {"error": message, "code": Code}. What a request means is
cpchain.proxy.streams.service's.

Routes (port server_stream_http_port):
    POST /v1/channels                       signed open request (seller)     -> the channel and its endpoints
    POST /v1/channels/<id>/end              signed end request (seller)
    POST /v1/channels/<id>/orders           signed bind request (seller)     -> proxyFetched claimed
    POST /v1/channels/<id>/records          {"records": [base64 record...]}  publish token (seller)
    GET  /v1/channels/<id>/records?from=<position>&limit=M&wait=S            subscribe token (buyer)
    GET  /v1/channels/<id>                  the next seq to publish            publish token (seller)
    GET  /v1/orders/<order id>              the buyer's key grant and channel   subscribe token (buyer)
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET
from typing_extensions import override

from cpchain.proxy.streams.model import Code, StreamRefused
from cpchain.proxy.streams.service import StreamService
from cpchain.proxy.streams.wire import WireError, unb64
from cpchain.proxy.streams.ws import no_delay

log = logging.getLogger(__name__)
CHANNEL = rb"/v1/channels/([0-9a-f]{32})"
ROUTES: list[tuple[bytes, re.Pattern[bytes], str]] = [
    (b"POST", re.compile(rb"/v1/channels"), "open"),
    (b"POST", re.compile(CHANNEL + rb"/end"), "end"),
    (b"POST", re.compile(CHANNEL + rb"/orders"), "bind"),
    (b"POST", re.compile(CHANNEL + rb"/records"), "publish"),
    (b"GET", re.compile(CHANNEL + rb"/records"), "page"),
    (b"GET", re.compile(CHANNEL), "status"),
    (b"GET", re.compile(rb"/v1/orders/([1-9][0-9]{0,19})"), "order"),
]
MAX_REQUEST_BODY = 64 * 1024


def records_body_limit(max_batch_bytes: int) -> int:
    """Bytes of a JSON publish body carrying at most max_batch_bytes of records."""
    return max_batch_bytes * 4 // 3 + 64 * 1024


class StreamRequest(server.Request):
    """A request whose declared body length is vetted before the body is read."""

    rejected = False

    @override
    def gotLength(self, length: int | None) -> None:
        no_delay(cast(Any, self.channel).transport)  # small JSON answers leave at once
        command = getattr(self.channel, "_command", b"")
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
        site = cast(Any, self.channel).site
        limit = records_body_limit(site.max_batch_bytes) if path.endswith(b"/records") else MAX_REQUEST_BODY
        if command == b"POST" and length is None:
            self._reject(411, Code.MALFORMED, "a Content-Length is required (no chunked bodies)")
        elif length is not None and length > limit:
            self._reject(413, Code.TOO_LARGE, f"body of {length} bytes exceeds the limit of {limit}")
        else:
            super().gotLength(length)

    def _reject(self, status: int, code: Code, message: str) -> None:
        """Answer at once and close, without reading the body."""
        self.rejected = True
        self.content = _Discard()
        body = json.dumps({"error": message, "code": str(code)}).encode()
        head = (f"HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n")  # fmt: skip
        transport = cast(Any, self.channel).transport
        if transport is not None:
            transport.write(head.encode() + body)
            transport.loseConnection()

    @override
    def handleContentChunk(self, data: bytes) -> None:
        if not self.rejected:
            super().handleContentChunk(data)

    @override
    def process(self) -> None:
        if not self.rejected:
            super().process()


class _Discard:
    """Stands in for the body of a rejected request."""

    def write(self, data: bytes) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _arg(request: server.Request, name: bytes, default: int) -> int:
    values = (request.args or {}).get(name)
    if not values:
        return default
    raw = values[0]
    if not raw.isdigit() or len(raw) > 19:
        raise StreamRefused(Code.MALFORMED, f"query parameter {name.decode()} must be a non-negative integer")
    return int(raw)


def parse_records(body: bytes) -> list[bytes]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise StreamRefused(Code.MALFORMED, "body must be JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list) or not data["records"]:
        raise StreamRefused(Code.MALFORMED, 'body must be {"records": [base64 record, ...]}')
    try:
        return [unb64(r) for r in data["records"]]
    except WireError as exc:
        raise StreamRefused(Code.MALFORMED, f"records: {exc}") from None


class StreamApi(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, service: StreamService) -> None:
        super().__init__()
        self.service = service

    @override
    def render(self, request: server.Request) -> Any:
        Deferred.fromCoroutine(self._answer(request))
        return NOT_DONE_YET

    async def _answer(self, request: server.Request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        try:
            status, body = 200, await self._route(request)
        except StreamRefused as exc:
            status, body = exc.http_status, exc.as_json()
        except Exception as exc:
            log.error("stream request failed", exc_info=exc)
            status, body = 500, {"error": "internal error", "code": str(Code.INTERNAL)}
        if gone or request.finished:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if status == 401:
            request.setHeader(b"www-authenticate", b"PDash-Token")
        request.write(json.dumps(body).encode())
        request.finish()

    async def _route(self, request: server.Request) -> dict[str, Any]:
        path, method = request.path, request.method
        for route_method, pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and method == route_method:
                return await self._dispatch(name, request, match)
        raise StreamRefused(Code.MALFORMED, "no such resource")

    async def _dispatch(self, name: str, request: server.Request, match: re.Match[bytes]) -> dict[str, Any]:
        service = self.service
        ident = match.group(1).decode() if match.groups() else ""
        auth = _header(request, b"authorization")
        body = request.content.read() if request.content is not None and method_has_body(request) else b""
        if name == "open":
            return await service.open_channel(body)
        if name == "end":
            return await service.end_channel(ident, body)
        if name == "bind":
            return await service.bind_order(ident, body)
        if name == "status":
            return await service.publisher_status(auth, ident)
        if name == "publish":
            return await service.publish(auth, ident, parse_records(body))
        if name == "page":
            return await service.page(auth, ident, _arg(request, b"from", 0),
                                      _arg(request, b"limit", service.settings.page_limit),
                                      float(_arg(request, b"wait", 0)))  # fmt: skip
        return await service.order_info(auth, int(ident))


def method_has_body(request: server.Request) -> bool:
    return request.method == b"POST"


def make_rest_site(service: StreamService, timeout: float = 60.0) -> server.Site:
    site = server.Site(StreamApi(service), requestFactory=StreamRequest, timeout=timeout)
    site.max_batch_bytes = service.settings.max_batch_bytes  # type: ignore[attr-defined]
    site.displayTracebacks = False
    site.noisy = False
    return site

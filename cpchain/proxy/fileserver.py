"""The HTTPS file server: buyers' downloads (token, Range, delivery tracking) and sellers' uploads.

Owns HTTP: routing by exact patterns (files are named by order id or a random object id,
never by a client path, so no request can reach another file), single byte ranges,
streaming in constant memory with a push producer, and the upload path, which checks the
token and the declared size when the headers arrive, before any body byte is read, and
streams the body to a temporary file while hashing it. Who may download or upload is
decided by cpchain.proxy.service.

Routes:
    GET|HEAD /orders/<order id>   Authorization: PDash-Token <buyer's download token>
    GET|HEAD /store/<object id>   the object id (256 random bits) is the capability
    POST     /store               Authorization: PDash-Token <seller's upload token>
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET
from typing_extensions import override
from zope.interface import implementer

from cpchain.chain.errors import ChainError, UnknownOrder
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import ProtocolError
from cpchain.proxy.rules import parse_range
from cpchain.proxy.service import TradeService
from cpchain.proxy.store import Upload
from cpchain.storage.base import StorageError

log = logging.getLogger(__name__)
ORDER_PATH = re.compile(rb"/orders/([1-9][0-9]{0,19})")
STORE_PATH = re.compile(rb"/store/([0-9a-f]{64})")
CHUNK = 256 * 1024
MAX_OTHER_BODY = 16 * 1024
UNCONFIRMED_TAIL = 4 * 1024 * 1024  # bytes possibly still in buffers when a connection drops
# How far ahead of the reactor's reads the kernel is asked to read a file that is not cached
# (the proxy writes what it fetches without keeping it in memory), so they never wait for the disk.
READ_AHEAD = 8 * 1024 * 1024

_HTTP_STATUS: dict[int, int] = {
    pb.MALFORMED: 400,
    pb.BAD_SIGNATURE: 401,
    pb.EXPIRED: 401,
    pb.REPLAYED: 401,
    pb.WRONG_SIGNER: 403,
    pb.NOT_THIS_PROXY: 403,
    pb.UNKNOWN_ORDER: 404,
    pb.NOT_READY: 409,
    pb.WRONG_STATE: 410,
    pb.FETCH_REFUSED: 413,
    pb.UNAVAILABLE: 503,
}


class HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def http_error(exc: BaseException) -> HttpError:
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, ProtocolError):
        return HttpError(_HTTP_STATUS.get(exc.status, 400), str(exc))
    if isinstance(exc, UnknownOrder):
        return HttpError(404, str(exc))
    if isinstance(exc, ChainError):
        return HttpError(503, "chain unavailable")
    log.error("file server failure", exc_info=exc)
    return HttpError(500, "internal error")


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _UploadSink:
    """The upload body on its way to disk: counted and hashed chunk by chunk."""

    def __init__(self, directory: Path, uploader: str, size: int, sha256: str) -> None:
        self.uploader = uploader
        self.size = size
        self.sha256 = sha256
        self.id = secrets.token_hex(32)
        self.tmp = directory / f".{self.id}.part"
        fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.file: IO[bytes] = os.fdopen(fd, "w+b")
        self.hasher = hashlib.sha256()
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.size:
            raise HttpError(413, "the body is longer than its Content-Length")
        self.file.write(data)
        self.hasher.update(data)

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    def finish(self, destination: Path) -> None:
        """Blocking: make the upload durable under its final name (worker thread)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.tmp, 0o400)
        os.replace(self.tmp, destination)


class ProxyRequest(server.Request):
    """A request whose body is vetted as soon as its headers are complete.

    Twisted buffers any body to a temporary file before the resource sees it; here an
    upload's token and Content-Length are checked first and the body goes straight to its
    own file, and any other request may carry at most a tiny body.
    """

    upload: _UploadSink | None = None
    rejected = False

    @property
    def service(self) -> TradeService:
        service: TradeService = cast(Any, self.channel).site.service
        return service

    @override
    def gotLength(self, length: int | None) -> None:
        command = getattr(self.channel, "_command", b"")
        path = getattr(self.channel, "_path", b"")
        if command == b"POST" and path == b"/store":
            try:
                header = self.requestHeaders.getRawHeaders(b"authorization", [b""])[0].decode("latin-1")
                uploader, size, sha256 = self.service.authorize_upload(header, length)
                self.upload = _UploadSink(self.service.settings.store_dir, uploader, size, sha256)
            except Exception as exc:
                self.reject(http_error(exc))
                return
            self.content = self.upload.file
        elif length is None or length > MAX_OTHER_BODY:
            self.reject(HttpError(413, "request body not allowed"))
        else:
            super().gotLength(length)

    def reject(self, error: HttpError) -> None:
        """Answer at once and close, without reading the body."""
        self.rejected = True
        self.content = _NullContent()
        body = _error_body(str(error))
        head = (f"HTTP/1.1 {error.code} Refused\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n")  # fmt: skip
        transport = cast(Any, self.channel).transport
        if transport is not None:
            transport.write(head.encode() + body)
            transport.loseConnection()
        if self.upload is not None:
            self.upload.discard()
            self.upload = None

    @override
    def handleContentChunk(self, data: bytes) -> None:
        if self.rejected:
            return
        if self.upload is None:
            super().handleContentChunk(data)
            return
        try:
            self.upload.write(data)
        except Exception as exc:
            self.reject(http_error(exc))

    @override
    def process(self) -> None:
        if not self.rejected:
            super().process()

    @override
    def connectionLost(self, reason: Failure) -> None:
        if self.upload is not None and not self.upload.file.closed:
            self.upload.discard()
        super().connectionLost(reason)


class _NullContent:
    """Stands in for the body of a rejected request."""

    def write(self, data: bytes) -> None:
        pass

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


@implementer(IPushProducer)
class RangeProducer:
    """Writes [start, end) of a file to a request in fixed chunks while the transport wants more.

    Reports every chunk handed to the transport through `on_sent(start, end, final)`; when
    the connection drops, the last UNCONFIRMED_TAIL bytes are not reported, because they may
    still have been in buffers (the buyer fetches any gap again).
    """

    def __init__(self, request: server.Request, fh: IO[bytes], start: int, end: int,
                 on_sent: Callable[[int, int, bool], None] | None = None) -> None:  # fmt: skip
        self.request: server.Request | None = request
        self.fh = fh
        self.start_at = start
        self.pos = start
        self.end = end
        self.on_sent = on_sent
        self.paused = False
        self.reported = start
        self.advised = start

    def begin(self) -> None:
        assert self.request is not None
        self.request.registerProducer(self, True)
        self.fh.seek(self.start_at)
        self._produce()

    def _produce(self) -> None:
        while self.request is not None and not self.paused:
            n = min(CHUNK, self.end - self.pos)
            if n <= 0:
                self._done()
                return
            if self.pos + READ_AHEAD > self.advised and hasattr(os, "posix_fadvise"):
                # The kernel reads the next window in the background while this one is sent.
                os.posix_fadvise(self.fh.fileno(), self.advised, 2 * READ_AHEAD, os.POSIX_FADV_WILLNEED)
                self.advised += 2 * READ_AHEAD
            data = self.fh.read(n)
            if not data:
                log.error("file shrank while being served")
                self.request.loseConnection()
                self.stopProducing()
                return
            self.request.write(data)
            self.pos += len(data)
            self._report(self.pos, final=False)

    def _report(self, upto: int, final: bool) -> None:
        if self.on_sent is not None and (upto > self.reported or final):
            self.on_sent(self.reported, max(upto, self.reported), final)
            self.reported = max(upto, self.reported)

    def _done(self) -> None:
        request, self.request = self.request, None
        self.fh.close()
        self._report(self.pos, final=True)
        if request is not None:
            request.unregisterProducer()
            request.finish()

    def pauseProducing(self) -> None:  # noqa: N802 (IPushProducer)
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 (IPushProducer)
        self.paused = False
        self._produce()

    def stopProducing(self) -> None:  # noqa: N802 (IPushProducer)
        if self.request is None:
            return
        self.request = None
        self.fh.close()
        if self.on_sent is not None:
            self.reported = min(self.reported, max(self.start_at, self.pos - UNCONFIRMED_TAIL))
            self.on_sent(self.reported, self.reported, True)


class FileServer(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, service: TradeService) -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802 (Twisted's name)
        path = request.path
        if (m := ORDER_PATH.fullmatch(path)) is not None:
            self._async(request, self._serve_order(request, int(m.group(1))))
            return NOT_DONE_YET
        if (m := STORE_PATH.fullmatch(path)) is not None:
            try:
                self._serve_store(request, m.group(1).decode())
            except Exception as exc:
                return self._error(request, http_error(exc))
            return NOT_DONE_YET
        return self._error(request, HttpError(404, "no such resource"))

    render_HEAD = render_GET  # noqa: N815 (Twisted's name)

    def render_POST(self, request: server.Request) -> Any:  # noqa: N802 (Twisted's name)
        upload = getattr(request, "upload", None)
        if request.path != b"/store" or upload is None:
            return self._error(request, HttpError(404, "no such resource"))
        self._async(request, self._finish_upload(request, upload))
        return NOT_DONE_YET

    # ------------------------------------------------------------ helpers

    def _async(self, request: server.Request, work: Any) -> None:
        d: Deferred[None] = Deferred.fromCoroutine(work)
        d.addErrback(lambda f: self._late_error(request, f))

    def _late_error(self, request: server.Request, failure: Failure) -> None:
        if request.finished or request._disconnected:  # type: ignore[attr-defined]
            return
        if request.startedWriting:  # type: ignore[attr-defined]
            request.loseConnection()
            return
        request.write(self._error(request, http_error(failure.value or Exception("unknown failure"))))
        request.finish()

    @staticmethod
    def _error(request: server.Request, error: HttpError) -> bytes:
        request.setResponseCode(error.code)
        request.setHeader(b"content-type", b"application/json")
        if error.code == 401:
            request.setHeader(b"www-authenticate", b"PDash-Token")
        return _error_body(str(error))

    def _send_file(self, request: server.Request, path: Path, etag: str,
                   on_sent: Callable[[int, int, bool], None] | None) -> None:  # fmt: skip
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise HttpError(410, "the file is no longer here") from None
        size = os.fstat(fh.fileno()).st_size
        try:
            wanted = parse_range(_header(request, b"range"), size)
        except ValueError:
            fh.close()
            request.setHeader(b"content-range", f"bytes */{size}".encode())
            raise HttpError(416, "range not satisfiable") from None
        start, end = wanted if wanted is not None else (0, size)
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"etag", f'"{etag}"'.encode())
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", str(end - start).encode())
        if wanted is not None:
            request.setResponseCode(206)
            request.setHeader(b"content-range", f"bytes {start}-{end - 1}/{size}".encode())
        if request.method == b"HEAD" or end == start:
            fh.close()
            request.finish()
            return
        RangeProducer(request, fh, start, end, on_sent).begin()

    async def _serve_order(self, request: server.Request, order_id: int) -> None:
        header = _header(request, b"authorization")
        try:
            trade = await self.service.authorize_download(header, order_id)
        except Exception as exc:
            request.write(self._error(request, http_error(exc)))
            request.finish()
            return
        if request._disconnected:  # type: ignore[attr-defined]
            return

        def on_sent(start: int, end: int, final: bool) -> None:
            self.service.record_sent(order_id, start, end, final)

        self._send_file(request, self.service.order_file(order_id), trade.data_hash, on_sent)

    def _serve_store(self, request: server.Request, object_id: str) -> None:
        upload = self.service.store.upload(object_id)
        if upload is None:
            raise HttpError(404, "no such object")
        self._send_file(request, self.service.settings.store_dir / f"{object_id}.bin", upload.sha256, None)

    async def _finish_upload(self, request: server.Request, upload: _UploadSink) -> None:
        if upload.received != upload.size or upload.hasher.hexdigest() != upload.sha256:
            upload.discard()
            raise HttpError(400, "the body does not match the token's size and SHA-256")
        destination = self.service.settings.store_dir / f"{upload.id}.bin"
        try:
            await self.service.blocking(upload.finish, destination)
        except OSError as exc:
            upload.discard()
            raise StorageError(f"cannot store the upload: {exc.strerror}") from None
        self.service.store.add_upload(Upload(upload.id, upload.uploader, upload.size, upload.sha256, int(time.time())))
        request.upload = None  # type: ignore[attr-defined]
        log.info("stored upload %s… of %d bytes from %s", upload.id[:12], upload.size, upload.uploader)
        request.setResponseCode(201)
        request.setHeader(b"content-type", b"application/json")
        request.write(json.dumps({"id": upload.id, "size": upload.size, "sha256": upload.sha256}).encode())
        request.finish()


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def make_site(service: TradeService, timeout: float = 60.0) -> server.Site:
    site = server.Site(FileServer(service), requestFactory=ProxyRequest, parsePOSTFormSubmission=False, timeout=timeout)
    site.service = service  # type: ignore[attr-defined]
    site.displayTracebacks = False
    site.noisy = False
    return site

"""The WebSocket stream server (autobahn on Twisted, behind the proxy's TLS).

Owns the WebSocket side of publishing and subscribing: the handshake is refused (HTTP 4xx,
reason "code: message") unless the token allows it, so nothing is exchanged with an
unauthorized peer. Every send happens on the reactor thread. A subscriber is fed one
bounded frame at a time and only while its connection's send buffer has room (a push
producer registered with the transport): a slow subscriber stops the reading of Kafka
for it instead of growing the proxy's memory. A publisher whose channel has too much
unacknowledged data stops being read from until Kafka catches up.

Paths (port server_stream_ws_port):
    /v1/channels/<id>/publish                 Authorization: PDash-Token <seller's publish token>
    /v1/channels/<id>/subscribe?from=<position>|live   Authorization: PDash-Token <buyer's subscribe token>

Messages: binary publish frames in, {"type": "ack", "seq", "position"} out; binary delivery
frames out to subscribers; {"type": "ready" | "end" | "error", ...} text messages
(cpchain.proxy.streams.wire). Close codes: 1000 the channel ended, 4000 + an HTTP status
otherwise (4409 another publisher took over or a sequence mismatch, 4410 the channel
ended or was deleted, 4403 the order stopped allowing access, 4503 try again).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from typing_extensions import override
from zope.interface import implementer

from cpchain.proxy.streams.model import Code, StreamRefused
from cpchain.proxy.streams.rules import Access
from cpchain.proxy.streams.service import LiveChannel, RecordReader, StreamService
from cpchain.proxy.streams.wire import WireError, pack_delivery, unpack_records

log = logging.getLogger(__name__)
PATH = re.compile(r"/v1/channels/([0-9a-f]{32})/(publish|subscribe)")
READ_WAIT = 30.0
ACK_INTERVAL = 0.01  # acknowledgements are cumulative: at most one message per interval
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def one_line(text: str, limit: int = 200) -> str:
    return _UNPRINTABLE.sub(" ", text)[:limit]


def no_delay(transport: Any) -> None:
    """Disable Nagle on the TCP connection under the TLS layer (autobahn's own attempt does not
    reach through it), so small messages (acknowledgements, live records) leave at once."""
    while transport is not None and not hasattr(type(transport), "setTcpNoDelay"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.setTcpNoDelay(True)


def close_code(exc: StreamRefused) -> int:
    return 4000 + exc.http_status


def frames(items: list[tuple[int, bytes]], max_bytes: int) -> list[bytes]:
    """Delivery frames of at most `max_bytes` (a single larger record gets a frame of its own)."""
    out: list[bytes] = []
    start, size = 0, 0
    for i, (_, record) in enumerate(items):
        if i > start and size + len(record) + 12 > max_bytes:
            out.append(pack_delivery(items[start:i]))
            start, size = i, 0
        size += len(record) + 12
    out.append(pack_delivery(items[start:]))
    return out


@implementer(IPushProducer)
class _Flow:
    """The transport's verdict on whether a subscriber can take more (Twisted pauses/resumes it)."""

    def __init__(self) -> None:
        self.paused = False
        self._waiter: Deferred[None] | None = None

    def pauseProducing(self) -> None:  # noqa: N802 (IPushProducer)
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 (IPushProducer)
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:  # noqa: N802 (IPushProducer)
        self._wake()

    def resumed(self) -> Deferred[None]:
        if not self.paused:
            return succeed(None)
        self._waiter = Deferred()
        return self._waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)


class StreamWsProtocol(WebSocketServerProtocol):
    factory: StreamWsFactory

    def __init__(self) -> None:
        super().__init__()
        self.role = ""
        self.live: LiveChannel | None = None
        self.access: Access | None = None
        self.start = 0
        self.ready = False
        self.closing = False
        self.reader: RecordReader | None = None
        self.flow = _Flow()
        self._calls: list[Any] = []
        self._ack: tuple[int, int] | None = None

    @property
    def service(self) -> StreamService:
        return self.factory.service

    @override
    def connectionMade(self) -> None:
        super().connectionMade()
        no_delay(self.transport)

    # ------------------------------------------------------------ handshake

    @override
    def onConnect(self, request: ConnectionRequest) -> Deferred[None]:  # type: ignore[override]  # autobahn accepts a Deferred
        return Deferred.fromCoroutine(self._authorize(request))

    async def _authorize(self, request: ConnectionRequest) -> None:
        try:
            match = PATH.fullmatch(request.path)
            if match is None:
                raise StreamRefused(Code.MALFORMED, "path must be /v1/channels/<id>/publish or /subscribe")
            channel_id, self.role = match.group(1), match.group(2)
            header = request.headers.get("authorization")
            if self.role == "publish":
                self.live = await self.service.authorize_publisher(header, channel_id)
                return
            if self.service.subscribers >= self.service.settings.max_subscribers:
                raise StreamRefused(Code.LIMIT, "this proxy serves its maximum number of subscribers")
            self.access, self.live = await self.service.authorize_subscriber(header, channel_id)
            await self.service.ready(self.live)
            self.start = self._start(request.params.get("from", ["0"])[0], self.live)
            self.service.check_start(self.live, self.start)
        except StreamRefused as exc:
            raise ConnectionDeny(exc.http_status, one_line(f"{exc.code}: {exc}")) from None
        except Exception as exc:
            log.error("stream handshake failed", exc_info=exc)
            raise ConnectionDeny(500, "internal: internal error") from None

    @staticmethod
    def _start(value: str, live: LiveChannel) -> int:
        if value == "live":
            return live.next_position
        if not value.isdigit() or len(value) > 19:
            raise StreamRefused(Code.MALFORMED, "from must be a position or 'live'")
        return int(value)

    @override
    def onOpen(self) -> None:
        if self.role == "publish":
            Deferred.fromCoroutine(self._open_publisher())
        elif self.role == "subscribe" and self.live is not None and self.access is not None:
            self.service.subscribers += 1
            self.live.readers.add(self)
            self.service.start_delivery(self.access)
            self._schedule_checks(self.access)
            Deferred.fromCoroutine(self._pump(self.live))

    @override
    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closing = True
        for call in self._calls:
            if call.active():
                call.cancel()
        if self.live is None:
            return
        if self.role == "publish":
            self.service.detach_publisher(self.live, self)
        elif self in self.live.readers:
            self.live.readers.discard(self)
            self.service.subscribers -= 1
        self.flow.stopProducing()

    def send_json(self, message: dict[str, Any]) -> None:
        if not self.closing:
            self.sendMessage(json.dumps(message).encode(), isBinary=False)

    def close_for(self, code: int, reason: str) -> None:
        """Close with a code and reason (also called by the service: ended channel, new publisher, shutdown)."""
        if self.closing:
            return
        self.send_json({"type": "error", "close": code, "error": reason})
        self.closing = True
        self.sendClose(code=code, reason=one_line(reason, 100))

    def refuse(self, exc: StreamRefused) -> None:
        if self.closing:
            return
        self.send_json({"type": "error", "close": close_code(exc), **exc.as_json()})
        self.closing = True
        self.sendClose(code=close_code(exc), reason=one_line(f"{exc.code}: {exc}", 100))

    # ------------------------------------------------------------ publishing

    async def _open_publisher(self) -> None:
        assert self.live is not None
        try:
            next_seq = await self.service.attach_publisher(self.live, self)
        except StreamRefused as exc:
            self.refuse(exc)
            return
        self.ready = True
        self.send_json({"type": "ready", "channel": self.live.id, "next_seq": next_seq,
                        "next_position": self.live.next_position})  # fmt: skip

    @override
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.closing or self.role != "publish" or self.live is None:
            return  # subscribers send nothing; anything after a close is ignored
        try:
            if not self.ready:
                raise StreamRefused(Code.MALFORMED, "wait for the ready message before publishing")
            if not isBinary:
                raise StreamRefused(Code.MALFORMED, "records travel in binary messages")
            try:
                records = unpack_records(payload, self.service.settings.max_record_bytes)
            except WireError as exc:
                raise StreamRefused(Code.TOO_LARGE if "limit" in str(exc) else Code.MALFORMED, str(exc)) from None
            ack, pause = self.service.submit(self.live, records)
        except StreamRefused as exc:
            self.refuse(exc)
            return
        ack.addCallbacks(self._acked, self._ack_failed)
        if pause:
            transport = cast(Any, self.transport)
            transport.pauseProducing()
            self.live.paused.append(transport.resumeProducing)

    def _acked(self, result: tuple[int, int]) -> None:
        """Acknowledgements are cumulative: one message per ACK_INTERVAL carries the latest."""
        first = self._ack is None
        self._ack = result
        if first:
            self.factory.reactor.callLater(ACK_INTERVAL, self._send_ack)

    def _send_ack(self) -> None:
        if self._ack is not None:
            seq, at = self._ack
            self._ack = None
            self.send_json({"type": "ack", "seq": seq, "position": at})

    def _ack_failed(self, failure: Any) -> None:
        exc = failure.value
        if isinstance(exc, StreamRefused):
            self.refuse(exc)
        else:
            log.error("publishing failed: %s", exc)
            self.close_for(4500, "internal error")

    # ------------------------------------------------------------ subscribing

    def _schedule_checks(self, access: Access) -> None:
        settings = self.service.settings
        self._calls.append(self.factory.reactor.callLater(settings.recheck_interval, self._recheck))
        if access.until is not None:
            remaining = max(0.0, access.until - self.service.clock())
            self._calls.append(self.factory.reactor.callLater(remaining, self._recheck))

    def _recheck(self) -> None:
        async def check() -> None:
            assert self.access is not None and self.live is not None
            refused = await self.service.recheck(self.access, self.live)
            if refused is not None:
                self.refuse(refused)
            elif not self.closing:
                self._calls.append(self.factory.reactor.callLater(self.service.settings.recheck_interval,
                                                                  self._recheck))  # fmt: skip

        Deferred.fromCoroutine(check()).addErrback(lambda f: log.warning("subscription re-check: %s", f.value))

    async def _pump(self, live: LiveChannel) -> None:
        settings = self.service.settings
        try:
            self.reader = await self.service.open_reader(live, self.start)
            if self.closing:
                return
            self.send_json({"type": "ready", "channel": live.id, "position": self.start,
                            "next_position": live.next_position})  # fmt: skip
            self.registerProducer(self.flow, True)
            while not self.closing:
                if self.flow.paused:
                    await self.flow.resumed()
                    continue
                items = await self.service.read(live, self.reader, settings.subscriber_batch_records, READ_WAIT,
                                                lambda: not self.closing)  # fmt: skip
                if self.closing:
                    break
                if items is None:
                    self.send_json({"type": "end", "next_position": self.reader.position})
                    self.closing = True
                    self.sendClose(code=1000, reason="the channel has ended")
                    break
                for frame in frames(items, settings.max_batch_bytes) if items else ():
                    self.sendMessage(frame, isBinary=True)
        except StreamRefused as exc:
            self.refuse(exc)
        except Exception as exc:
            log.error("subscription failed", exc_info=exc)
            self.close_for(4500, "internal error")
        finally:
            if self.reader is not None:
                self.service.close_reader(self.reader)
                self.reader = None


class StreamWsFactory(WebSocketServerFactory):
    protocol = StreamWsProtocol  # type: ignore[assignment]

    def __init__(self, service: StreamService, reactor: Any) -> None:
        super().__init__()
        self.service = service
        self.reactor = reactor
        settings = service.settings
        self.setProtocolOptions(
            webStatus=False,
            maxMessagePayloadSize=settings.max_batch_bytes,
            maxFramePayloadSize=settings.max_batch_bytes,
            openHandshakeTimeout=15,
            closeHandshakeTimeout=5,
            autoPingInterval=20,
            autoPingTimeout=20,
            maxConnections=settings.max_subscribers * 2,
            perMessageCompressionAccept=lambda offers: None,
        )

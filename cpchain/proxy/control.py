"""The control channel server: one length-framed request and one signed reply per TLS connection.

Owns the byte stream: frame decoding with a size limit, the time limit of a connection, and
answering malformed or oversized frames with a signed error reply before closing (never
an exception escaping into the reactor). What a request means is cpchain.proxy.service's.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from typing_extensions import override

from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import FrameReader, ProtocolError, frame
from cpchain.proxy.service import TradeService

log = logging.getLogger(__name__)
REPLY_MAX_FRAME = 1 << 20


class ControlProtocol(Protocol, TimeoutMixin):
    def __init__(self, service: TradeService, max_frame: int, timeout: float) -> None:
        self.service = service
        self.reader = FrameReader(max_frame)
        self.timeout = timeout
        self.answering = False

    @override
    def connectionMade(self) -> None:
        self.setTimeout(self.timeout)

    @override
    def dataReceived(self, data: bytes) -> None:
        if self.answering:
            return  # one request per connection; anything after it is ignored
        try:
            frames = self.reader.feed(data)
        except ProtocolError as exc:
            self.answering = True
            self._answer(Deferred.fromCoroutine(self.service.sign_reply(pb.Reply(status=exc.status, error=str(exc)))))
            return
        if frames:
            self.answering = True
            self._answer(Deferred.fromCoroutine(self.service.handle_frame(frames[0])))

    def _answer(self, reply: Deferred[bytes]) -> None:
        reply.addCallback(self._send)
        reply.addErrback(self._failed)

    def _send(self, envelope: bytes) -> None:
        if self.transport is not None:
            transport = cast(Any, self.transport)
            transport.write(frame(envelope, REPLY_MAX_FRAME))
            transport.loseConnection()
        self.setTimeout(None)

    def _failed(self, failure: Failure) -> None:
        log.error("control request failed: %s", failure.getErrorMessage())
        if self.transport is not None:
            cast(Any, self.transport).loseConnection()

    @override
    def timeoutConnection(self) -> None:
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()

    @override
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)


class ControlFactory(Factory):
    noisy = False

    def __init__(self, service: TradeService, max_frame: int, timeout: float) -> None:
        self.service = service
        self.max_frame = max_frame
        self.timeout = timeout

    @override
    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.service, self.max_frame, self.timeout)

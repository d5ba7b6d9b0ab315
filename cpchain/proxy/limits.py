"""Per-peer connection limits for the proxy's listening ports.

Owns counting open connections by remote host and refusing new ones above the limit, so
one client cannot hold every socket or request slot. (Twisted's LimitConnectionsByPeer
indexes address objects like tuples and fails on current Twisted.) Must not know protocols.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from typing_extensions import override

log = logging.getLogger(__name__)


class PeerLimit(WrappingFactory):
    """Wraps a factory; a peer host with `limit` open connections gets no further one."""

    def __init__(self, wrapped: Any, limit: int) -> None:
        super().__init__(wrapped)
        self.limit = limit
        self.open: dict[str, int] = {}

    @override
    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper:  # type: ignore[override]
        host = str(getattr(addr, "host", addr))
        if self.open.get(host, 0) >= self.limit:
            log.warning("refusing a connection from %s: %d already open", host, self.limit)
            return None  # type: ignore[return-value]  # None makes Twisted close the connection
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            protocol._peer_limit_host = host  # type: ignore[attr-defined]
            self.open[host] = self.open.get(host, 0) + 1
        return protocol

    @override
    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        host = getattr(p, "_peer_limit_host", None)
        if host in self.open:
            self.open[host] -= 1
            if not self.open[host]:
                del self.open[host]

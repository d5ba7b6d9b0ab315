"""Plain data of the stream relay: channels, order bindings and the refusal codes.

Owns the shapes shared by the registry, the rules and the servers. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChannelState(StrEnum):
    OPEN = "open"  # the seller may publish
    ENDED = "ended"  # no more publishing; readable until the retention period passes
    DELETED = "deleted"  # its topic is gone


class BindStage(StrEnum):
    BINDING = "binding"  # accepted; proxyFetched not yet confirmed
    BOUND = "bound"  # proxyFetched confirmed: the buyer may subscribe
    FAILED = "failed"  # the claim was refused; the seller may try again


class Delivery(StrEnum):
    NONE = "none"  # the buyer has not subscribed yet
    CLAIMING = "claiming"  # proxyDelivered wanted (the buyer subscribed)
    CLAIMED = "claimed"
    FAILED = "failed"


@dataclass(frozen=True)
class Channel:
    id: str
    seller: str
    topic: str
    state: ChannelState
    created_at: int
    ended_at: int | None
    retention: int
    next_seq: int  # the seq of the next record, as last saved (may lag Kafka after a crash)
    next_offset: int  # the Kafka offset after the last saved record (same caveat)
    request_nonce: str

    def deletable(self, now: int) -> bool:
        return self.state is ChannelState.ENDED and self.ended_at is not None and now >= self.ended_at + self.retention


@dataclass(frozen=True)
class Binding:
    """A stream order bound to a channel (the stream equivalent of a fetched file trade)."""

    order_id: int
    channel_id: str
    seller: str
    buyer: str
    product: str  # the product description's canonical JSON
    key_grant: str  # the seller's signed grant: the stream key wrapped to the buyer's key
    stage: BindStage
    error: str
    created_at: int
    fetched_tx: str
    delivery: Delivery
    delivered_tx: str


class Code(StrEnum):
    """Why a stream request was refused; each maps to one HTTP status."""

    MALFORMED = "malformed"
    UNAUTHENTICATED = "unauthenticated"
    REPLAYED = "replayed"
    FORBIDDEN = "forbidden"
    NOT_PAID = "not_paid"
    WRONG_STATE = "wrong_state"
    ORDER_EXPIRED = "order_expired"
    REFUNDED = "refunded"
    UNKNOWN_CHANNEL = "unknown_channel"
    UNKNOWN_ORDER = "unknown_order"
    CHANNEL_ENDED = "channel_ended"
    SEQ_MISMATCH = "seq_mismatch"
    OFFSET_OUT_OF_RANGE = "offset_out_of_range"
    TOO_LARGE = "too_large"
    LIMIT = "limit"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


HTTP_STATUS: dict[Code, int] = {
    Code.MALFORMED: 400,
    Code.UNAUTHENTICATED: 401,
    Code.REPLAYED: 401,
    Code.NOT_PAID: 402,
    Code.FORBIDDEN: 403,
    Code.ORDER_EXPIRED: 403,
    Code.REFUNDED: 403,
    Code.UNKNOWN_CHANNEL: 404,
    Code.UNKNOWN_ORDER: 404,
    Code.SEQ_MISMATCH: 409,
    Code.WRONG_STATE: 409,
    Code.CHANNEL_ENDED: 410,
    Code.TOO_LARGE: 413,
    Code.OFFSET_OUT_OF_RANGE: 416,
    Code.LIMIT: 429,
    Code.INTERNAL: 500,
    Code.BUSY: 503,
    Code.UNAVAILABLE: 503,
}


class StreamRefused(Exception):
    """A request the proxy must not act on; `code` says why (one line, no secrets)."""

    def __init__(self, code: Code, message: str, **details: int) -> None:
        super().__init__(message)
        self.code = code
        self.details = details  # machine-readable extras, e.g. expected_seq

    def as_json(self) -> dict[str, object]:
        return {"error": str(self), "code": str(self.code), **self.details}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

"""Who may open, end, bind, publish and subscribe: pure functions of a request and the chain.

Owns the stream decisions. Callers verify signatures, read the chain, the registry and the
clock, and pass the values in, so every rule is tested without a network. No I/O.

The subscription rule (an order's period):

* the order is bound to the channel on this proxy (the seller's bind request was accepted
  and proxyFetched confirmed), the signer is the order's buyer and this proxy is one of
  the order's proxies;
* the order was paid and not refunded: its state is ProxyFetched, ProxyDelivered,
  Finished, Disputed, or Settled with the buyer at fault. ProxyFetched only until the
  order's deadline (after it the buyer can reclaim the price, so the order has expired);
  Withdrawn and Settled with the seller at fault are refunds;
* the product's period holds: `start_date` (if set) has come and `end_date` (if set) has
  not passed, in chain time. A product without an end date is readable for as long as the
  channel exists. A live subscription is closed when its period ends, and re-checked on
  chain periodically (a refund ends it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cpchain.chain.lifecycle import Action, Windows, refusal
from cpchain.proxy.protocol import Domain, KeyGrant, ProtocolError, check_key_grant
from cpchain.proxy.streams.model import Binding, BindStage, Channel, ChannelState, Code, StreamRefused
from cpchain.proxy.streams.wire import (
    STORAGE_TYPE,
    body_channel,
    body_number,
    body_proxy,
    body_text,
    channel_commitment,
)
from cpchain.types import (
    InvalidProduct,
    OrderState,
    OrderStatus,
    OrderTerms,
    ProductDescription,
    ProductType,
    Verdict,
)

MAX_PRODUCT_CHARS = 64 * 1024
MAX_GRANT_CHARS = 16 * 1024


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _for_this_proxy(body: Mapping[str, Any], proxy: str) -> None:
    if not _same(body_proxy(body), proxy):
        raise StreamRefused(Code.FORBIDDEN, "signed for another proxy")


def _known(channel: Channel | None, channel_id: str) -> Channel:
    if channel is None or channel.state is ChannelState.DELETED:
        raise StreamRefused(Code.UNKNOWN_CHANNEL, f"no channel {channel_id} on this proxy")
    return channel


def _for_channel(body: Mapping[str, Any], channel_id: str) -> None:
    if body_channel(body) != channel_id:
        raise StreamRefused(Code.FORBIDDEN, "the token or request is for another channel")


def _sellers(channel: Channel, signer: str, action: str) -> None:
    if not _same(signer, channel.seller):
        raise StreamRefused(Code.FORBIDDEN, f"only the channel's seller may {action}")


def check_open(body: Mapping[str, Any], *, proxy: str, default_retention: int, open_channels: int,
               max_channels: int) -> int:  # fmt: skip
    """The retention (seconds) of the channel a seller may open now."""
    _for_this_proxy(body, proxy)
    retention = body_number(body, "retention") or default_retention
    if retention > default_retention:
        raise StreamRefused(Code.MALFORMED, f"retention may be at most {default_retention} seconds on this proxy")
    if open_channels >= max_channels:
        raise StreamRefused(Code.LIMIT, f"a seller may hold at most {max_channels} open channels here")
    return retention


def check_end(body: Mapping[str, Any], *, signer: str, proxy: str, channel_id: str, channel: Channel | None) -> Channel:
    _for_this_proxy(body, proxy)
    _for_channel(body, channel_id)
    known = _known(channel, channel_id)
    _sellers(known, signer, "end it")
    return known


def check_publisher(body: Mapping[str, Any], *, signer: str, proxy: str, channel_id: str,
                    channel: Channel | None) -> Channel:  # fmt: skip
    """A publish token by the channel's seller, for this channel and proxy, while it is open."""
    _for_this_proxy(body, proxy)
    _for_channel(body, channel_id)
    known = _known(channel, channel_id)
    _sellers(known, signer, "publish")
    if known.state is not ChannelState.OPEN:
        raise StreamRefused(Code.CHANNEL_ENDED, f"channel {channel_id} has ended")
    return known


@dataclass(frozen=True)
class BindRequest:
    channel_id: str
    order_id: int
    product_text: str
    key_grant: str

    @classmethod
    def parse(cls, body: Mapping[str, Any], *, proxy: str, channel_id: str) -> BindRequest:
        _for_this_proxy(body, proxy)
        _for_channel(body, channel_id)
        order_id = body_number(body, "order_id")
        if order_id <= 0:
            raise StreamRefused(Code.MALFORMED, "order_id must be positive")
        return cls(channel_id, order_id, body_text(body, "product", MAX_PRODUCT_CHARS),
                   body_text(body, "key_grant", MAX_GRANT_CHARS))  # fmt: skip


def parse_product(text: str) -> ProductDescription:
    try:
        return ProductDescription.from_dict(json.loads(text))
    except (ValueError, RecursionError, InvalidProduct, TypeError) as exc:
        raise StreamRefused(Code.MALFORMED, f"product description: {exc}") from None


def _order_parties(terms: OrderTerms, signer: str, proxy: str, *, seller: bool) -> None:
    role, expected = ("seller", terms.seller) if seller else ("buyer", terms.buyer)
    if not _same(signer, expected):
        raise StreamRefused(Code.FORBIDDEN, f"signer {signer} is not the order's {role}")
    if not (_same(proxy, terms.proxy) or _same(proxy, terms.proxy2)):
        raise StreamRefused(Code.FORBIDDEN, f"this proxy ({proxy}) is not the order's proxy")


def check_bind(request: BindRequest, *, signer: str, proxy: str, channel: Channel | None, terms: OrderTerms,
               status: OrderStatus, now: int, windows: Windows,
               domain: Domain) -> tuple[ProductDescription, KeyGrant]:  # fmt: skip
    """Every check before the proxy claims proxyFetched for a stream order.

    The order's parties, hashes and state come from the chain; the product must be the
    order's (desc hash), a stream product of this seller whose data hash commits to this
    channel on this proxy, and the key grant must be the seller's, for this order and the
    buyer's key.
    """
    _order_parties(terms, signer, proxy, seller=True)
    known = _known(channel, request.channel_id)
    _sellers(known, signer, "sell it")
    if known.state is not ChannelState.OPEN:
        raise StreamRefused(Code.CHANNEL_ENDED, f"channel {known.id} has ended")
    reason = refusal(Action.PROXY_FETCHED, terms, status, proxy, now, windows)
    if reason == "deadline passed":
        raise StreamRefused(Code.ORDER_EXPIRED, "the order's deadline has passed")
    if reason is not None:
        raise StreamRefused(Code.WRONG_STATE, f"order is {status.state.name}, not SELLER_CONFIRMED")
    product = parse_product(request.product_text)
    if product.desc_hash() != terms.desc_hash:
        raise StreamRefused(Code.FORBIDDEN, "the product is not the order's (descHash differs)")
    if product.ptype is not ProductType.STREAM or product.storage_type != STORAGE_TYPE:
        raise StreamRefused(Code.MALFORMED, "the product is not a stream product")
    if not _same(product.seller, terms.seller):
        raise StreamRefused(Code.FORBIDDEN, "the product names another seller")
    commitment = channel_commitment(proxy, known.id)
    if terms.data_hash != commitment or product.data_hash != commitment.hex():
        raise StreamRefused(Code.FORBIDDEN, "the order's data hash does not commit to this channel on this proxy")
    try:
        grant = check_key_grant(request.key_grant, order_id=request.order_id, terms=terms, domain=domain)
    except ProtocolError as exc:
        raise StreamRefused(Code.FORBIDDEN, str(exc)) from None
    return product, grant


@dataclass(frozen=True)
class SubscribeToken:
    channel_id: str
    order_id: int

    @classmethod
    def parse(cls, body: Mapping[str, Any], *, proxy: str) -> SubscribeToken:
        _for_this_proxy(body, proxy)
        order_id = body_number(body, "order_id")
        return cls(body_channel(body), order_id)


@dataclass(frozen=True)
class Access:
    """A subscription the proxy may serve: whose, under which order, until when (chain time)."""

    order_id: int
    buyer: str
    until: int | None  # the product's end date; None: while the channel exists
    claim_delivery: bool  # the order is ProxyFetched: this subscription is the delivery


def state_refusal(status: OrderStatus, now: int) -> StreamRefused | None:
    """Why an order in this state gives no access (None: it does)."""
    state = status.state
    if state in (OrderState.CREATED, OrderState.SELLER_CONFIRMED):
        return StreamRefused(Code.NOT_PAID, f"order is {state.name}: the channel is not bound to it yet")
    if state is OrderState.PROXY_FETCHED and now >= status.end_time:
        return StreamRefused(Code.ORDER_EXPIRED, "the order's deadline passed before delivery (it is refundable)")
    if state is OrderState.WITHDRAWN:
        return StreamRefused(Code.REFUNDED, "the order was refunded")
    if state is OrderState.SETTLED and status.verdict is not Verdict.BUYER_AT_FAULT:
        return StreamRefused(Code.REFUNDED, "the dispute was settled in the buyer's favour (refunded)")
    return None


def period_refusal(product: ProductDescription, now: int) -> StreamRefused | None:
    if product.start_date and now < product.start_date:
        return StreamRefused(Code.ORDER_EXPIRED, f"the subscription period starts at {product.start_date}")
    if product.end_date and now >= product.end_date:
        return StreamRefused(Code.ORDER_EXPIRED, f"the subscription period ended at {product.end_date}")
    return None


def check_subscriber(token: SubscribeToken, *, signer: str, proxy: str, channel_id: str | None,
                     channel: Channel | None, binding: Binding | None, terms: OrderTerms, status: OrderStatus,
                     now: int) -> Access:  # fmt: skip
    """A subscribe token by a paid order's buyer, for the order's channel, within its period.

    `channel_id` None (the buyer's order lookup) skips the channel the request names.
    """
    if channel_id is not None and token.channel_id != channel_id:
        raise StreamRefused(Code.FORBIDDEN, "the token is for another channel")
    if binding is None or binding.stage is BindStage.FAILED:
        raise StreamRefused(Code.NOT_PAID, f"order {token.order_id} is not bound to a channel on this proxy")
    if binding.channel_id != token.channel_id:
        raise StreamRefused(Code.FORBIDDEN, f"order {token.order_id} is for another channel")
    _order_parties(terms, signer, proxy, seller=False)
    _known(channel, token.channel_id)
    if binding.stage is not BindStage.BOUND:
        raise StreamRefused(Code.NOT_PAID, f"order {token.order_id} is being bound (proxyFetched pending)")
    product = parse_product(binding.product)
    if product.desc_hash() != terms.desc_hash:
        raise StreamRefused(Code.FORBIDDEN, "the bound product is not the order's")
    refused = state_refusal(status, now) or period_refusal(product, now)
    if refused is not None:
        raise refused
    return Access(token.order_id, terms.buyer, product.end_date or None, status.state is OrderState.PROXY_FETCHED)

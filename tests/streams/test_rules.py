"""The stream rules as plain functions: who may open, end, publish, bind and subscribe (no network)."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.lifecycle import Windows
from cpchain.crypto import ecies
from cpchain.proxy.protocol import Domain, make_key_grant
from cpchain.proxy.streams.model import Binding, BindStage, Channel, ChannelState, Code, Delivery, StreamRefused
from cpchain.proxy.streams.rules import (
    BindRequest,
    SubscribeToken,
    check_bind,
    check_end,
    check_open,
    check_publisher,
    check_subscriber,
    period_refusal,
    state_refusal,
)
from cpchain.proxy.streams.wire import channel_commitment, new_channel_id
from cpchain.types import OrderState, OrderStatus, OrderTerms, ProductDescription, ProductType, Verdict

SELLER: LocalAccount = Account.create()
BUYER: LocalAccount = Account.create()
PROXY = Account.create().address
OTHER = Account.create().address
DOMAIN = Domain(31337, Account.create().address)
WINDOWS = Windows(confirm=3600, dispute=86400, arbiter=7 * 86400)
NOW = 1_800_000_000
CHANNEL = new_channel_id()
BUYER_KEY = ecies.public_key_bytes(ecies.generate_private_key())


def channel(**changes: object) -> Channel:
    base = Channel(id=CHANNEL, seller=SELLER.address, topic="pdash-stream-" + CHANNEL, state=ChannelState.OPEN,
                   created_at=NOW - 100, ended_at=None, retention=3600, next_seq=0, next_offset=0,
                   request_nonce="n1")  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def product(**changes: object) -> ProductDescription:
    fields: dict[str, object] = dict(
        seller=SELLER.address, title="feed", ptype=ProductType.STREAM, description="", price=10, category="",
        tags=(), data_hash=channel_commitment(PROXY, CHANNEL).hex(), storage_type="stream", size=0,
        nonce=secrets.token_hex(16),
    )  # fmt: skip
    fields.update(changes)
    return ProductDescription(**fields)  # type: ignore[arg-type]


def terms(p: ProductDescription, **changes: object) -> OrderTerms:
    base = OrderTerms(buyer=BUYER.address, seller=SELLER.address, proxy=PROXY, proxy2=PROXY, price=10, fee=1,
                      desc_hash=p.desc_hash(), data_hash=bytes.fromhex(p.data_hash), buyer_key=BUYER_KEY)  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def status(state: OrderState, end_time: int = NOW + 600, verdict: Verdict = Verdict.NONE) -> OrderStatus:
    return OrderStatus(state=state, end_time=end_time, verdict=verdict)


class refused:  # noqa: N801 (used like pytest.raises)
    """pytest.raises(StreamRefused) that also checks the refusal's code."""

    def __init__(self, code: Code) -> None:
        self.code = code
        self.ctx = pytest.raises(StreamRefused)

    def __enter__(self) -> object:
        return self.ctx.__enter__()

    def __exit__(self, *exc: object) -> bool:
        result = self.ctx.__exit__(*exc)  # type: ignore[arg-type]
        assert self.ctx.excinfo is not None and self.ctx.excinfo.value.code is self.code, self.ctx.excinfo
        return bool(result)


# ------------------------------------------------------------ open, end, publish


def test_open_within_limits() -> None:
    body = {"proxy": PROXY, "retention": "0"}
    assert check_open(body, proxy=PROXY, default_retention=3600, open_channels=0, max_channels=2) == 3600
    assert check_open({**body, "retention": "60"}, proxy=PROXY, default_retention=3600, open_channels=1,
                      max_channels=2) == 60  # fmt: skip
    with refused(Code.LIMIT):
        check_open(body, proxy=PROXY, default_retention=3600, open_channels=2, max_channels=2)
    with refused(Code.MALFORMED):
        check_open({**body, "retention": "7200"}, proxy=PROXY, default_retention=3600, open_channels=0, max_channels=2)
    with refused(Code.FORBIDDEN):
        check_open({**body, "proxy": OTHER}, proxy=PROXY, default_retention=3600, open_channels=0, max_channels=2)
    with refused(Code.MALFORMED):
        check_open({"proxy": PROXY, "retention": "-1"}, proxy=PROXY, default_retention=1, open_channels=0,
                   max_channels=2)  # fmt: skip


def test_only_the_seller_publishes_into_its_open_channel() -> None:
    body = {"channel": CHANNEL, "proxy": PROXY}
    allowed = check_publisher(body, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL, channel=channel())
    assert allowed.id == CHANNEL
    with refused(Code.FORBIDDEN):
        check_publisher(body, signer=BUYER.address, proxy=PROXY, channel_id=CHANNEL, channel=channel())
    with refused(Code.FORBIDDEN):  # a token for another channel
        check_publisher({**body, "channel": new_channel_id()}, signer=SELLER.address, proxy=PROXY,
                        channel_id=CHANNEL, channel=channel())  # fmt: skip
    with refused(Code.FORBIDDEN):  # a token for another proxy
        check_publisher({**body, "proxy": OTHER}, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL,
                        channel=channel())  # fmt: skip
    with refused(Code.UNKNOWN_CHANNEL):
        check_publisher(body, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL, channel=None)
    with refused(Code.UNKNOWN_CHANNEL):
        check_publisher(body, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL,
                        channel=channel(state=ChannelState.DELETED))  # fmt: skip
    with refused(Code.CHANNEL_ENDED):
        check_publisher(body, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL,
                        channel=channel(state=ChannelState.ENDED, ended_at=NOW))  # fmt: skip
    with refused(Code.MALFORMED):
        check_publisher({"proxy": PROXY}, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL, channel=channel())


def test_only_the_seller_ends_its_channel() -> None:
    body = {"channel": CHANNEL, "proxy": PROXY}
    check_end(body, signer=SELLER.address, proxy=PROXY, channel_id=CHANNEL, channel=channel())
    with refused(Code.FORBIDDEN):
        check_end(body, signer=BUYER.address, proxy=PROXY, channel_id=CHANNEL, channel=channel())


def test_retention_rule() -> None:
    assert not channel().deletable(NOW + 10**6)
    ended = channel(state=ChannelState.ENDED, ended_at=NOW)
    assert not ended.deletable(NOW + 3599)
    assert ended.deletable(NOW + 3600)


# ------------------------------------------------------------ binding an order


def grant(order_id: int, signer: LocalAccount = SELLER, buyer_key: bytes = BUYER_KEY) -> str:
    wrapped = ecies.wrap_key(buyer_key, b"k" * 32)
    return make_key_grant(signer, order_id=order_id, wrapped_key=wrapped, buyer_key=buyer_key, domain=DOMAIN)


def bind(p: ProductDescription, t: OrderTerms, s: OrderStatus, *, signer: str = SELLER.address,
         ch: Channel | None = None, key_grant: str | None = None, order_id: int = 7) -> object:  # fmt: skip
    request = BindRequest(CHANNEL, order_id, p.canonical().decode(), key_grant or grant(order_id))
    return check_bind(request, signer=signer, proxy=PROXY, channel=ch or channel(), terms=t, status=s, now=NOW,
                      windows=WINDOWS, domain=DOMAIN)  # fmt: skip


def test_bind_accepts_the_sellers_stream_product_for_a_confirmed_order() -> None:
    p = product()
    got, key_grant = bind(p, terms(p), status(OrderState.SELLER_CONFIRMED))  # type: ignore[misc]
    assert got == p and key_grant.order_id == 7


def test_bind_refusals() -> None:
    p = product()
    t = terms(p)
    confirmed = status(OrderState.SELLER_CONFIRMED)
    with refused(Code.FORBIDDEN):  # not the order's seller
        bind(p, t, confirmed, signer=BUYER.address)
    with refused(Code.FORBIDDEN):  # not this proxy's order
        bind(p, terms(p, proxy=OTHER, proxy2=OTHER), confirmed)
    with refused(Code.WRONG_STATE):  # not confirmed by the seller
        bind(p, t, status(OrderState.CREATED))
    with refused(Code.ORDER_EXPIRED):
        bind(p, t, status(OrderState.SELLER_CONFIRMED, end_time=NOW))
    with refused(Code.FORBIDDEN):  # another product than the order's
        bind(product(), t, confirmed)
    file_product = product(ptype=ProductType.FILE, storage_type="local")
    with refused(Code.MALFORMED):
        bind(file_product, terms(file_product), confirmed)
    elsewhere = product(data_hash=channel_commitment(OTHER, CHANNEL).hex())
    with refused(Code.FORBIDDEN):  # the order's data hash names a channel on another proxy
        bind(elsewhere, terms(elsewhere), confirmed)
    with refused(Code.FORBIDDEN):  # someone else's grant
        bind(p, t, confirmed, key_grant=grant(7, signer=BUYER))
    with refused(Code.FORBIDDEN):  # a grant made for another order
        bind(p, t, confirmed, key_grant=grant(8))
    with refused(Code.FORBIDDEN):  # a channel of another seller
        bind(p, t, confirmed, ch=channel(seller=OTHER))
    with refused(Code.CHANNEL_ENDED):
        bind(p, t, confirmed, ch=channel(state=ChannelState.ENDED, ended_at=NOW))
    with refused(Code.MALFORMED):
        BindRequest.parse({"channel": CHANNEL, "proxy": PROXY, "order_id": "0", "product": "{}", "key_grant": "x"},
                          proxy=PROXY, channel_id=CHANNEL)  # fmt: skip


# ------------------------------------------------------------ subscribing


def binding(p: ProductDescription, **changes: object) -> Binding:
    base = Binding(order_id=7, channel_id=CHANNEL, seller=SELLER.address, buyer=BUYER.address,
                   product=p.canonical().decode(), key_grant="{}", stage=BindStage.BOUND, error="", created_at=NOW,
                   fetched_tx="0x01", delivery=Delivery.NONE, delivered_tx="")  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def subscribe(p: ProductDescription, s: OrderStatus, *, signer: str = BUYER.address, token_channel: str = CHANNEL,
              b: Binding | bool | None = True, t: OrderTerms | None = None, now: int = NOW) -> object:  # fmt: skip
    token = SubscribeToken.parse({"channel": token_channel, "order_id": "7", "proxy": PROXY}, proxy=PROXY)
    bound = binding(p) if b is True else (None if b is False else b)
    return check_subscriber(token, signer=signer, proxy=PROXY, channel_id=CHANNEL, channel=channel(), binding=bound,
                            terms=t or terms(p), status=s, now=now)  # fmt: skip


@pytest.mark.parametrize(
    "state",
    [OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.FINISHED, OrderState.DISPUTED],
)
def test_paid_orders_may_subscribe(state: OrderState) -> None:
    p = product()
    access = subscribe(p, status(state))
    assert access.buyer == BUYER.address and access.until is None  # type: ignore[attr-defined]
    assert access.claim_delivery is (state is OrderState.PROXY_FETCHED)  # type: ignore[attr-defined]


def test_a_settled_dispute_decides() -> None:
    p = product()
    subscribe(p, status(OrderState.SETTLED, verdict=Verdict.BUYER_AT_FAULT))
    with refused(Code.REFUNDED):
        subscribe(p, status(OrderState.SETTLED, verdict=Verdict.SELLER_AT_FAULT))


def test_unpaid_expired_refunded_and_foreign_orders_are_refused() -> None:
    p = product()
    fetched = status(OrderState.PROXY_FETCHED)
    with refused(Code.NOT_PAID):
        subscribe(p, status(OrderState.SELLER_CONFIRMED), b=False)
    with refused(Code.NOT_PAID):
        subscribe(p, fetched, b=binding(p, stage=BindStage.BINDING))
    with refused(Code.ORDER_EXPIRED):  # not delivered before the deadline: refundable
        subscribe(p, status(OrderState.PROXY_FETCHED, end_time=NOW))
    with refused(Code.REFUNDED):
        subscribe(p, status(OrderState.WITHDRAWN))
    with refused(Code.FORBIDDEN):  # not the order's buyer
        subscribe(p, fetched, signer=SELLER.address)
    with refused(Code.FORBIDDEN):  # a token for another channel
        subscribe(p, fetched, token_channel=new_channel_id())
    with refused(Code.FORBIDDEN):  # the order is bound to another channel
        subscribe(p, fetched, b=binding(p, channel_id=new_channel_id()))
    with refused(Code.FORBIDDEN):  # this proxy is not the order's
        subscribe(p, fetched, t=terms(p, proxy=OTHER, proxy2=OTHER))


def test_the_products_period() -> None:
    p = product(start_date=NOW + 10, end_date=NOW + 100)
    with refused(Code.ORDER_EXPIRED):
        subscribe(p, status(OrderState.FINISHED), now=NOW)
    access = subscribe(p, status(OrderState.FINISHED), now=NOW + 10)
    assert access.until == NOW + 100  # type: ignore[attr-defined]
    with refused(Code.ORDER_EXPIRED):
        subscribe(p, status(OrderState.FINISHED), now=NOW + 100)
    assert period_refusal(product(), NOW + 10**9) is None
    assert state_refusal(status(OrderState.FINISHED, end_time=0), NOW) is None


def test_refusals_carry_http_statuses() -> None:
    assert StreamRefused(Code.NOT_PAID, "x").http_status == 402
    assert StreamRefused(Code.UNAUTHENTICATED, "x").http_status == 401
    body = StreamRefused(Code.SEQ_MISMATCH, "expected 3", expected_seq=3).as_json()
    assert body == {"error": "expected 3", "code": "seq_mismatch", "expected_seq": 3}
    assert json.dumps(body)

"""The proxy's pure rules, without a network: request checks against the order, ranges, retention."""

from __future__ import annotations

import json
import secrets

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.lifecycle import Windows
from cpchain.crypto import ecies
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import Domain, ProtocolError, make_key_grant
from cpchain.proxy.rules import (
    Refused,
    SellerOffer,
    check_buyer_request,
    check_seller_request,
    file_removable,
    fully_served,
    merge_ranges,
    missing_ranges,
    parse_range,
)
from cpchain.storage.base import Locator
from cpchain.types import OrderState, OrderStatus, OrderTerms, ProductDescription, ProductType

DOMAIN = Domain(31337, "0x" + "11" * 20)
WINDOWS = Windows(confirm=3600, dispute=86400, arbiter=604800)
NOW = 1_000_000
SELLER: LocalAccount = Account.create()
BUYER: LocalAccount = Account.create()
PROXY, PROXY2, OTHER = (Account.create().address for _ in range(3))
DATA_HASH = "ab" * 32
LOCATOR = Locator("local", {"path": "/data/cipher.bin"})


def product(**changes: object) -> ProductDescription:
    fields: dict[str, object] = {
        "seller": SELLER.address, "title": "t", "ptype": ProductType.FILE, "description": "", "price": 10,
        "category": "", "tags": (), "data_hash": DATA_HASH, "storage_type": "local", "size": 100,
        "nonce": "cd" * 16,
    }  # fmt: skip
    fields.update(changes)
    return ProductDescription(**fields)  # type: ignore[arg-type]


BUYER_KEY = ecies.public_key_bytes(ecies.generate_private_key())
TERMS = OrderTerms(
    buyer=BUYER.address, seller=SELLER.address, proxy=PROXY, proxy2=PROXY2, price=10, fee=1,
    desc_hash=product().desc_hash(), data_hash=bytes.fromhex(DATA_HASH), buyer_key=BUYER_KEY,
)  # fmt: skip
CONFIRMED = OrderStatus(OrderState.SELLER_CONFIRMED, end_time=NOW + 100)


def request(order_id: int = 7, **changes: str) -> pb.SellerData:
    grant = make_key_grant(SELLER, order_id=order_id, wrapped_key=secrets.token_bytes(80), buyer_key=BUYER_KEY,
                           domain=DOMAIN)  # fmt: skip
    data = pb.SellerData(order_id=order_id, product=product().canonical().decode(), locator=LOCATOR.to_json(),
                         key_grant=grant)  # fmt: skip
    for name, value in changes.items():
        setattr(data, name, value)
    return data


def check(data: pb.SellerData | None = None, *, terms: OrderTerms = TERMS, status: OrderStatus = CONFIRMED,
          signer: str = SELLER.address, proxy: str = PROXY, now: int = NOW) -> SellerOffer:  # fmt: skip
    return check_seller_request(data or request(), terms=terms, status=status, signer=signer, proxy=proxy,
                                domain=DOMAIN, now=now, windows=WINDOWS)  # fmt: skip


def refused(code: int, **kwargs: object) -> str:
    with pytest.raises(ProtocolError) as info:
        check(**kwargs)  # type: ignore[arg-type]
    assert pb.Status.Name(info.value.status) == pb.Status.Name(code)  # type: ignore[arg-type]
    return str(info.value)


def test_a_valid_seller_request_yields_what_to_fetch() -> None:
    offer = check()
    assert offer.product == product() and offer.locator == LOCATOR and offer.max_bytes == 100
    assert len(offer.grant.wrapped_key) == 80
    assert check(proxy=PROXY2).locator == LOCATOR  # the secondary proxy too


def test_identity_and_order_state_come_from_the_chain() -> None:
    refused(pb.WRONG_SIGNER, signer=BUYER.address)
    refused(pb.WRONG_SIGNER, signer=OTHER)
    refused(pb.NOT_THIS_PROXY, proxy=OTHER)
    assert "CREATED" in refused(pb.WRONG_STATE, status=OrderStatus(OrderState.CREATED, end_time=NOW + 100))
    for final in (OrderState.FINISHED, OrderState.WITHDRAWN, OrderState.DISPUTED):
        refused(pb.WRONG_STATE, status=OrderStatus(final, end_time=NOW + 100))
    refused(pb.DEADLINE_PASSED, now=NOW + 100)
    refused(pb.DEADLINE_PASSED, status=OrderStatus(OrderState.PROXY_FETCHED, end_time=NOW))


def test_the_secondary_proxy_may_keep_a_copy_after_the_first_claimed() -> None:
    assert check(status=OrderStatus(OrderState.PROXY_FETCHED, end_time=NOW + 100), proxy=PROXY2)
    assert check(status=OrderStatus(OrderState.PROXY_DELIVERED, end_time=NOW + 100), proxy=PROXY2)


def test_the_product_must_be_the_ordered_one() -> None:
    refused(pb.DESC_HASH_MISMATCH, data=request(product=product(title="other").canonical().decode()))
    refused(pb.MALFORMED, data=request(product="{not json"))
    refused(pb.MALFORMED, data=request(product=json.dumps({"seller": SELLER.address})))
    other_seller = product(seller=OTHER)
    terms = OrderTerms(**{**TERMS.__dict__, "desc_hash": other_seller.desc_hash()})
    refused(pb.WRONG_SIGNER, data=request(product=other_seller.canonical().decode()), terms=terms)
    other_data = product(data_hash="ef" * 32)
    terms = OrderTerms(**{**TERMS.__dict__, "desc_hash": other_data.desc_hash()})
    refused(pb.DATA_HASH_MISMATCH, data=request(product=other_data.canonical().decode()), terms=terms)
    stream = product(ptype=ProductType.STREAM)
    terms = OrderTerms(**{**TERMS.__dict__, "desc_hash": stream.desc_hash()})
    refused(pb.MALFORMED, data=request(product=stream.canonical().decode()), terms=terms)


def test_the_locator_is_validated_and_must_match_the_storage_type() -> None:
    refused(pb.MALFORMED, data=request(locator='{"type": "template"}'))
    refused(pb.MALFORMED, data=request(locator='{"type": "local", "path": 1}'))
    refused(pb.MALFORMED, data=request(locator="[]"))
    proxy_locator = Locator("proxy", {"url": "https://h:1/store/" + "ab" * 32, "fingerprint": "cd" * 32})
    refused(pb.STORAGE_TYPE_MISMATCH, data=request(locator=proxy_locator.to_json()))


def test_the_key_grant_must_be_the_sellers_for_this_order_and_buyer() -> None:
    def grant(signer: LocalAccount = SELLER, order_id: int = 7, buyer_key: bytes = BUYER_KEY,
              domain: Domain = DOMAIN, wrapped: bytes = secrets.token_bytes(80)) -> str:  # fmt: skip
        return make_key_grant(signer, order_id=order_id, wrapped_key=wrapped, buyer_key=buyer_key, domain=domain)

    cases = {
        "seller": grant(signer=BUYER),
        "another order": grant(order_id=8),
        "another buyer key": grant(buyer_key=secrets.token_bytes(32)),
        "another chain": grant(domain=Domain(1, DOMAIN.contract)),
        "malformed": grant(wrapped=b"short"),
        "signature": "{}",
    }
    for fragment, text in cases.items():
        assert fragment in refused(pb.BAD_KEY_GRANT, data=request(key_grant=text))


def test_buyer_requests() -> None:
    fetched = OrderStatus(OrderState.PROXY_FETCHED, end_time=NOW + 100)
    check_buyer_request(TERMS, fetched, signer=BUYER.address, proxy=PROXY)
    for state in (OrderState.PROXY_DELIVERED, OrderState.FINISHED, OrderState.DISPUTED, OrderState.SETTLED):
        check_buyer_request(TERMS, OrderStatus(state, end_time=0), signer=BUYER.address, proxy=PROXY2)
    cases = [
        (SELLER.address, PROXY, fetched, pb.WRONG_SIGNER),
        (BUYER.address, OTHER, fetched, pb.NOT_THIS_PROXY),
        (BUYER.address, PROXY, CONFIRMED, pb.NOT_READY),
        (BUYER.address, PROXY, OrderStatus(OrderState.WITHDRAWN, end_time=0), pb.WRONG_STATE),
    ]
    for signer, proxy, status, code in cases:
        with pytest.raises(Refused) as info:
            check_buyer_request(TERMS, status, signer=signer, proxy=proxy)
        assert info.value.status == code


def test_byte_range_arithmetic() -> None:
    assert merge_ranges([(10, 20), (0, 5), (5, 10), (30, 40), (35, 36)]) == [(0, 20), (30, 40)]
    assert merge_ranges([(3, 3)], (1, 2)) == [(1, 2)]
    assert missing_ranges([(0, 20), (30, 40)], 50) == [(20, 30), (40, 50)]
    assert missing_ranges([], 5) == [(0, 5)] and missing_ranges([], 0) == []
    assert missing_ranges([(0, 60)], 50) == [] and fully_served([(0, 50)], 50)
    assert not fully_served([(1, 50)], 50)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-", 100, (0, 100)),
        ("bytes=10-19", 100, (10, 20)),
        ("bytes=90-1000", 100, (90, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-1000", 100, (0, 100)),
        ("bytes=0-9,20-29", 100, None),  # several ranges: the whole file
        ("items=0-9", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=5-4", 100, "error"),
        ("bytes=100-", 100, "error"),
        ("bytes=-0", 100, "error"),
        ("bytes=0-", 0, "error"),
    ],
)
def test_range_headers(header: str | None, size: int, expected: object) -> None:
    if expected == "error":
        with pytest.raises(ValueError):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == expected


def test_retention() -> None:
    day = 86400
    assert file_removable(state=OrderState.FINISHED, fetched_at=NOW, now=NOW, retention=day)
    assert file_removable(state=OrderState.WITHDRAWN, fetched_at=NOW, now=NOW, retention=day)
    assert file_removable(state=None, fetched_at=NOW, now=NOW, retention=day)
    assert not file_removable(state=OrderState.PROXY_FETCHED, fetched_at=NOW, now=NOW + day - 1, retention=day)
    assert file_removable(state=OrderState.PROXY_FETCHED, fetched_at=NOW, now=NOW + day, retention=day)
    assert not file_removable(state=OrderState.DISPUTED, fetched_at=NOW, now=NOW + 100 * day, retention=day)

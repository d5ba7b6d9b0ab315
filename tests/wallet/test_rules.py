"""The wallet's pure decisions (no network): listings, fair orders, purchases, automation steps."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import EscrowParams
from cpchain.chain.lifecycle import Windows
from cpchain.crypto import sign_product
from cpchain.types import OrderState, OrderTerms, ProductDescription, ProductType, Verdict
from cpchain.wallet.errors import InvalidListing
from cpchain.wallet.rules import (
    ROLE_BUYER,
    ROLE_SELLER,
    OrderFacts,
    Policy,
    Task,
    backoff,
    buy_refusal,
    decide,
    default_fee,
    download_names,
    rate_refusal,
    receive_refusal,
    seller_refusal,
    verdict_favours,
    verify_listing,
)

SELLER: LocalAccount = Account.create()
OTHER: LocalAccount = Account.create()
BUYER, PROXY = "0x" + "b" * 40, "0x" + "c" * 40
WIN = Windows(confirm=60, dispute=100, arbiter=1000)
END = 5000
PARAMS = EscrowParams(10**18, 600, 30 * 86400, 3600, 86400, 7 * 86400)
PRODUCT = ProductDescription(
    seller=SELLER.address, title="Weather", ptype=ProductType.FILE, description="hourly", price=1000,
    category="climate", tags=("weather",), data_hash="ab" * 32, storage_type="local", size=123,
    nonce=secrets.token_hex(16),
)  # fmt: skip
TERMS = OrderTerms(BUYER, SELLER.address, PROXY, PROXY, price=1000, fee=10, desc_hash=PRODUCT.desc_hash(),
                   data_hash=bytes.fromhex(PRODUCT.data_hash), buyer_key=b"k" * 32)  # fmt: skip


def listing(product: ProductDescription = PRODUCT, signer: LocalAccount = SELLER, **over: object) -> dict[str, object]:
    info: dict[str, object] = {
        "market_hash": product.market_hash(),
        "canonical": product.canonical().decode(),
        "signature": sign_product(signer, product.canonical()),
        "title": product.title,
    }
    info.update(over)
    return info


# --------------------------------------------------------------------------- listings


def test_a_genuine_listing_is_accepted() -> None:
    assert verify_listing(listing()) == PRODUCT


def test_a_listing_signed_by_someone_else_is_refused() -> None:
    with pytest.raises(InvalidListing, match="signed by"):
        verify_listing(listing(signer=OTHER))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"market_hash": "A" * 43}, "market hash"),
        ({"canonical": PRODUCT.canonical().decode().replace("1000", "1")}, "signed by|market hash"),
        ({"canonical": json.dumps(PRODUCT.to_dict(), indent=1)}, "canonical"),
        ({"canonical": "{not json"}, "invalid"),
        ({"signature": "0x1234"}, "malformed"),
        ({"canonical": None}, "lacks"),
    ],
)
def test_a_tampered_listing_is_refused(over: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidListing, match=match):
        verify_listing(listing(**over))


# --------------------------------------------------------------------------- seller


def test_a_fair_order_for_the_sellers_product_is_accepted() -> None:
    assert seller_refusal(TERMS, PRODUCT, SELLER.address) is None
    assert seller_refusal(replace(TERMS, price=2000), PRODUCT, SELLER.address.lower()) is None  # pays more: fine


@pytest.mark.parametrize(
    ("terms", "product", "seller", "match"),
    [
        (TERMS, PRODUCT, OTHER.address, "not the order's seller"),
        (TERMS, None, SELLER.address, "not for one of this wallet's products"),
        (replace(TERMS, price=999), PRODUCT, SELLER.address, "less than the listed"),
        (replace(TERMS, data_hash=b"\x00" * 32), PRODUCT, SELLER.address, "data hash"),
        (replace(TERMS, desc_hash=b"\x00" * 32), PRODUCT, SELLER.address, "another description"),
        (TERMS, replace(PRODUCT, ptype=ProductType.STREAM), SELLER.address, "another description|only file"),
    ],
    ids=["other seller", "not ours", "underpaid", "data hash", "description", "stream"],
)
def test_an_unfair_or_foreign_order_is_not_accepted(
    terms: OrderTerms, product: ProductDescription | None, seller: str, match: str
) -> None:
    reason = seller_refusal(terms, product, seller)
    assert reason is not None and re.search(match, reason)


# --------------------------------------------------------------------------- buyer


def test_buy_checks_before_paying() -> None:
    assert buy_refusal(PRODUCT, BUYER, PARAMS, fee=default_fee(PRODUCT.price), time_allowed=86400) is None
    assert buy_refusal(PRODUCT, SELLER.address, PARAMS, fee=1, time_allowed=86400) == "this is your own product"
    assert "twice the proxy fee" in str(buy_refusal(PRODUCT, BUYER, PARAMS, fee=500, time_allowed=86400))
    assert "time allowed" in str(buy_refusal(PRODUCT, BUYER, PARAMS, fee=1, time_allowed=60))
    stream = replace(PRODUCT, ptype=ProductType.STREAM)
    assert "does not name its channel" in str(buy_refusal(stream, BUYER, PARAMS, fee=1, time_allowed=86400))
    assert default_fee(10**19) == 10**17 and default_fee(99) == 0


def test_receive_and_review_follow_the_order_state() -> None:
    assert receive_refusal(OrderState.CREATED) == "the proxy has not fetched the data yet"
    for state in (OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.FINISHED):
        assert receive_refusal(state) is None
    assert receive_refusal(OrderState.WITHDRAWN) == "nothing to receive in state WITHDRAWN"
    assert rate_refusal(ROLE_BUYER, OrderState.FINISHED) is None
    assert rate_refusal(ROLE_BUYER, OrderState.PROXY_DELIVERED) == "the purchase is not complete"
    assert rate_refusal(ROLE_SELLER, OrderState.FINISHED) == "only the buyer reviews a purchase"


def test_download_names_never_leave_the_download_directory() -> None:
    cipher, plain = download_names(7, "0xABCDEF0123456789" + "0" * 24, "../../etc/passwd")
    assert cipher == "abcdef01-7.pdash"
    assert "/" not in plain and not plain.startswith(".") and plain.startswith("abcdef01-7-")
    assert download_names(7, "0x" + "1" * 40, "")[1] == "11111111-7-data"


# --------------------------------------------------------------------------- automation


def facts(role: str, state: OrderState, **kw: object) -> OrderFacts:
    defaults: dict[str, object] = {"product": PRODUCT if role == ROLE_SELLER else None}
    defaults.update(kw)
    return OrderFacts(role=role, terms=TERMS, state=state, end_time=END, **defaults)  # type: ignore[arg-type]


def run(f: OrderFacts, *, me: str | None = None, now: int = END - 100, wall: int = 10**9,
        policy: Policy | None = None) -> list[Task]:  # fmt: skip
    who = me or (SELLER.address if f.role == ROLE_SELLER else BUYER)
    return decide(f, me=who, chain_now=now, wall_now=wall, windows=WIN, policy=policy or Policy())


def test_seller_confirms_and_delivers_a_new_fair_order() -> None:
    assert run(facts(ROLE_SELLER, OrderState.CREATED)) == [Task.SELLER_CONFIRM, Task.DELIVER]


def test_after_a_restart_the_seller_delivers_a_confirmed_order() -> None:
    assert run(facts(ROLE_SELLER, OrderState.SELLER_CONFIRMED)) == [Task.DELIVER]
    assert run(facts(ROLE_SELLER, OrderState.PROXY_FETCHED)) == []  # the proxy has it: nothing to do


def test_seller_ignores_an_unfair_order_once() -> None:
    cheap = replace(facts(ROLE_SELLER, OrderState.CREATED), terms=replace(TERMS, price=1))
    assert run(cheap) == [Task.IGNORE]
    assert run(replace(cheap, ignored="the order pays 1 wei")) == []
    assert run(facts(ROLE_SELLER, OrderState.CREATED, product=None)) == [Task.IGNORE]


def test_nothing_is_due_while_backing_off_or_for_a_stranger() -> None:
    assert run(facts(ROLE_SELLER, OrderState.CREATED, next_try=10**9 + 1)) == []
    assert run(facts(ROLE_SELLER, OrderState.CREATED), me=OTHER.address) == []  # "only seller": no confirm


def test_buyer_receives_once_the_proxy_has_the_data() -> None:
    assert run(facts(ROLE_BUYER, OrderState.CREATED)) == []
    assert run(facts(ROLE_BUYER, OrderState.SELLER_CONFIRMED)) == []
    assert run(facts(ROLE_BUYER, OrderState.PROXY_FETCHED)) == [Task.RECEIVE]
    assert run(facts(ROLE_BUYER, OrderState.PROXY_DELIVERED)) == [Task.RECEIVE]
    assert run(facts(ROLE_BUYER, OrderState.PROXY_DELIVERED, received=True)) == []
    # A sale the seller closed by timeout before the download: still received.
    assert run(facts(ROLE_BUYER, OrderState.FINISHED)) == [Task.RECEIVE]
    assert run(facts(ROLE_BUYER, OrderState.WITHDRAWN)) == []


def test_auto_confirm_only_after_a_verified_delivery() -> None:
    auto = Policy(auto_confirm=True)
    assert run(facts(ROLE_BUYER, OrderState.PROXY_DELIVERED, received=True), policy=auto) == [Task.BUYER_CONFIRM]
    assert run(facts(ROLE_BUYER, OrderState.PROXY_DELIVERED), policy=auto) == [Task.RECEIVE, Task.BUYER_CONFIRM]
    assert run(facts(ROLE_BUYER, OrderState.PROXY_FETCHED), policy=auto) == [Task.RECEIVE]
    late = facts(ROLE_BUYER, OrderState.PROXY_DELIVERED, received=True)
    assert run(late, now=END, policy=auto) == []  # confirm window over: the seller's timeout


@pytest.mark.parametrize(
    ("role", "state", "due"),
    [
        (ROLE_BUYER, OrderState.CREATED, [Task.CLAIM_TIMEOUT]),  # refund
        (ROLE_SELLER, OrderState.CREATED, []),  # pays the seller nothing
        (ROLE_SELLER, OrderState.SELLER_CONFIRMED, [Task.CLAIM_TIMEOUT]),  # deposit back, no late delivery
        (ROLE_BUYER, OrderState.PROXY_FETCHED, [Task.CLAIM_TIMEOUT]),  # no download after the deadline
        (ROLE_SELLER, OrderState.PROXY_DELIVERED, [Task.CLAIM_TIMEOUT]),  # paid without the buyer
        (ROLE_BUYER, OrderState.PROXY_DELIVERED, [Task.RECEIVE]),
    ],
)
def test_timeouts_are_claimed_by_the_party_they_pay(role: str, state: OrderState, due: list[Task]) -> None:
    assert run(facts(role, state), now=END) == due
    assert run(facts(role, state), now=END, policy=Policy(claim_timeouts=False)) == [
        t for t in due if t is not Task.CLAIM_TIMEOUT
    ]


def test_a_dispute_nobody_rules_on_is_closed_after_the_arbiter_window() -> None:
    disputed = facts(ROLE_BUYER, OrderState.DISPUTED, dispute_end=END, received=True)
    assert run(disputed, now=END + WIN.arbiter - 1) == []
    assert run(disputed, now=END + WIN.arbiter) == [Task.CLAIM_TIMEOUT]


def test_a_party_agrees_with_a_verdict_in_its_favour_and_never_appeals() -> None:
    assert verdict_favours(ROLE_BUYER, Verdict.SELLER_AT_FAULT) and verdict_favours(ROLE_SELLER, Verdict.BUYER_AT_FAULT)
    assert not verdict_favours(ROLE_BUYER, Verdict.BUYER_AT_FAULT) and not verdict_favours(ROLE_SELLER, Verdict.NONE)
    for role, won, lost in ((ROLE_BUYER, Verdict.SELLER_AT_FAULT, Verdict.BUYER_AT_FAULT),
                            (ROLE_SELLER, Verdict.BUYER_AT_FAULT, Verdict.SELLER_AT_FAULT)):  # fmt: skip
        disputed = facts(role, OrderState.DISPUTED, dispute_end=END, received=True)
        assert run(disputed) == []  # no verdict yet
        assert run(replace(disputed, verdict=won)) == [Task.ACCEPT_VERDICT]
        assert run(replace(disputed, verdict=won, agreed=True)) == []  # once
        assert run(replace(disputed, verdict=lost)) == []  # a person decides whether to appeal
        assert run(replace(disputed, verdict=won), now=END) == []  # the agreement window is over
        assert run(replace(disputed, verdict=won), policy=Policy(accept_verdicts=False)) == []


def test_after_the_arbiter_window_only_the_verdicts_winner_claims_the_timeout() -> None:
    for role, won, lost in ((ROLE_BUYER, Verdict.SELLER_AT_FAULT, Verdict.BUYER_AT_FAULT),
                            (ROLE_SELLER, Verdict.BUYER_AT_FAULT, Verdict.SELLER_AT_FAULT)):  # fmt: skip
        disputed = facts(role, OrderState.DISPUTED, dispute_end=END, received=True)
        after = END + WIN.arbiter
        assert run(replace(disputed, verdict=won, agreed=True), now=after) == [Task.CLAIM_TIMEOUT]
        assert run(replace(disputed, verdict=lost), now=after) == []  # it pays the other party only
        assert run(disputed, now=after) == [Task.CLAIM_TIMEOUT]  # no verdict: both are refunded


def test_backoff_grows_and_is_capped() -> None:
    policy = Policy(retry_base=5, retry_max=60)
    assert [backoff(n, policy) for n in (1, 2, 3, 4, 5, 10)] == [5, 10, 20, 40, 60, 60]

"""Every order function's guards on both backends: caller, state, deadline, terms, arguments.

Each refusal is checked with the contract's exact reason string; a matrix test then compares
every (action, caller, state, time) refusal on chain with the pure mirror in
cpchain.chain.lifecycle.
"""

from __future__ import annotations

from typing import Any

import pytest

from cpchain.chain.errors import InvalidArgument, UnknownOrder
from cpchain.chain.escrow import ArbiterAgent, BuyerAgent, PartyAgent, ProxyAgent, SellerAgent
from cpchain.chain.lifecycle import Action, refusal
from cpchain.chain.tx import revert_reason
from cpchain.types import OrderState, OrderTerms
from tests.chain.conftest import World
from tests.chain.escrow.test_escrow_lifecycle import (
    ARBITER,
    DATA_HASH,
    DISPUTE,
    PRICE,
    TIME_ALLOWED,
    advance,
    agent,
    assert_solvent,
    at,
    order_call,
    order_in,
    place,
    refused,
    state,
    tampered,
    terms_of,
    travel,
)

NON_SELLERS = ["buyer", "proxy", "proxy2", "arbiter", "other"]
NON_BUYERS = ["seller", "proxy", "proxy2", "arbiter", "other"]
NON_PROXIES = ["buyer", "seller", "proxy2", "arbiter", "other"]  # proxy2 is not in a default order
NON_PARTIES = ["proxy", "proxy2", "arbiter", "other"]


# ---------------------------------------------------------------------------- per function


def test_seller_confirm_guards(world: World) -> None:
    oid = place(world)
    terms = terms_of(world, oid)
    for name in NON_SELLERS:
        with refused("only seller"):
            agent(world, SellerAgent, name).confirm(oid)
    for value in (0, PRICE - 1, PRICE + 1, 2 * PRICE):
        with refused("deposit must equal price"):
            order_call(world, "seller", "sellerConfirm", oid, terms, value=value)
    world.seller.confirm(oid)
    with refused("wrong state"):
        world.seller.confirm(oid)
    for target in (OrderState.PROXY_FETCHED, OrderState.FINISHED, OrderState.WITHDRAWN):
        with refused("wrong state"):
            world.seller.confirm(order_in(world, target))
    assert_solvent(world)


def test_buyer_withdraw_guards(world: World) -> None:
    oid = place(world)
    for name in NON_BUYERS:
        with refused("only buyer"):
            agent(world, BuyerAgent, name).withdraw(oid)
    assert state(world, oid) is OrderState.CREATED


def test_proxy_fetched_guards(world: World) -> None:
    oid = place(world)
    with refused("wrong state"):
        world.proxy.claim_fetched(oid)
    world.seller.confirm(oid)
    for name in NON_PROXIES:
        with refused("only proxy"):
            agent(world, ProxyAgent, name).claim_fetched(oid)
    world.proxy.claim_fetched(oid)
    with refused("wrong state"):
        world.proxy.claim_fetched(oid)


def test_proxy_delivered_guards(world: World) -> None:
    oid = order_in(world, OrderState.SELLER_CONFIRMED)
    with refused("wrong state"):
        world.proxy.claim_delivered(oid, DATA_HASH)
    world.proxy.claim_fetched(oid)
    for name in NON_PROXIES:
        with refused("only proxy"):
            agent(world, ProxyAgent, name).claim_delivered(oid, DATA_HASH)
    for wrong in (b"\xdb" * 32, b"\x00" * 32, b"\xda" * 31 + b"\xdb"):
        with refused("deliver hash mismatch"):
            world.proxy.claim_delivered(oid, wrong)
    # malformed hashes are caught before sending
    for bad in (b"\xda" * 31, b"\xda" * 33, "0xdada", ""):
        with pytest.raises(InvalidArgument):
            world.proxy.claim_delivered(oid, bad)
    world.proxy.claim_delivered(oid, "0x" + DATA_HASH.hex())  # a hex string works too
    with refused("wrong state"):
        world.proxy.claim_delivered(oid, DATA_HASH)


@pytest.mark.parametrize("action", ["confirm", "dispute"])
def test_buyer_confirm_and_dispute_guards(world: World, action: str) -> None:
    oid = order_in(world, OrderState.PROXY_FETCHED)
    with refused("wrong state"):
        getattr(world.buyer, action)(oid)
    world.proxy.claim_delivered(oid, DATA_HASH)
    for name in NON_BUYERS:
        with refused("only buyer"):
            getattr(agent(world, BuyerAgent, name), action)(oid)
    getattr(world.buyer, action)(oid)
    for again in ("confirm", "dispute"):
        with refused("wrong state"):
            getattr(world.buyer, again)(oid)


def test_proxy_process_dispute_guards(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_DELIVERED, proxy2=world.address("proxy2"))
    with refused("wrong state"):
        world.proxy.process_dispute(oid, True)
    world.buyer.dispute(oid)
    for name in ("buyer", "seller", "arbiter", "other"):
        with refused("only proxy"):
            agent(world, ProxyAgent, name).process_dispute(oid, True)
    world.proxy2.process_dispute(oid, False)
    for proxy in (world.proxy, world.proxy2):
        for seller_at_fault in (True, False):
            with refused("verdict already given"):
                proxy.process_dispute(oid, seller_at_fault)


def test_answer_verdict_guards(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_DELIVERED)
    with refused("wrong state"):
        world.buyer.answer_verdict(oid, True)
    world.buyer.dispute(oid)
    for party in (world.buyer, world.seller):
        with refused("no verdict yet"):
            party.answer_verdict(oid, True)
    world.proxy.process_dispute(oid, True)
    for name in NON_PARTIES:
        for agree in (True, False):
            with refused("only buyer or seller"):
                agent(world, PartyAgent, name).answer_verdict(oid, agree)
    world.buyer.answer_verdict(oid, True)
    for agree in (True, False):  # an agreement cannot be taken back
        with refused("already agreed"):
            world.buyer.answer_verdict(oid, agree)
    assert world.escrow.status(oid).buyer_agreed


def test_answer_verdict_seller_already_agreed(world: World) -> None:
    oid = order_in(world, OrderState.DISPUTED)
    world.proxy.process_dispute(oid, False)
    world.seller.answer_verdict(oid, True)
    with refused("already agreed"):
        world.seller.answer_verdict(oid, False)
    status = world.escrow.status(oid)
    assert (status.seller_agreed, status.buyer_agreed, status.appealed) == (True, False, False)


def test_arbiter_rule_guards(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_DELIVERED)
    for name in ("buyer", "seller", "proxy", "proxy2", "other"):
        with refused("only arbiter"):
            agent(world, ArbiterAgent, name).rule(oid, seller_at_fault=True, proxy_at_fault=False)
    with refused("wrong state"):
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    world.buyer.dispute(oid)
    with refused("agreement window open"):
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    world.proxy.process_dispute(oid, True)
    with refused("agreement window open"):  # a verdict alone does not open the arbiter's window
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    world.buyer.answer_verdict(oid, True)
    with refused("agreement window open"):
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    dispute_end = world.escrow.status(oid).dispute_end
    at(world, dispute_end + ARBITER)
    with refused("arbiter window closed"):
        world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=True)
    settled = order_in(world, OrderState.SETTLED)
    with refused("wrong state"):
        world.arbiter.rule(settled, seller_at_fault=True, proxy_at_fault=False)


def test_claim_timeout_guards(world: World) -> None:
    oid = place(world)
    travel(world, TIME_ALLOWED + 1)
    for name in NON_PARTIES:
        with refused("only buyer or seller"):
            agent(world, PartyAgent, name).claim_timeout(oid)
    world.seller.claim_timeout(oid)


def test_deadline_passed_for_every_timed_action(world: World) -> None:
    created = place(world)
    confirmed = order_in(world, OrderState.SELLER_CONFIRMED)
    fetched = order_in(world, OrderState.PROXY_FETCHED)
    delivered = order_in(world, OrderState.PROXY_DELIVERED)
    disputed = order_in(world, OrderState.DISPUTED)
    ruled = order_in(world, OrderState.DISPUTED)
    world.proxy.process_dispute(ruled, True)
    travel(world, DISPUTE + 1)  # past every endTime (86400) and every disputeEnd
    checks: list[tuple[Any, tuple[Any, ...]]] = [
        (world.seller.confirm, (created,)),
        (world.buyer.withdraw, (created,)),
        (world.buyer.withdraw, (confirmed,)),
        (world.proxy.claim_fetched, (confirmed,)),
        (world.proxy.claim_delivered, (fetched, DATA_HASH)),
        (world.buyer.confirm, (delivered,)),
        (world.buyer.dispute, (delivered,)),
        (world.proxy.process_dispute, (disputed, True)),
        (world.buyer.answer_verdict, (ruled, True)),
        (world.seller.answer_verdict, (ruled, False)),
    ]
    for fn, args in checks:
        with refused("deadline passed"):
            fn(*args)


# ---------------------------------------------------------------------------- terms and ids

ORDER_FUNCTIONS: list[tuple[str, str, tuple[Any, ...], bool]] = [
    # (function, rightful caller, extra args, sends the price)
    ("sellerConfirm", "seller", (), True),
    ("buyerWithdraw", "buyer", (), False),
    ("proxyFetched", "proxy", (), False),
    ("proxyDelivered", "proxy", (DATA_HASH,), False),
    ("buyerConfirmDeliver", "buyer", (), False),
    ("buyerDispute", "buyer", (), False),
    ("proxyProcessDispute", "proxy", (True,), False),
    ("answerVerdict", "seller", (True,), False),
    ("arbiterRule", "arbiter", (True, False), False),
    ("claimTimeout", "buyer", (), False),
    ("rateProxy", "buyer", (5,), False),
]


def _tamperings(world: World, terms: OrderTerms) -> list[OrderTerms]:
    other = world.address("other")
    return [
        tampered(terms, buyer=other),
        tampered(terms, seller=other),
        tampered(terms, proxy=world.address("proxy2")),
        tampered(terms, proxy2=world.address("proxy2")),
        tampered(terms, price=terms.price - 1),
        tampered(terms, fee=terms.fee + 1),
        tampered(terms, desc_hash=b"\x00" * 32),
        tampered(terms, data_hash=b"\xdb" * 32),
        tampered(terms, buyer_key=b"\x00" * 32),
    ]


def test_every_tampered_field_is_unknown_order(world: World) -> None:
    oid = place(world)
    terms = terms_of(world, oid)
    for bad in _tamperings(world, terms):
        with refused("unknown order or wrong terms"):
            order_call(world, "seller", "sellerConfirm", oid, bad, value=bad.price)
    world.seller.confirm(oid)  # the real terms still work


@pytest.mark.parametrize(("function", "caller", "extra", "pays"), ORDER_FUNCTIONS, ids=[f[0] for f in ORDER_FUNCTIONS])
def test_unknown_order_or_wrong_terms(
    world: World, function: str, caller: str, extra: tuple[Any, ...], pays: bool
) -> None:
    first = place(world)
    second = place(world)
    terms = terms_of(world, first)
    value = PRICE if pays else 0
    cases = [
        (first, tampered(terms, price=terms.price + 1)),
        (first, tampered(terms, proxy2=world.address("proxy2"))),
        (second, terms),  # real terms of another order
        (0, terms),
        (3, terms),  # not placed yet
        (2**256 - 1, terms),
    ]
    for oid, bad in cases:
        with refused("unknown order or wrong terms"):
            order_call(world, caller, function, oid, bad, *extra, value=value)


def test_client_unknown_order_is_caught_before_sending(world: World) -> None:
    place(world)
    with pytest.raises(UnknownOrder):
        world.buyer.withdraw(2)
    with pytest.raises(UnknownOrder):
        world.escrow.terms(0)


# ---------------------------------------------------------------------------- mirror matrix

ARGS: dict[Action, tuple[Any, ...]] = {
    Action.PROXY_DELIVERED: (DATA_HASH,),
    Action.PROXY_RULE: (True,),
    Action.ANSWER_VERDICT: (True,),
    Action.ARBITER_RULE: (True, False),
    Action.RATE_PROXY: (5,),
}


def _chain_refusal(world: World, caller: str, tx: dict[str, Any]) -> str | None:
    """The contract's reason for `caller` sending `tx` now (an eth_call), or None if allowed."""
    try:
        world.w3.eth.call({**tx, "from": caller})  # type: ignore[typeddict-item]
    except Exception as exc:
        reason = revert_reason(exc)
        assert reason is not None, exc
        return reason
    return None


def _action_tx(world: World, action: Action, oid: int, terms: OrderTerms) -> dict[str, Any]:
    data = world.escrow.contract.encode_abi(action.value, args=[oid, terms.as_tuple(), *ARGS.get(action, ())])
    value = terms.price if action is Action.SELLER_CONFIRM else 0
    return {"to": world.escrow.address, "data": data, "value": value}


RIGHTFUL: dict[Action, tuple[str, ...]] = {
    Action.SELLER_CONFIRM: ("seller",),
    Action.BUYER_WITHDRAW: ("buyer",),
    Action.PROXY_FETCHED: ("proxy2",),
    Action.PROXY_DELIVERED: ("proxy2",),
    Action.BUYER_CONFIRM: ("buyer",),
    Action.BUYER_DISPUTE: ("buyer",),
    Action.PROXY_RULE: ("proxy",),
    Action.ANSWER_VERDICT: ("buyer", "seller"),
    Action.ARBITER_RULE: ("arbiter",),
    Action.CLAIM_TIMEOUT: ("buyer", "seller"),
    Action.RATE_PROXY: ("seller",),
}
# proxy and proxy2 hold the same role in these two-proxy orders, and the arbiter is just
# another outsider except for arbiterRule: RIGHTFUL adds proxy and arbiter where they matter.
EVERYONE = ("buyer", "seller", "proxy2", "other")


def _compare_matrix(world: World, orders: dict[str, int], all_callers: bool) -> int:
    """Compare chain and mirror for every order and action, by every caller or the rightful ones."""
    escrow = world.escrow
    arbiter = escrow.arbiter()
    now = escrow.now()
    mismatches: list[str] = []
    checked = 0
    for label, oid in orders.items():
        terms = escrow.terms(oid)
        status = escrow.status(oid)
        # keep away from deadlines: eth_call may see `now` or `now + 1`
        for deadline in (status.end_time, status.dispute_end, status.dispute_end + ARBITER):
            assert abs(deadline - now) > 5, f"{label}: too close to a deadline"
        for action in Action:
            tx = _action_tx(world, action, oid, terms)
            callers = dict.fromkeys((*EVERYONE, *RIGHTFUL[action]) if all_callers else RIGHTFUL[action])
            for name in callers:
                expected = refusal(action, terms, status, world.address(name), now, escrow.windows, arbiter)
                got = _chain_refusal(world, world.address(name), tx)
                checked += 1
                if got != expected:
                    mismatches.append(f"{label} {action.value} by {name}: chain {got!r}, mirror {expected!r}")
    assert mismatches == []
    return checked


def test_chain_refusals_match_the_lifecycle_mirror(world: World) -> None:
    two = {"proxy2": world.address("proxy2")}
    orders = {s.name: place(world, **two) for s in OrderState if s is not OrderState.DISPUTED}
    for extra in ("DISPUTED_NO_VERDICT", "DISPUTED_RULED", "DISPUTED_APPEALED"):
        orders[extra] = place(world, **two)
    travel(world, TIME_ALLOWED // 2)  # disputes opened now outlive the orders' own deadlines
    for label, oid in orders.items():
        if label.startswith("DISPUTED"):
            advance(world, oid, OrderState.DISPUTED)
        else:
            advance(world, oid, OrderState[label])
    world.proxy2.process_dispute(orders["DISPUTED_RULED"], False)
    world.proxy.process_dispute(orders["DISPUTED_APPEALED"], True)
    world.buyer.answer_verdict(orders["DISPUTED_APPEALED"], True)
    world.seller.answer_verdict(orders["DISPUTED_APPEALED"], False)

    checked = _compare_matrix(world, orders, all_callers=True)  # every window open
    travel(world, TIME_ALLOWED // 2 + 600)  # order deadlines passed, disputes open
    checked += _compare_matrix(world, orders, all_callers=False)
    travel(world, TIME_ALLOWED // 2 + 600)  # dispute windows closed, arbiter window open
    checked += _compare_matrix(world, orders, all_callers=False)
    travel(world, ARBITER)  # everything expired
    checked += _compare_matrix(world, orders, all_callers=False)
    assert checked == 10 * (11 * 4 + 2) + 3 * 10 * 13

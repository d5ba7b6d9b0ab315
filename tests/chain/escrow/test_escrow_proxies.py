"""Proxy deposits (bond, unbond, withdraw, re-bond) and proxy ratings on both backends."""

from __future__ import annotations

import pytest

from cpchain.chain.errors import InvalidArgument
from cpchain.chain.escrow import PartyAgent, ProxyAgent
from cpchain.types import OrderState
from tests.chain.conftest import ETHER, PARAMS, World
from tests.chain.escrow.test_escrow_lifecycle import (
    ARBITER,
    CONFIRM,
    DATA_HASH,
    FEE,
    PROXY_DEPOSIT,
    UNBONDING,
    Books,
    agent,
    assert_solvent,
    at,
    block_time,
    direct,
    escrow_balance,
    events,
    one_event,
    order_call,
    order_in,
    place,
    refused,
    state,
    terms_of,
    travel,
)

# ---------------------------------------------------------------------------- deposits


def test_unbonding_period_covers_the_longest_order(world: World) -> None:
    assert world.escrow.contract.functions.unbondingPeriod().call() == UNBONDING
    assert world.escrow.params() == PARAMS


def test_deposit_accumulates(world: World) -> None:
    books = Books(world)
    newcomer = agent(world, ProxyAgent, "other")
    receipt = books.paid("other", newcomer.deposit(2 * ETHER))
    assert one_event(world, receipt, "ProxyDeposited") == {
        "proxy": world.address("other"), "amount": 2 * ETHER, "total": 2 * ETHER,
    }  # fmt: skip
    receipt = books.paid("other", newcomer.deposit(1))
    assert one_event(world, receipt, "ProxyDeposited")["total"] == 2 * ETHER + 1
    assert world.escrow.proxy_account(world.address("other")) == (2 * ETHER + 1, 0)
    books.assert_deltas(other=-(2 * ETHER + 1))
    assert escrow_balance(world) == books.escrow_start + 2 * ETHER + 1
    assert_solvent(world)
    # a bonded newcomer with at least the minimum may serve orders
    place(world, proxy=world.address("other"))


def test_zero_deposit_refused(world: World) -> None:
    with refused("zero deposit"):
        direct(world, "other", "proxyDeposit", value=0)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument):
            world.proxy.deposit(bad)


def test_deposit_below_minimum_cannot_serve(world: World) -> None:
    newcomer = agent(world, ProxyAgent, "other")
    newcomer.deposit(PARAMS.min_proxy_deposit - 1)
    with refused("proxy deposit too small"):
        place(world, proxy=world.address("other"))
    with refused("proxy deposit too small"):
        place(world, proxy2=world.address("other"))
    newcomer.deposit(1)  # exactly the minimum
    oid = place(world, proxy2=world.address("other"))
    assert terms_of(world, oid).proxy2 == world.address("other")


def test_request_withdraw_guards(world: World) -> None:
    with refused("no deposit"):
        agent(world, ProxyAgent, "other").request_withdraw()
    receipt = world.proxy.request_withdraw()
    unlock_at = block_time(world, receipt) + UNBONDING
    assert one_event(world, receipt, "ProxyWithdrawRequested") == {
        "proxy": world.address("proxy"), "unlockAt": unlock_at,
    }  # fmt: skip
    assert world.escrow.proxy_account(world.address("proxy")) == (PROXY_DEPOSIT, unlock_at)
    with refused("withdrawal already requested"):
        world.proxy.request_withdraw()


def test_withdraw_requires_a_request(world: World) -> None:
    with refused("withdrawal not requested"):
        world.proxy.withdraw(ETHER)
    with refused("withdrawal not requested"):
        agent(world, ProxyAgent, "other").withdraw(ETHER)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument):
            world.proxy.withdraw(bad)


def test_withdraw_after_unbonding(world: World) -> None:
    books = Books(world)
    receipt = books.paid("proxy", world.proxy.request_withdraw())
    unlock_at = block_time(world, receipt) + UNBONDING
    with refused("deposit still bonded"):
        world.proxy.withdraw(ETHER)
    at(world, unlock_at - 1)
    with refused("deposit still bonded"):
        world.proxy.withdraw(ETHER)
    at(world, unlock_at)
    with refused("bad amount"):
        direct(world, "proxy", "proxyWithdraw", 0)
    with refused("bad amount"):
        world.proxy.withdraw(PROXY_DEPOSIT + 1)
    receipt = books.paid("proxy", world.proxy.withdraw(2 * ETHER))
    assert block_time(world, receipt) == unlock_at
    assert one_event(world, receipt, "ProxyWithdrawn") == {
        "proxy": world.address("proxy"), "amount": 2 * ETHER, "remaining": PROXY_DEPOSIT - 2 * ETHER,
    }  # fmt: skip
    books.assert_deltas(proxy=2 * ETHER)
    assert escrow_balance(world) == books.escrow_start - 2 * ETHER
    assert_solvent(world)
    # still unbonding: no new orders, the rest can be taken later
    with refused("proxy is unbonding"):
        place(world)
    books.paid("proxy", world.proxy.withdraw(PROXY_DEPOSIT - 2 * ETHER))
    books.assert_deltas(proxy=PROXY_DEPOSIT)
    assert world.escrow.proxy_account(world.address("proxy")) == (0, unlock_at)
    with refused("bad amount"):
        world.proxy.withdraw(1)
    with refused("no deposit"):
        world.proxy.request_withdraw()
    with refused("proxy deposit too small"):  # the size check comes first
        place(world)
    assert escrow_balance(world) == PROXY_DEPOSIT  # proxy2's
    assert_solvent(world)


def test_redeposit_cancels_unbonding(world: World) -> None:
    world.proxy.request_withdraw()
    with refused("proxy is unbonding"):
        place(world)
    receipt = world.proxy.deposit(1)
    assert one_event(world, receipt, "ProxyDeposited")["total"] == PROXY_DEPOSIT + 1
    assert world.escrow.proxy_account(world.address("proxy")) == (PROXY_DEPOSIT + 1, 0)
    place(world)
    travel(world, UNBONDING + 1)
    with refused("withdrawal not requested"):
        world.proxy.withdraw(1)
    world.proxy.request_withdraw()  # the clock starts again
    with refused("deposit still bonded"):
        world.proxy.withdraw(1)


@pytest.mark.parametrize("which", ["proxy", "proxy2"])
def test_unbonding_proxy_refused_for_new_orders(world: World, which: str) -> None:
    agent(world, ProxyAgent, which).request_withdraw()
    with refused("proxy is unbonding"):
        place(world, proxy=world.address(which), proxy2=world.address(which))
    other = "proxy2" if which == "proxy" else "proxy"
    with refused("proxy is unbonding"):  # as the second proxy too
        place(world, proxy=world.address(other), proxy2=world.address(which))
    place(world, proxy=world.address(other), proxy2=world.address(other))


def test_unbonding_proxy_keeps_serving_and_can_be_slashed(world: World) -> None:
    books = Books(world)
    oid = place(world, books)
    books.paid("proxy", world.proxy.request_withdraw())
    books.paid("seller", world.seller.confirm(oid))
    books.paid("proxy", world.proxy.claim_fetched(oid))
    books.paid("proxy", world.proxy.claim_delivered(oid, DATA_HASH))
    books.paid("buyer", world.buyer.dispute(oid))
    books.paid("proxy", world.proxy.process_dispute(oid, False))
    books.paid("buyer", world.buyer.answer_verdict(oid, False))
    books.paid("arbiter", world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=True))
    deposit, unlock_at = world.escrow.proxy_account(world.address("proxy"))
    assert deposit == PROXY_DEPOSIT - FEE and unlock_at > 0
    books.assert_deltas(buyer=world.escrow.terms(oid).price + FEE, seller=-world.escrow.terms(oid).price)
    assert_solvent(world)


def test_worst_case_order_cannot_outlive_the_bond(world: World) -> None:
    """A proxy that unbonds right after the longest possible order is still slashable at the
    last second the arbiter may rule on it."""
    oid = order_in(world, OrderState.PROXY_FETCHED, time_allowed=PARAMS.max_time_allowed)
    receipt = world.proxy.request_withdraw()
    unlock_at = block_time(world, receipt) + UNBONDING
    end = world.escrow.status(oid).end_time
    at(world, end - 1)
    world.proxy.claim_delivered(oid, DATA_HASH)  # delivery at the deadline: the longest extension
    confirm_end = world.escrow.status(oid).end_time
    assert confirm_end == end - 1 + CONFIRM
    at(world, confirm_end - 1)
    world.buyer.dispute(oid)  # dispute at the last second
    last = world.escrow.status(oid).dispute_end + ARBITER - 1  # the arbiter's last second
    assert last < unlock_at
    at(world, last)
    with refused("deposit still bonded"):
        world.proxy.withdraw(PROXY_DEPOSIT)
    world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=True)
    assert world.escrow.proxy_account(world.address("proxy"))[0] == PROXY_DEPOSIT - FEE
    assert_solvent(world)


# ---------------------------------------------------------------------------- ratings


@pytest.mark.parametrize("distinct", [False, True], ids=["one-proxy", "two-proxies"])
def test_ratings_of_a_finished_sale(world: World, distinct: bool) -> None:
    second = "proxy2" if distinct else "proxy"
    oid = order_in(world, OrderState.FINISHED, proxy2=world.address(second))
    receipt = world.buyer.rate_proxy(oid, 5)
    rated = sorted({"proxy", second})
    assert [dict(e["args"]) for e in events(world, receipt, "ProxyRated")] == [
        {"id": oid, "rater": world.address("buyer"), "proxy": world.address(name), "rating": 5} for name in rated
    ]
    receipt = world.seller.rate_proxy(oid, 2)
    assert [e["args"]["rater"] for e in events(world, receipt, "ProxyRated")] == [world.address("seller")] * len(rated)
    status = world.escrow.status(oid)
    assert (status.buyer_rated, status.seller_rated) == (True, True)
    for name in rated:
        assert world.escrow.proxy_rating(world.address(name)) == (7, 2)
    if not distinct:
        assert world.escrow.proxy_rating(world.address("proxy2")) == (0, 0)
    for party in (world.buyer, world.seller):
        with refused("already rated"):
            party.rate_proxy(oid, 3)


def test_ratings_accumulate_over_orders(world: World) -> None:
    first = order_in(world, OrderState.FINISHED)
    world.buyer.rate_proxy(first, 1)
    second = order_in(world, OrderState.PROXY_DELIVERED)
    travel(world, 86400 + 1)
    world.seller.claim_timeout(second)  # a sale finished by timeout can be rated too
    assert state(world, second) is OrderState.FINISHED
    world.buyer.rate_proxy(second, 4)
    world.seller.rate_proxy(second, 5)
    assert world.escrow.proxy_rating(world.address("proxy")) == (10, 3)


def test_rating_guards(world: World) -> None:
    oid = order_in(world, OrderState.FINISHED)
    terms = terms_of(world, oid)
    for rating in (0, 6, 255):
        with refused("rating out of range"):
            order_call(world, "buyer", "rateProxy", oid, terms, rating)
    for rating in (0, 6, -1):
        with pytest.raises(InvalidArgument):
            world.buyer.rate_proxy(oid, rating)
    for name in ("proxy", "proxy2", "arbiter", "other"):
        with refused("only buyer or seller"):
            agent(world, PartyAgent, name).rate_proxy(oid, 3)
    with refused("rating out of range"):  # the range is checked before the caller
        order_call(world, "other", "rateProxy", oid, terms, 9)
    world.buyer.rate_proxy(oid, 1)
    with refused("already rated"):
        world.buyer.rate_proxy(oid, 1)
    world.seller.rate_proxy(oid, 5)
    assert world.escrow.proxy_rating(world.address("proxy")) == (6, 2)


@pytest.mark.parametrize(
    "target",
    [OrderState.CREATED, OrderState.PROXY_DELIVERED, OrderState.DISPUTED, OrderState.SETTLED, OrderState.WITHDRAWN],
    ids=lambda s: s.name,
)
def test_only_finished_sales_can_be_rated(world: World, target: OrderState) -> None:
    oid = order_in(world, target)
    terms = terms_of(world, oid)
    for party in (world.buyer, world.seller):
        with refused("wrong state"):
            party.rate_proxy(oid, 5)
    with refused("wrong state"):  # the state comes before the range
        order_call(world, "buyer", "rateProxy", oid, terms, 0)
    assert world.escrow.proxy_rating(world.address("proxy")) == (0, 0)

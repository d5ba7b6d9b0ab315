"""Disputes on both backends: proxy verdicts, agreement, appeal, arbiter rulings, slashing,
and the arbiter hand-over. Every test that moves money checks exact balances and solvency.
"""

from __future__ import annotations

import pytest

from cpchain.chain.errors import InvalidAddress
from cpchain.chain.escrow import ArbiterAgent, BuyerAgent, SellerAgent
from cpchain.types import OrderState, Verdict
from tests.chain.conftest import ETHER, World
from tests.chain.escrow.test_escrow_lifecycle import (
    ARBITER,
    DATA_HASH,
    FEE,
    PRICE,
    PROXY_DEPOSIT,
    ZERO_ADDRESS,
    Books,
    agent,
    assert_solvent,
    at,
    block_time,
    escrow_balance,
    events,
    one_event,
    order_in,
    proxy_agent,
    refused,
    state,
)


def _proxies(world: World, distinct: bool) -> dict[str, str]:
    return {"proxy2": world.address("proxy2" if distinct else "proxy")}


def _fees(distinct: bool, fee: int = FEE) -> dict[str, int]:
    return {"proxy": fee, "proxy2": fee} if distinct else {"proxy": 2 * fee}


# ---------------------------------------------------------------------------- proxy verdict + agreement


@pytest.mark.parametrize("distinct", [False, True], ids=["one-proxy", "two-proxies"])
@pytest.mark.parametrize("seller_first", [False, True], ids=["buyer-answers-first", "seller-answers-first"])
def test_proxy_says_seller_at_fault_and_both_agree(world: World, distinct: bool, seller_first: bool) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books, **_proxies(world, distinct))
    ruler = "proxy2" if distinct else "proxy"
    receipt = books.paid(ruler, (world.proxy2 if distinct else world.proxy).process_dispute(oid, True))
    assert one_event(world, receipt, "ProxyRuled") == {
        "id": oid, "proxy": world.address(ruler), "verdict": Verdict.SELLER_AT_FAULT,
    }  # fmt: skip
    assert world.escrow.status(oid).verdict is Verdict.SELLER_AT_FAULT
    first, second = ("seller", "buyer") if seller_first else ("buyer", "seller")
    agents = {"buyer": world.buyer, "seller": world.seller}
    receipt = books.paid(first, agents[first].answer_verdict(oid, True))
    assert one_event(world, receipt, "VerdictAnswered") == {"id": oid, "party": world.address(first), "agree": True}
    assert events(world, receipt, "DisputeSettled") == []
    assert state(world, oid) is OrderState.DISPUTED
    receipt = books.paid(second, agents[second].answer_verdict(oid, True))
    assert one_event(world, receipt, "DisputeSettled") == {
        "id": oid, "verdict": Verdict.SELLER_AT_FAULT, "proxyAtFault": False,
    }  # fmt: skip
    status = world.escrow.status(oid)
    assert (status.state, status.buyer_agreed, status.seller_agreed) == (OrderState.SETTLED, True, True)
    # the buyer paid P and gets 2P - 2F back: the seller's deposit pays for the bad data
    books.assert_deltas(buyer=PRICE - 2 * FEE, seller=-PRICE, **_fees(distinct))
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


@pytest.mark.parametrize("distinct", [False, True], ids=["one-proxy", "two-proxies"])
def test_proxy_says_buyer_at_fault_and_both_agree(world: World, distinct: bool) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books, **_proxies(world, distinct))
    books.paid("proxy", world.proxy.process_dispute(oid, False))
    assert world.escrow.status(oid).verdict is Verdict.BUYER_AT_FAULT
    books.paid("seller", world.seller.answer_verdict(oid, True))
    receipt = books.paid("buyer", world.buyer.answer_verdict(oid, True))
    assert one_event(world, receipt, "DisputeSettled")["verdict"] == Verdict.BUYER_AT_FAULT
    books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, **_fees(distinct))
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


def test_disagreement_can_be_followed_by_agreement(world: World) -> None:
    """A party that rejected the verdict may still accept it later (it has not 'agreed' yet)."""
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books)
    books.paid("proxy", world.proxy.process_dispute(oid, True))
    books.paid("seller", world.seller.answer_verdict(oid, False))
    books.paid("seller", world.seller.answer_verdict(oid, False))  # a rejection may be repeated
    status = world.escrow.status(oid)
    assert (status.appealed, status.seller_agreed) == (True, False)
    books.paid("seller", world.seller.answer_verdict(oid, True))
    books.paid("buyer", world.buyer.answer_verdict(oid, True))
    assert state(world, oid) is OrderState.SETTLED
    books.assert_deltas(buyer=PRICE - 2 * FEE, seller=-PRICE, proxy=2 * FEE)
    assert_solvent(world)


# ---------------------------------------------------------------------------- arbiter


def test_appeal_lets_the_arbiter_rule_before_the_dispute_ends(world: World) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books, proxy2=world.address("proxy2"))
    books.paid("proxy", world.proxy.process_dispute(oid, False))  # buyer at fault
    receipt = books.paid("buyer", world.buyer.answer_verdict(oid, False))
    assert one_event(world, receipt, "VerdictAnswered")["agree"] is False
    assert world.escrow.status(oid).appealed
    assert world.escrow.now() < world.escrow.status(oid).dispute_end
    receipt = books.paid("arbiter", world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False))
    assert one_event(world, receipt, "ArbiterRuled") == {
        "id": oid, "arbiter": world.address("arbiter"), "verdict": Verdict.SELLER_AT_FAULT, "proxyAtFault": False,
    }  # fmt: skip
    assert one_event(world, receipt, "DisputeSettled")["verdict"] == Verdict.SELLER_AT_FAULT
    status = world.escrow.status(oid)
    assert (status.state, status.verdict) == (OrderState.SETTLED, Verdict.SELLER_AT_FAULT)  # the arbiter's
    books.assert_deltas(buyer=PRICE - 2 * FEE, seller=-PRICE, proxy=FEE, proxy2=FEE)
    assert_solvent(world)
    with refused("wrong state"):
        world.seller.answer_verdict(oid, True)
    with refused("wrong state"):
        world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=False)


@pytest.mark.parametrize("proxy_ruled", [False, True], ids=["no-verdict", "verdict-unanswered"])
def test_arbiter_rules_after_the_agreement_window(world: World, proxy_ruled: bool) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books)
    if proxy_ruled:
        books.paid("proxy", world.proxy.process_dispute(oid, True))
    dispute_end = world.escrow.status(oid).dispute_end
    at(world, dispute_end - 1)
    with refused("agreement window open"):
        world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=False)
    at(world, dispute_end)
    receipt = books.paid("arbiter", world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=False))
    assert block_time(world, receipt) == dispute_end
    assert world.escrow.status(oid).verdict is Verdict.BUYER_AT_FAULT  # overrides the proxy
    books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, proxy=2 * FEE)
    assert_solvent(world)


def test_dispute_window_exact_boundaries(world: World) -> None:
    oid = order_in(world, OrderState.DISPUTED)
    dispute_end = world.escrow.status(oid).dispute_end
    at(world, dispute_end - 1)
    receipt = world.proxy.process_dispute(oid, True)  # the last second of the window
    assert block_time(world, receipt) == dispute_end - 1
    at(world, dispute_end)
    for party in (world.buyer, world.seller):
        with refused("deadline passed"):
            party.answer_verdict(oid, True)
    with refused("deadline not reached"):
        world.buyer.claim_timeout(oid)
    at(world, dispute_end + ARBITER - 1)
    with refused("deadline not reached"):
        world.buyer.claim_timeout(oid)
    receipt = world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=False)  # its last second
    assert block_time(world, receipt) == dispute_end + ARBITER - 1
    assert state(world, oid) is OrderState.SETTLED
    assert_solvent(world)


@pytest.mark.parametrize("distinct", [False, True], ids=["one-proxy", "two-proxies"])
@pytest.mark.parametrize("seller_at_fault", [True, False], ids=["buyer-wins", "seller-wins"])
def test_arbiter_finds_the_proxy_at_fault(world: World, distinct: bool, seller_at_fault: bool) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books, **_proxies(world, distinct))
    books.paid("proxy", world.proxy.process_dispute(oid, not seller_at_fault))
    books.paid("seller", world.seller.answer_verdict(oid, False))
    receipt = books.paid("arbiter", world.arbiter.rule(oid, seller_at_fault=seller_at_fault, proxy_at_fault=True))
    assert one_event(world, receipt, "DisputeSettled")["proxyAtFault"] is True
    slashed = events(world, receipt, "ProxySlashed")
    slashed_proxies = ["proxy", "proxy2"] if distinct else ["proxy"]
    assert [dict(e["args"]) for e in slashed] == [
        {"id": oid, "proxy": world.address(name), "amount": FEE} for name in slashed_proxies
    ]
    for name in slashed_proxies:
        assert world.escrow.proxy_account(world.address(name)) == (PROXY_DEPOSIT - FEE, 0)
    if not distinct:
        assert world.escrow.proxy_account(world.address("proxy2")) == (PROXY_DEPOSIT, 0)
    bonus = FEE * len(slashed_proxies)
    # the winner gets the whole 2P plus what was slashed; the proxies earn no fee
    if seller_at_fault:
        books.assert_deltas(buyer=PRICE + bonus, seller=-PRICE)
    else:
        books.assert_deltas(buyer=-PRICE, seller=PRICE + bonus)
    assert escrow_balance(world) == books.escrow_start - bonus
    assert_solvent(world)


def test_slashing_is_capped_by_the_deposit(world: World) -> None:
    """fee > deposit: each proxy loses its whole deposit, and nothing once it is empty."""
    big_price, big_fee = 100 * ETHER, 10 * ETHER  # fee exceeds the 5-ether deposits
    books = Books(world)
    two = {"proxy2": world.address("proxy2"), "price": big_price, "fee": big_fee}
    first = order_in(world, OrderState.DISPUTED, books, **two)
    second = order_in(world, OrderState.DISPUTED, books, **two)
    at(world, world.escrow.status(second).dispute_end)
    receipt = books.paid("arbiter", world.arbiter.rule(first, seller_at_fault=True, proxy_at_fault=True))
    assert [e["args"]["amount"] for e in events(world, receipt, "ProxySlashed")] == [PROXY_DEPOSIT, PROXY_DEPOSIT]
    assert world.escrow.proxy_account(world.address("proxy")) == (0, 0)
    assert world.escrow.proxy_account(world.address("proxy2")) == (0, 0)
    receipt = books.paid("arbiter", world.arbiter.rule(second, seller_at_fault=False, proxy_at_fault=True))
    assert events(world, receipt, "ProxySlashed") == []  # nothing left to take
    # first: the buyer paid P and gets 2P + both deposits; second: the seller deposited P and gets 2P
    books.assert_deltas(buyer=2 * PROXY_DEPOSIT, seller=0)
    assert escrow_balance(world) == 0
    assert_solvent(world)
    # an emptied proxy cannot take orders, nor unbond
    with refused("proxy deposit too small"):
        world.place()
    with refused("no deposit"):
        world.proxy.request_withdraw()


# ---------------------------------------------------------------------------- arbiter as a party / hand-over


def _hand_over(world: World, to: str) -> ArbiterAgent:
    world.arbiter.propose_arbiter(world.address(to))
    new = agent(world, ArbiterAgent, to)
    new.accept_arbiter()
    assert world.escrow.arbiter() == world.address(to)
    return new


@pytest.mark.parametrize("role", ["proxy", "proxy2", "buyer", "seller"])
def test_arbiter_cannot_rule_when_it_is_a_party(world: World, role: str) -> None:
    oid = order_in(world, OrderState.DISPUTED, proxy2=world.address("proxy2"))
    world.proxy.process_dispute(oid, True)
    world.seller.answer_verdict(oid, False)
    new = _hand_over(world, role)
    for seller_at_fault in (True, False):
        with refused("arbiter is a party"):
            new.rule(oid, seller_at_fault=seller_at_fault, proxy_at_fault=False)
    with refused("only arbiter"):  # the previous arbiter has no power left
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    # the party-arbiter may rule orders it is not part of
    proxy_name = "proxy2" if role == "proxy" else "proxy"
    other_buyer = agent(world, BuyerAgent, "other")
    oid2 = other_buyer.place_order(
        desc_hash=b"\x01" * 32, data_hash=DATA_HASH, buyer_key=b"\x02" * 32, seller=world.address("arbiter"),
        proxy=world.address(proxy_name), price=PRICE, fee=FEE, time_allowed=86400,
    )  # fmt: skip
    agent(world, SellerAgent, "arbiter").confirm(oid2)
    fetcher = proxy_agent(world, proxy_name)
    fetcher.claim_fetched(oid2)
    fetcher.claim_delivered(oid2, DATA_HASH)
    other_buyer.dispute(oid2)
    fetcher.process_dispute(oid2, True)
    other_buyer.answer_verdict(oid2, False)
    new.rule(oid2, seller_at_fault=True, proxy_at_fault=False)
    assert state(world, oid2) is OrderState.SETTLED
    assert_solvent(world)


def test_arbiter_hand_over(world: World) -> None:
    with refused("only arbiter"):
        agent(world, ArbiterAgent, "other").propose_arbiter(world.address("other"))
    with refused("zero address"):
        world.arbiter.propose_arbiter(ZERO_ADDRESS)
    with pytest.raises(InvalidAddress):
        world.arbiter.propose_arbiter("not an address")
    with refused("only proposed arbiter"):  # nothing proposed yet
        agent(world, ArbiterAgent, "other").accept_arbiter()
    receipt = world.arbiter.propose_arbiter(world.address("buyer"))
    assert one_event(world, receipt, "ArbiterProposed") == {
        "current": world.address("arbiter"), "proposed": world.address("buyer"),
    }  # fmt: skip
    receipt = world.arbiter.propose_arbiter(world.address("other"))  # a new proposal replaces it
    assert world.escrow.contract.functions.pendingArbiter().call() == world.address("other")
    for name in ("buyer", "arbiter", "seller"):
        with refused("only proposed arbiter"):
            agent(world, ArbiterAgent, name).accept_arbiter()
    assert world.escrow.arbiter() == world.address("arbiter")
    receipt = agent(world, ArbiterAgent, "other").accept_arbiter()
    assert one_event(world, receipt, "ArbiterChanged") == {
        "previous": world.address("arbiter"), "current": world.address("other"),
    }  # fmt: skip
    assert world.escrow.arbiter() == world.address("other")
    assert world.escrow.contract.functions.pendingArbiter().call() == ZERO_ADDRESS
    with refused("only proposed arbiter"):  # the proposal is used up
        agent(world, ArbiterAgent, "other").accept_arbiter()
    with refused("only arbiter"):
        world.arbiter.propose_arbiter(world.address("arbiter"))
    # the new arbiter rules; it can also hand back
    oid = order_in(world, OrderState.DISPUTED)
    world.proxy.process_dispute(oid, True)
    world.buyer.answer_verdict(oid, False)
    with refused("only arbiter"):
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    agent(world, ArbiterAgent, "other").rule(oid, seller_at_fault=True, proxy_at_fault=False)
    assert state(world, oid) is OrderState.SETTLED
    agent(world, ArbiterAgent, "other").propose_arbiter(world.address("arbiter"))
    world.arbiter.accept_arbiter()
    assert world.escrow.arbiter() == world.address("arbiter")

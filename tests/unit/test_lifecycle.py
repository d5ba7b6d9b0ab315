"""The pure order lifecycle (no chain): who may do what, when, and what each state holds."""

from __future__ import annotations

import pytest

from cpchain.chain.lifecycle import (
    Action,
    Windows,
    allowed_actions,
    held_by_order,
    next_deadline,
    refusal,
    roles,
    sale_payout,
)
from cpchain.types import OrderState, OrderStatus, OrderTerms, Role, Verdict

B, S, P, P2, A, X = (f"0x{c * 40}" for c in "bcdefa")
TERMS = OrderTerms(B, S, P, P2, price=100, fee=10, desc_hash=b"d" * 32, data_hash=b"h" * 32, buyer_key=b"k" * 32)
WIN = Windows(confirm=60, dispute=100, arbiter=1000)
END = 5000


def status(state: OrderState, **kw: object) -> OrderStatus:
    return OrderStatus(state=state, end_time=END, **kw)  # type: ignore[arg-type]


def test_happy_path_allows_exactly_the_next_step() -> None:
    now = END - 1
    assert allowed_actions(TERMS, status(OrderState.CREATED), S, now, WIN) == [Action.SELLER_CONFIRM]
    assert allowed_actions(TERMS, status(OrderState.CREATED), B, now, WIN) == [Action.BUYER_WITHDRAW]
    assert allowed_actions(TERMS, status(OrderState.SELLER_CONFIRMED), P2, now, WIN) == [Action.PROXY_FETCHED]
    assert allowed_actions(TERMS, status(OrderState.PROXY_FETCHED), P, now, WIN) == [Action.PROXY_DELIVERED]
    assert set(allowed_actions(TERMS, status(OrderState.PROXY_DELIVERED), B, now, WIN)) == {
        Action.BUYER_CONFIRM,
        Action.BUYER_DISPUTE,
    }
    assert allowed_actions(TERMS, status(OrderState.FINISHED), X, now, WIN) == []


@pytest.mark.parametrize(
    ("action", "caller", "state", "now", "reason"),
    [
        (Action.SELLER_CONFIRM, B, OrderState.CREATED, 0, "only seller"),
        (Action.SELLER_CONFIRM, S, OrderState.SELLER_CONFIRMED, 0, "wrong state"),
        (Action.SELLER_CONFIRM, S, OrderState.CREATED, END, "deadline passed"),
        (Action.BUYER_WITHDRAW, B, OrderState.PROXY_FETCHED, 0, "wrong state"),
        (Action.PROXY_FETCHED, S, OrderState.SELLER_CONFIRMED, 0, "only proxy"),
        (Action.BUYER_CONFIRM, S, OrderState.PROXY_DELIVERED, 0, "only buyer"),
        (Action.CLAIM_TIMEOUT, B, OrderState.CREATED, END - 1, "deadline not reached"),
        (Action.CLAIM_TIMEOUT, P, OrderState.CREATED, END, "only buyer or seller"),
        (Action.CLAIM_TIMEOUT, B, OrderState.WITHDRAWN, END, "wrong state"),
        (Action.RATE_PROXY, B, OrderState.SETTLED, 0, "wrong state"),
        (Action.RATE_PROXY, P, OrderState.FINISHED, 0, "only buyer or seller"),
        (Action.ARBITER_RULE, B, OrderState.DISPUTED, 0, "only arbiter"),
    ],
)
def test_refusals_name_the_contract_reason(
    action: Action, caller: str, state: OrderState, now: int, reason: str
) -> None:
    assert refusal(action, TERMS, status(state), caller, now, WIN, arbiter=A) == reason


def test_timeouts_exist_for_every_open_state() -> None:
    for state in (
        OrderState.CREATED,
        OrderState.SELLER_CONFIRMED,
        OrderState.PROXY_FETCHED,
        OrderState.PROXY_DELIVERED,
    ):
        assert refusal(Action.CLAIM_TIMEOUT, TERMS, status(state), S, END, WIN) is None
    disputed = status(OrderState.DISPUTED, dispute_end=END + 100)
    assert refusal(Action.CLAIM_TIMEOUT, TERMS, disputed, B, END + 100 + 999, WIN) == "deadline not reached"
    assert refusal(Action.CLAIM_TIMEOUT, TERMS, disputed, B, END + 100 + 1000, WIN) is None


def test_dispute_rules() -> None:
    open_dispute = status(OrderState.DISPUTED, dispute_end=END + 100)
    now = END + 50
    assert refusal(Action.PROXY_RULE, TERMS, open_dispute, P, now, WIN) is None
    assert refusal(Action.ANSWER_VERDICT, TERMS, open_dispute, B, now, WIN) == "no verdict yet"
    ruled = status(OrderState.DISPUTED, dispute_end=END + 100, verdict=Verdict.SELLER_AT_FAULT)
    assert refusal(Action.PROXY_RULE, TERMS, ruled, P, now, WIN) == "verdict already given"
    assert refusal(Action.ANSWER_VERDICT, TERMS, ruled, S, now, WIN) is None
    assert refusal(Action.ARBITER_RULE, TERMS, ruled, A, now, WIN, arbiter=A) == "agreement window open"
    appealed = status(OrderState.DISPUTED, dispute_end=END + 100, verdict=Verdict.SELLER_AT_FAULT, appealed=True)
    assert refusal(Action.ARBITER_RULE, TERMS, appealed, A, now, WIN, arbiter=A) is None
    assert refusal(Action.ARBITER_RULE, TERMS, appealed, A, END + 100 + 1000, WIN, arbiter=A) == "arbiter window closed"
    assert refusal(Action.ARBITER_RULE, TERMS, appealed, P, now, WIN, arbiter=P) == "arbiter is a party"
    agreed = status(OrderState.DISPUTED, dispute_end=END + 100, verdict=Verdict.BUYER_AT_FAULT, buyer_agreed=True)
    assert refusal(Action.ANSWER_VERDICT, TERMS, agreed, B, now, WIN) == "already agreed"


def test_money_held_and_paid() -> None:
    assert held_by_order(TERMS, OrderState.CREATED) == 100
    assert held_by_order(TERMS, OrderState.DISPUTED) == 200
    assert all(held_by_order(TERMS, s) == 0 for s in (OrderState.FINISHED, OrderState.SETTLED, OrderState.WITHDRAWN))
    payout = sale_payout(TERMS)
    assert (payout.seller, payout.proxy, payout.proxy2) == (180, 10, 10)
    same = OrderTerms(B, S, P, P, 100, 10, b"d" * 32, b"h" * 32, b"k" * 32)
    assert (sale_payout(same).proxy, sale_payout(same).proxy2) == (20, 0)


def test_deadlines_and_roles() -> None:
    assert next_deadline(status(OrderState.CREATED), WIN, 0) == END
    assert next_deadline(status(OrderState.FINISHED), WIN, 0) is None
    disputed = status(OrderState.DISPUTED, dispute_end=END + 100)
    assert next_deadline(disputed, WIN, END) == END + 100
    assert next_deadline(disputed, WIN, END + 100) == END + 1100
    assert roles(TERMS, B) == [Role.BUYER]
    assert roles(TERMS, P2.upper().replace("0X", "0x")) == [Role.PROXY]
    assert roles(TERMS, A, arbiter=A) == [Role.ARBITER]
    assert roles(TERMS, X) == [Role.OTHER]

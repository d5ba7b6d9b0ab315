"""The escrow's order lifecycle as pure functions: which action may whom do, when.

Owns the rules only (no chain access). It mirrors contracts/PdashEscrow.sol exactly; the
property test runs both side by side, so the wallet can offer just the actions that will
succeed and explain the others with the contract's own reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cpchain.types import OrderState, OrderStatus, OrderTerms, Role, Verdict


class Action(StrEnum):
    SELLER_CONFIRM = "sellerConfirm"
    BUYER_WITHDRAW = "buyerWithdraw"
    PROXY_FETCHED = "proxyFetched"
    PROXY_DELIVERED = "proxyDelivered"
    BUYER_CONFIRM = "buyerConfirmDeliver"
    BUYER_DISPUTE = "buyerDispute"
    PROXY_RULE = "proxyProcessDispute"
    ANSWER_VERDICT = "answerVerdict"
    ARBITER_RULE = "arbiterRule"
    CLAIM_TIMEOUT = "claimTimeout"
    RATE_PROXY = "rateProxy"


@dataclass(frozen=True)
class Windows:
    """The contract's deployment-time durations (seconds)."""

    confirm: int
    dispute: int
    arbiter: int


def refusal(
    action: Action,
    terms: OrderTerms,
    status: OrderStatus,
    caller: str,
    now: int,
    windows: Windows,
    arbiter: str = "",
) -> str | None:
    """The contract's revert reason for `caller` doing `action` at `now`, or None if allowed.

    Argument checks that depend on the call's parameters (deposit value, deliver hash,
    rating range) are left to `refusal_for_args`.
    """
    c = caller.lower()
    is_buyer = c == terms.buyer.lower()
    is_seller = c == terms.seller.lower()
    is_proxy = c in (terms.proxy.lower(), terms.proxy2.lower())
    state = status.state

    def before(deadline: int) -> str | None:
        return None if now < deadline else "deadline passed"

    if action is Action.SELLER_CONFIRM:
        if not is_seller:
            return "only seller"
        return "wrong state" if state is not OrderState.CREATED else before(status.end_time)
    if action is Action.BUYER_WITHDRAW:
        if not is_buyer:
            return "only buyer"
        if state not in (OrderState.CREATED, OrderState.SELLER_CONFIRMED):
            return "wrong state"
        return before(status.end_time)
    if action in (Action.PROXY_FETCHED, Action.PROXY_DELIVERED):
        if not is_proxy:
            return "only proxy"
        wanted = OrderState.SELLER_CONFIRMED if action is Action.PROXY_FETCHED else OrderState.PROXY_FETCHED
        return "wrong state" if state is not wanted else before(status.end_time)
    if action in (Action.BUYER_CONFIRM, Action.BUYER_DISPUTE):
        if not is_buyer:
            return "only buyer"
        return "wrong state" if state is not OrderState.PROXY_DELIVERED else before(status.end_time)
    if action is Action.PROXY_RULE:
        if not is_proxy:
            return "only proxy"
        if state is not OrderState.DISPUTED:
            return "wrong state"
        if now >= status.dispute_end:
            return "deadline passed"
        return "verdict already given" if status.verdict is not Verdict.NONE else None
    if action is Action.ANSWER_VERDICT:
        if state is not OrderState.DISPUTED:
            return "wrong state"
        if now >= status.dispute_end:
            return "deadline passed"
        if status.verdict is Verdict.NONE:
            return "no verdict yet"
        if is_buyer:
            return "already agreed" if status.buyer_agreed else None
        if is_seller:
            return "already agreed" if status.seller_agreed else None
        return "only buyer or seller"
    if action is Action.ARBITER_RULE:
        if c != arbiter.lower():
            return "only arbiter"
        if is_buyer or is_seller or is_proxy:
            return "arbiter is a party"
        if state is not OrderState.DISPUTED:
            return "wrong state"
        if not status.appealed and now < status.dispute_end:
            return "agreement window open"
        return "arbiter window closed" if now >= status.dispute_end + windows.arbiter else None
    if action is Action.CLAIM_TIMEOUT:
        if not (is_buyer or is_seller):
            return "only buyer or seller"
        if state is OrderState.DISPUTED:
            return "deadline not reached" if now < status.dispute_end + windows.arbiter else None
        if now < status.end_time:
            return "deadline not reached"
        return "wrong state" if state.is_final else None
    if action is Action.RATE_PROXY:
        if state is not OrderState.FINISHED:
            return "wrong state"
        if is_buyer:
            return "already rated" if status.buyer_rated else None
        if is_seller:
            return "already rated" if status.seller_rated else None
        return "only buyer or seller"
    raise ValueError(f"unknown action {action}")


def allowed_actions(
    terms: OrderTerms, status: OrderStatus, caller: str, now: int, windows: Windows, arbiter: str = ""
) -> list[Action]:
    """Every action `caller` may take on this order right now."""
    return [a for a in Action if refusal(a, terms, status, caller, now, windows, arbiter) is None]


def next_deadline(status: OrderStatus, windows: Windows, now: int) -> int | None:
    """When the current window closes (the countdown a client shows); None once final."""
    if status.state.is_final:
        return None
    if status.state is OrderState.DISPUTED:
        return status.dispute_end if now < status.dispute_end else status.dispute_end + windows.arbiter
    return status.end_time


def roles(terms: OrderTerms, caller: str, arbiter: str = "") -> list[Role]:
    found = terms.role_of(caller)
    if arbiter and caller.lower() == arbiter.lower():
        found.append(Role.ARBITER)
    return found or [Role.OTHER]


@dataclass(frozen=True)
class Payout:
    """Who is paid what when an order closes (before any proxy slashing)."""

    buyer: int = 0
    seller: int = 0
    proxy: int = 0
    proxy2: int = 0


def sale_payout(terms: OrderTerms) -> Payout:
    """A completed sale: the seller's deposit back plus the price less both fees."""
    same = terms.proxy.lower() == terms.proxy2.lower()
    return Payout(
        seller=2 * terms.price - 2 * terms.fee,
        proxy=2 * terms.fee if same else terms.fee,
        proxy2=0 if same else terms.fee,
    )


def held_by_order(terms: OrderTerms, state: OrderState) -> int:
    """Wei the contract holds for an order in `state` (the solvency rule's per-order term)."""
    if state is OrderState.CREATED:
        return terms.price
    if state in (
        OrderState.SELLER_CONFIRMED,
        OrderState.PROXY_FETCHED,
        OrderState.PROXY_DELIVERED,
        OrderState.DISPUTED,
    ):
        return 2 * terms.price
    return 0

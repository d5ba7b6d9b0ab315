"""Escrow order lifecycle on both backends: normal sale, withdrawals, timeouts, deadlines.

The top of this module also holds the helpers the other tests/chain/test_escrow_*.py modules
import (only test_escrow_* files may be added here, so there is no separate helper module):
balance books net of gas, the solvency check, clock control, order drivers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from web3.logs import DISCARD
from web3.types import EventData, TxReceipt

from cpchain.chain.connection import is_in_process, time_travel
from cpchain.chain.errors import ContractRevert
from cpchain.chain.escrow import ProxyAgent, order_commitment
from cpchain.chain.lifecycle import held_by_order, sale_payout
from cpchain.types import OrderState, OrderTerms, Verdict
from tests.chain.conftest import ETHER, PARAMS, World

# ---------------------------------------------------------------------------- shared helpers

PRICE = 10 * ETHER  # world.place() defaults
FEE = ETHER // 10
TIME_ALLOWED = 86400
DATA_HASH = b"\xda" * 32
PROXY_DEPOSIT = 5 * ETHER  # each of proxy and proxy2 (conftest.build_world)
ZERO_ADDRESS = "0x" + "00" * 20
CONFIRM = PARAMS.confirm_window
DISPUTE = PARAMS.dispute_window
ARBITER = PARAMS.arbiter_window
UNBONDING = PARAMS.max_time_allowed + CONFIRM + DISPUTE + ARBITER


@contextmanager
def refused(reason: str) -> Iterator[None]:
    """The block must raise ContractRevert with exactly the contract's `reason`."""
    with pytest.raises(ContractRevert) as info:
        yield
    assert info.value.reason == reason


def gas_cost(receipt: TxReceipt) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


class Books:
    """Balances of the world's accounts from now on, net of the gas each one spends."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.start = {name: world.balance(name) for name in world.accounts}
        self.gas = dict.fromkeys(world.accounts, 0)
        self.escrow_start = escrow_balance(world)

    def paid(self, name: str, receipt: TxReceipt) -> TxReceipt:
        """Record that `name` sent the transaction of `receipt` (and paid its gas)."""
        self.gas[name] += gas_cost(receipt)
        return receipt

    def delta(self, name: str) -> int:
        """What `name` gained (negative: lost) apart from gas."""
        return self.world.balance(name) - self.start[name] + self.gas[name]

    def assert_deltas(self, **expected: int) -> None:
        """Every account not named must be unchanged (net of gas)."""
        got = {name: self.delta(name) for name in self.world.accounts}
        want = {name: expected.get(name, 0) for name in self.world.accounts}
        assert got == want


def escrow_balance(world: World) -> int:
    return int(world.w3.eth.get_balance(world.escrow.address))


def assert_solvent(world: World, extra: Iterable[str] = ()) -> None:
    """balance == Σ held_by_order over all orders + Σ proxy deposits + Σ deferred payouts.

    Deposits are summed over every ProxyDeposited account and deferred payouts over every
    PayoutDeferred recipient (the only ways in), plus `extra`: a deposit or credit without its
    event would show up as a surplus.
    """
    escrow = world.escrow
    since = escrow.deployment.block
    depositors = {log["args"]["proxy"] for log in escrow.contract.events.ProxyDeposited().get_logs(from_block=since)}
    creditors = {log["args"]["to"] for log in escrow.contract.events.PayoutDeferred().get_logs(from_block=since)}
    held = 0
    for oid in range(1, escrow.num_orders() + 1):
        held += held_by_order(escrow.terms(oid), escrow.status(oid).state)
    deposits = sum(escrow.proxy_account(a)[0] for a in depositors | set(extra))
    deferred = sum(escrow.deferred_payout(a) for a in creditors | set(extra))
    assert escrow_balance(world) == held + deposits + deferred


def last_receipt(world: World) -> TxReceipt:
    """The receipt of the latest block's last transaction (both backends automine one per block)."""
    block = world.w3.eth.get_block("latest")
    return world.w3.eth.get_transaction_receipt(block["transactions"][-1])


def place(world: World, books: Books | None = None, **overrides: Any) -> int:
    """world.place(), charging the buyer's gas to `books`."""
    oid = world.place(**overrides)
    if books is not None:
        receipt = last_receipt(world)
        assert receipt["from"] == world.address("buyer")
        books.paid("buyer", receipt)
    return oid


def block_time(world: World, receipt: TxReceipt) -> int:
    return int(world.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def travel(world: World, seconds: int) -> None:
    time_travel(world.w3, seconds)


def at(world: World, ts: int) -> None:
    """Make the next transaction (and the gas estimates before it) run at block time `ts`.

    eth-tester estimates on the pending block: travel so that the pending block is at `ts`
    (time_travel goes forward from the pending block). Anvil estimates on the latest block and
    mines the next one at wall clock + offset: mine an empty block at `ts` and pin the next
    block's time to `ts` too.
    """
    w3 = world.w3
    if is_in_process(w3):
        pending = int(w3.eth.get_block("pending")["timestamp"])
        assert ts >= pending, "at() cannot go back in time"
        if ts > pending:
            time_travel(w3, ts - pending)
        assert w3.eth.get_block("pending")["timestamp"] == ts
        return
    for method in ("evm_mine", "evm_setNextBlockTimestamp"):
        response = w3.provider.make_request(method, [ts])  # type: ignore[arg-type]
        assert "error" not in response, response
    assert world.escrow.now() == ts


def agent(world: World, cls: type[Any], name: str) -> Any:
    """A role agent of class `cls` acting from account `name` (e.g. a wrong party)."""
    return cls(world.escrow, world.sender(name))


def terms_of(world: World, oid: int) -> OrderTerms:
    return world.escrow.terms(oid)


def tampered(terms: OrderTerms, **changes: Any) -> OrderTerms:
    return dataclasses.replace(terms, **changes)


def direct(world: World, name: str, function: str, *args: Any, value: int = 0) -> TxReceipt:
    """Call the contract function directly from account `name`, bypassing the agents' checks."""
    fn = world.escrow.contract.functions[function](*args)
    return world.sender(name).transact(fn, value=value)


def order_call(
    world: World, name: str, function: str, oid: int, terms: OrderTerms, *extra: Any, value: int = 0
) -> TxReceipt:
    """An order function called directly with explicit (possibly tampered) terms."""
    return direct(world, name, function, oid, terms.as_tuple(), *extra, value=value)


def events(world: World, receipt: TxReceipt, name: str) -> list[EventData]:
    return list(getattr(world.escrow.contract.events, name)().process_receipt(receipt, errors=DISCARD))


def one_event(world: World, receipt: TxReceipt, name: str) -> dict[str, Any]:
    found = events(world, receipt, name)
    assert len(found) == 1, f"{name}: {found}"
    return dict(found[0]["args"])


def proxy_agent(world: World, name: str) -> ProxyAgent:
    return world.proxy2 if name == "proxy2" else world.proxy


def state(world: World, oid: int) -> OrderState:
    return world.escrow.status(oid).state


def advance(world: World, oid: int, target: OrderState, books: Books | None = None) -> None:
    """Drive order `oid` from Created along the main path to `target`.

    FINISHED: buyer confirms. WITHDRAWN: buyer withdraws after the seller confirmed.
    SETTLED: proxy rules seller at fault and both parties agree.
    """

    def pay(name: str, receipt: TxReceipt) -> None:
        if books is not None:
            books.paid(name, receipt)

    if target is OrderState.CREATED:
        return
    pay("seller", world.seller.confirm(oid))
    if target is OrderState.SELLER_CONFIRMED:
        return
    if target is OrderState.WITHDRAWN:
        pay("buyer", world.buyer.withdraw(oid))
        return
    pay("proxy", world.proxy.claim_fetched(oid))
    if target is OrderState.PROXY_FETCHED:
        return
    pay("proxy", world.proxy.claim_delivered(oid, DATA_HASH))
    if target is OrderState.PROXY_DELIVERED:
        return
    if target is OrderState.FINISHED:
        pay("buyer", world.buyer.confirm(oid))
        return
    pay("buyer", world.buyer.dispute(oid))
    if target is OrderState.DISPUTED:
        return
    assert target is OrderState.SETTLED
    pay("proxy", world.proxy.process_dispute(oid, True))
    pay("buyer", world.buyer.answer_verdict(oid, True))
    pay("seller", world.seller.answer_verdict(oid, True))


def order_in(world: World, target: OrderState, books: Books | None = None, **overrides: Any) -> int:
    oid = place(world, books, **overrides)
    advance(world, oid, target, books)
    assert state(world, oid) is target
    return oid


# ---------------------------------------------------------------------------- normal sale


@pytest.mark.parametrize("distinct", [False, True], ids=["one-proxy", "two-proxies"])
def test_normal_sale_exact_accounting(world: World, distinct: bool) -> None:
    second = "proxy2" if distinct else "proxy"
    books = Books(world)
    assert books.escrow_start == 2 * PROXY_DEPOSIT
    oid = place(world, books, proxy2=world.address(second))
    assert escrow_balance(world) == 2 * PROXY_DEPOSIT + PRICE
    assert_solvent(world)
    books.paid("seller", world.seller.confirm(oid))
    assert escrow_balance(world) == 2 * PROXY_DEPOSIT + 2 * PRICE
    assert_solvent(world)
    books.paid("proxy", world.proxy.claim_fetched(oid))
    assert_solvent(world)
    # the second proxy may report delivery too
    books.paid(second, proxy_agent(world, second).claim_delivered(oid, DATA_HASH))
    assert_solvent(world)
    books.paid("buyer", world.buyer.confirm(oid))

    assert state(world, oid) is OrderState.FINISHED
    payout = sale_payout(terms_of(world, oid))
    if distinct:
        books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, proxy=FEE, proxy2=FEE)
        assert (payout.proxy, payout.proxy2) == (FEE, FEE)
    else:
        books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, proxy=2 * FEE)
        assert (payout.proxy, payout.proxy2) == (2 * FEE, 0)
    assert payout.seller == 2 * PRICE - 2 * FEE
    assert escrow_balance(world) == 2 * PROXY_DEPOSIT
    assert_solvent(world)
    # proxy deposits are untouched by a sale
    assert world.escrow.proxy_account(world.address("proxy")) == (PROXY_DEPOSIT, 0)


def test_normal_sale_with_zero_fee_pays_no_proxy(world: World) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.FINISHED, books, fee=0, proxy2=world.address("proxy2"))
    books.assert_deltas(buyer=-PRICE, seller=PRICE)
    assert escrow_balance(world) == 2 * PROXY_DEPOSIT
    assert_solvent(world)
    assert terms_of(world, oid).fee == 0


def test_minimal_price_just_above_twice_fee(world: World) -> None:
    books = Books(world)
    order_in(world, OrderState.FINISHED, books, price=2 * FEE + 1)
    books.assert_deltas(buyer=-(2 * FEE + 1), seller=1, proxy=2 * FEE)
    assert_solvent(world)


def test_order_placed_records_terms_and_deadline(world: World) -> None:
    desc = b"\x01" * 32
    key = b"\x02" * 32
    oid = place(world, desc_hash=desc, buyer_key=key, proxy2=world.address("proxy2"), time_allowed=1234)
    receipt = last_receipt(world)
    args = one_event(world, receipt, "OrderPlaced")
    assert args["id"] == oid == world.escrow.num_orders() == 1
    assert (args["buyer"], args["seller"]) == (world.address("buyer"), world.address("seller"))
    assert (args["proxy"], args["proxy2"]) == (world.address("proxy"), world.address("proxy2"))
    assert (args["price"], args["fee"]) == (PRICE, FEE)
    assert (args["descHash"], args["dataHash"], args["buyerKey"]) == (desc, DATA_HASH, key)
    assert args["endTime"] == block_time(world, receipt) + 1234
    status = world.escrow.status(oid)
    assert status.state is OrderState.CREATED
    assert status.end_time == args["endTime"]
    assert status.dispute_end == 0
    assert status.verdict is Verdict.NONE
    # the stored commitment is what the client computes
    stored = bytes(world.escrow.contract.functions.orderCommitment(oid).call())
    assert stored == order_commitment(terms_of(world, oid))
    assert place(world) == 2


def test_late_delivery_extends_the_deadline_by_the_confirm_window(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_FETCHED)
    end = world.escrow.status(oid).end_time
    at(world, end - 100)
    receipt = world.proxy.claim_delivered(oid, DATA_HASH)
    delivered = block_time(world, receipt)
    assert delivered == end - 100
    new_end = world.escrow.status(oid).end_time
    assert new_end == delivered + CONFIRM > end
    assert one_event(world, receipt, "ProxyDelivered")["confirmDeadline"] == new_end
    # the buyer may still confirm after the original deadline
    at(world, end + 1)
    with refused("deadline not reached"):
        world.seller.claim_timeout(oid)
    world.buyer.confirm(oid)
    assert state(world, oid) is OrderState.FINISHED
    assert_solvent(world)


def test_early_delivery_keeps_the_original_deadline(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_FETCHED)
    end = world.escrow.status(oid).end_time
    receipt = world.proxy.claim_delivered(oid, DATA_HASH)
    assert block_time(world, receipt) + CONFIRM < end
    assert world.escrow.status(oid).end_time == end
    assert one_event(world, receipt, "ProxyDelivered")["confirmDeadline"] == end


def test_both_proxies_may_serve_the_order(world: World) -> None:
    oid = place(world, proxy2=world.address("proxy2"))
    world.seller.confirm(oid)
    r1 = world.proxy2.claim_fetched(oid)
    assert one_event(world, r1, "ProxyFetched")["proxy"] == world.address("proxy2")
    r2 = world.proxy.claim_delivered(oid, DATA_HASH)
    assert one_event(world, r2, "ProxyDelivered")["proxy"] == world.address("proxy")
    assert state(world, oid) is OrderState.PROXY_DELIVERED


# ---------------------------------------------------------------------------- buyer withdrawal


def test_buyer_withdraws_from_created(world: World) -> None:
    books = Books(world)
    oid = place(world, books)
    receipt = books.paid("buyer", world.buyer.withdraw(oid))
    assert state(world, oid) is OrderState.WITHDRAWN
    args = one_event(world, receipt, "OrderWithdrawn")
    assert (args["id"], args["by"], args["fromState"]) == (oid, world.address("buyer"), OrderState.CREATED)
    books.assert_deltas()
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


def test_buyer_withdraws_from_seller_confirmed_refunds_both(world: World) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.SELLER_CONFIRMED, books)
    assert_solvent(world)
    receipt = books.paid("buyer", world.buyer.withdraw(oid))
    assert one_event(world, receipt, "OrderWithdrawn")["fromState"] == OrderState.SELLER_CONFIRMED
    books.assert_deltas()
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


@pytest.mark.parametrize(
    "target",
    [OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.DISPUTED, OrderState.FINISHED,
     OrderState.SETTLED, OrderState.WITHDRAWN],
    ids=lambda s: s.name,
)  # fmt: skip
def test_buyer_cannot_withdraw_once_fetched_or_closed(world: World, target: OrderState) -> None:
    oid = order_in(world, target)
    with refused("wrong state"):
        world.buyer.withdraw(oid)
    assert state(world, oid) is target
    assert_solvent(world)


def test_buyer_cannot_withdraw_after_deadline(world: World) -> None:
    oid = order_in(world, OrderState.SELLER_CONFIRMED)
    at(world, world.escrow.status(oid).end_time)
    with refused("deadline passed"):
        world.buyer.withdraw(oid)
    world.seller.claim_timeout(oid)  # the timeout is the exit now
    assert state(world, oid) is OrderState.WITHDRAWN


# ---------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("claimer", ["buyer", "seller"])
def test_timeout_from_created_refunds_buyer(world: World, claimer: str) -> None:
    books = Books(world)
    oid = place(world, books)
    travel(world, TIME_ALLOWED + 1)
    party = world.buyer if claimer == "buyer" else world.seller
    receipt = books.paid(claimer, party.claim_timeout(oid))
    args = one_event(world, receipt, "OrderTimedOut")
    assert args == {
        "id": oid, "by": world.address(claimer),
        "fromState": OrderState.CREATED, "toState": OrderState.WITHDRAWN,
    }  # fmt: skip
    assert state(world, oid) is OrderState.WITHDRAWN
    books.assert_deltas()
    assert_solvent(world)


@pytest.mark.parametrize("target", [OrderState.SELLER_CONFIRMED, OrderState.PROXY_FETCHED], ids=lambda s: s.name)
def test_timeout_before_delivery_refunds_both(world: World, target: OrderState) -> None:
    books = Books(world)
    oid = order_in(world, target, books)
    travel(world, TIME_ALLOWED + 1)
    receipt = books.paid("seller", world.seller.claim_timeout(oid))
    args = one_event(world, receipt, "OrderTimedOut")
    assert (args["fromState"], args["toState"]) == (target, OrderState.WITHDRAWN)
    assert state(world, oid) is OrderState.WITHDRAWN
    books.assert_deltas()  # the proxy earns nothing: it did not deliver
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


def test_timeout_after_delivery_completes_the_sale(world: World) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.PROXY_DELIVERED, books, proxy2=world.address("proxy2"))
    travel(world, TIME_ALLOWED + 1)
    receipt = books.paid("seller", world.seller.claim_timeout(oid))
    args = one_event(world, receipt, "OrderTimedOut")
    assert (args["fromState"], args["toState"]) == (OrderState.PROXY_DELIVERED, OrderState.FINISHED)
    assert state(world, oid) is OrderState.FINISHED
    books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, proxy=FEE, proxy2=FEE)
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


@pytest.mark.parametrize("seller_at_fault", [True, False], ids=["seller-at-fault", "buyer-at-fault"])
def test_timeout_of_ruled_dispute_applies_proxy_verdict(world: World, seller_at_fault: bool) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books)
    books.paid("proxy", world.proxy.process_dispute(oid, seller_at_fault))
    books.paid("seller", world.seller.answer_verdict(oid, False))  # an appeal the arbiter never rules on
    dispute_end = world.escrow.status(oid).dispute_end
    at(world, dispute_end + ARBITER - 1)
    with refused("deadline not reached"):
        world.buyer.claim_timeout(oid)
    at(world, dispute_end + ARBITER)
    receipt = books.paid("buyer", world.buyer.claim_timeout(oid))
    args = one_event(world, receipt, "OrderTimedOut")
    assert (args["fromState"], args["toState"]) == (OrderState.DISPUTED, OrderState.SETTLED)
    verdict = Verdict.SELLER_AT_FAULT if seller_at_fault else Verdict.BUYER_AT_FAULT
    settled = one_event(world, receipt, "DisputeSettled")
    assert settled == {"id": oid, "verdict": verdict, "proxyAtFault": False}
    status = world.escrow.status(oid)
    assert (status.state, status.verdict) == (OrderState.SETTLED, verdict)
    if seller_at_fault:
        books.assert_deltas(buyer=PRICE - 2 * FEE, seller=-PRICE, proxy=2 * FEE)
    else:
        books.assert_deltas(buyer=-PRICE, seller=PRICE - 2 * FEE, proxy=2 * FEE)
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


def test_timeout_of_unruled_dispute_refunds_both(world: World) -> None:
    books = Books(world)
    oid = order_in(world, OrderState.DISPUTED, books)
    travel(world, DISPUTE + ARBITER + 1)
    receipt = books.paid("seller", world.seller.claim_timeout(oid))
    args = one_event(world, receipt, "OrderTimedOut")
    assert (args["fromState"], args["toState"]) == (OrderState.DISPUTED, OrderState.WITHDRAWN)
    assert events(world, receipt, "DisputeSettled") == []
    assert state(world, oid) is OrderState.WITHDRAWN
    books.assert_deltas()  # the proxy that never ruled earns nothing
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)


@pytest.mark.parametrize(
    "target",
    [OrderState.CREATED, OrderState.SELLER_CONFIRMED, OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED],
    ids=lambda s: s.name,
)
def test_timeout_refused_before_deadline(world: World, target: OrderState) -> None:
    oid = order_in(world, target)
    for party in (world.buyer, world.seller):
        with refused("deadline not reached"):
            party.claim_timeout(oid)


def test_timeout_of_dispute_refused_until_arbiter_window_ends(world: World) -> None:
    oid = order_in(world, OrderState.DISPUTED)
    # past the order's own deadline, still inside the dispute
    travel(world, TIME_ALLOWED + 1)
    with refused("deadline not reached"):
        world.buyer.claim_timeout(oid)
    travel(world, DISPUTE)
    with refused("deadline not reached"):
        world.seller.claim_timeout(oid)


CLOSED = [OrderState.FINISHED, OrderState.SETTLED, OrderState.WITHDRAWN]


@pytest.mark.parametrize("target", CLOSED, ids=lambda s: s.name)
def test_timeout_of_closed_order_is_wrong_state(world: World, target: OrderState) -> None:
    oid = order_in(world, target)
    with refused("deadline not reached"):  # the deadline is checked first
        world.buyer.claim_timeout(oid)
    travel(world, TIME_ALLOWED + DISPUTE + ARBITER + 1)
    for party in (world.buyer, world.seller):
        with refused("wrong state"):
            party.claim_timeout(oid)


# ---------------------------------------------------------------------------- exact deadline boundaries


def test_boundary_created_order(world: World) -> None:
    oid = place(world)
    end = world.escrow.status(oid).end_time
    at(world, end - 1)
    with refused("deadline not reached"):
        world.buyer.claim_timeout(oid)
    receipt = world.seller.confirm(oid)
    assert block_time(world, receipt) == end - 1
    at(world, end)
    with refused("deadline passed"):
        world.proxy.claim_fetched(oid)
    with refused("deadline passed"):
        world.buyer.withdraw(oid)
    receipt = world.buyer.claim_timeout(oid)
    assert block_time(world, receipt) == end
    assert state(world, oid) is OrderState.WITHDRAWN
    assert_solvent(world)


def test_boundary_created_order_seller_too_late(world: World) -> None:
    oid = place(world)
    end = world.escrow.status(oid).end_time
    at(world, end - 1)
    world.buyer.withdraw(oid)  # still allowed in the last second
    assert state(world, oid) is OrderState.WITHDRAWN
    oid2 = place(world)
    at(world, world.escrow.status(oid2).end_time)
    with refused("deadline passed"):
        world.seller.confirm(oid2)


def test_boundary_fetched_and_delivered(world: World) -> None:
    oid = order_in(world, OrderState.SELLER_CONFIRMED)
    end = world.escrow.status(oid).end_time
    at(world, end - 2)
    world.proxy.claim_fetched(oid)
    at(world, end - 1)
    receipt = world.proxy.claim_delivered(oid, DATA_HASH)
    assert block_time(world, receipt) == end - 1
    new_end = end - 1 + CONFIRM
    assert world.escrow.status(oid).end_time == new_end
    at(world, new_end - 1)
    with refused("deadline not reached"):
        world.seller.claim_timeout(oid)
    receipt = world.buyer.dispute(oid)  # the last second of the confirm window
    assert block_time(world, receipt) == new_end - 1
    assert world.escrow.status(oid).dispute_end == new_end - 1 + DISPUTE


def test_boundary_delivered_order_times_out_at_end(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_DELIVERED)
    end = world.escrow.status(oid).end_time
    at(world, end)
    with refused("deadline passed"):
        world.buyer.confirm(oid)
    with refused("deadline passed"):
        world.buyer.dispute(oid)
    receipt = world.buyer.claim_timeout(oid)
    assert block_time(world, receipt) == end
    assert state(world, oid) is OrderState.FINISHED
    assert_solvent(world)


def test_boundary_fetched_order_times_out_at_end(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_FETCHED)
    end = world.escrow.status(oid).end_time
    at(world, end - 1)
    with refused("deadline not reached"):
        world.seller.claim_timeout(oid)
    at(world, end)
    with refused("deadline passed"):
        world.proxy.claim_delivered(oid, DATA_HASH)
    world.seller.claim_timeout(oid)
    assert state(world, oid) is OrderState.WITHDRAWN


def test_approximate_boundaries_with_time_travel(world: World) -> None:
    """The coarse version with time_travel only (as a client would see it)."""
    oid = place(world)
    travel(world, TIME_ALLOWED - 30)
    world.seller.confirm(oid)
    with refused("deadline not reached"):
        world.seller.claim_timeout(oid)
    travel(world, 31)
    assert world.escrow.now() >= world.escrow.status(oid).end_time
    with refused("deadline passed"):
        world.proxy.claim_fetched(oid)
    world.seller.claim_timeout(oid)
    assert state(world, oid) is OrderState.WITHDRAWN


def test_other_accounts_are_unaffected_by_many_orders(world: World) -> None:
    """Several orders in different states at once keep the books exact."""
    books = Books(world)
    o1 = order_in(world, OrderState.FINISHED, books)
    o2 = order_in(world, OrderState.WITHDRAWN, books)
    o3 = order_in(world, OrderState.SETTLED, books, proxy2=world.address("proxy2"))
    o4 = order_in(world, OrderState.DISPUTED, books)
    o5 = order_in(world, OrderState.CREATED, books)
    assert_solvent(world)
    assert escrow_balance(world) == books.escrow_start + 2 * PRICE + PRICE
    books.paid("buyer", world.buyer.withdraw(o5))
    travel(world, TIME_ALLOWED + DISPUTE + ARBITER + 1)
    books.paid("buyer", world.buyer.claim_timeout(o4))
    assert [state(world, o) for o in (o1, o2, o3, o4, o5)] == [
        OrderState.FINISHED, OrderState.WITHDRAWN, OrderState.SETTLED, OrderState.WITHDRAWN, OrderState.WITHDRAWN,
    ]  # fmt: skip
    # o1: sale; o3: buyer won (seller at fault): buyer +P-2F, seller -P, proxies F each
    books.assert_deltas(
        buyer=-PRICE + (PRICE - 2 * FEE), seller=(PRICE - 2 * FEE) - PRICE, proxy=2 * FEE + FEE, proxy2=FEE
    )
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world)

"""The indexer's event -> effect rules on plain data: no chain, no database."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from cpchain.chain.artifact import load_artifact
from cpchain.market.records import rules
from cpchain.market.records.rules import (
    NewOrder,
    OrderUpdate,
    ProxyDepositTotal,
    ProxyRating,
    ProxySlash,
    SaleCompleted,
)
from cpchain.types import OrderState, Verdict, market_hash_of

BUYER = "0x" + "b1" * 20  # lowercase: the rules must checksum every address they keep
SELLER = "0x" + "5e" * 20
PROXY = "0x" + "a1" * 20
PROXY2 = "0x" + "a2" * 20
DESC = bytes(range(32))
ABI_EVENTS = rules.arg_types(load_artifact().abi)


def placed(**over: Any) -> dict[str, Any]:
    return {
        "id": 7, "buyer": BUYER, "seller": SELLER, "proxy": PROXY, "proxy2": PROXY2, "price": 2**90 + 1,
        "fee": 3, "descHash": DESC, "dataHash": b"\xda" * 32, "buyerKey": b"\x01" * 32, "endTime": 1_800_000_000,
        **over,
    }  # fmt: skip


def dummy_args(name: str) -> dict[str, Any]:
    """Well-typed arguments for any event of the contract (states and verdicts in range)."""
    values = {"address": BUYER, "bool": True, "bytes32": b"\x11" * 32, "uint256": 5}
    args = {arg: values.get(kind, 1) for arg, kind in ABI_EVENTS[name].items()}
    if "toState" in args:
        args["toState"] = int(OrderState.FINISHED)
    return args


def test_order_placed_keeps_every_term_exactly() -> None:
    assert rules.effects_of("OrderPlaced", placed()) == [
        NewOrder(
            order_id=7,
            buyer=to_checksum_address(BUYER),
            seller=to_checksum_address(SELLER),
            proxy=to_checksum_address(PROXY),
            proxy2=to_checksum_address(PROXY2),
            price=2**90 + 1,  # an int all the way: never a float
            fee=3,
            desc_hash=DESC.hex(),
            market_hash=market_hash_of(DESC),
            data_hash="da" * 32,
            end_time=1_800_000_000,
        )
    ]


@pytest.mark.parametrize(
    ("name", "args", "update"),
    [
        ("SellerConfirmed", {"deposit": 5}, OrderUpdate(7, state=OrderState.SELLER_CONFIRMED)),
        ("ProxyFetched", {}, OrderUpdate(7, state=OrderState.PROXY_FETCHED)),
        ("ProxyDelivered", {"confirmDeadline": 99}, OrderUpdate(7, state=OrderState.PROXY_DELIVERED, end_time=99)),
        ("BuyerConfirmed", {}, OrderUpdate(7, state=OrderState.FINISHED)),
        ("OrderWithdrawn", {"fromState": 1}, OrderUpdate(7, state=OrderState.WITHDRAWN)),
        ("BuyerDisputed", {"disputeEnd": 55}, OrderUpdate(7, state=OrderState.DISPUTED, dispute_end=55)),
        ("ProxyRuled", {"verdict": 2}, OrderUpdate(7, verdict=Verdict.SELLER_AT_FAULT)),
        ("ArbiterRuled", {"verdict": 1, "proxyAtFault": True}, OrderUpdate(7, verdict=Verdict.BUYER_AT_FAULT)),
        (
            "DisputeSettled",
            {"verdict": 2, "proxyAtFault": False},
            OrderUpdate(7, state=OrderState.SETTLED, verdict=Verdict.SELLER_AT_FAULT),
        ),
        *(
            ("OrderTimedOut", {"fromState": 3, "toState": int(to)}, OrderUpdate(7, state=to))
            for to in (OrderState.FINISHED, OrderState.SETTLED, OrderState.WITHDRAWN)
        ),
        ("VerdictAnswered", {"agree": True}, None),
    ],
)
def test_state_after_each_order_event(name: str, args: dict[str, Any], update: OrderUpdate | None) -> None:
    assert rules.order_update(name, {"id": 7, **args}) == update


@pytest.mark.parametrize(
    ("name", "args", "sale"),
    [
        ("BuyerConfirmed", {}, True),
        ("OrderTimedOut", {"toState": OrderState.FINISHED}, True),  # the seller timed the buyer out
        # into Settled: DisputeSettled follows in the same transaction and is the one that counts
        ("OrderTimedOut", {"toState": OrderState.SETTLED}, False),
        ("OrderTimedOut", {"toState": OrderState.WITHDRAWN}, False),
        ("DisputeSettled", {"verdict": Verdict.BUYER_AT_FAULT, "proxyAtFault": False}, True),
        ("DisputeSettled", {"verdict": Verdict.BUYER_AT_FAULT, "proxyAtFault": True}, True),
        ("DisputeSettled", {"verdict": Verdict.SELLER_AT_FAULT, "proxyAtFault": False}, False),
        ("DisputeSettled", {"verdict": Verdict.SELLER_AT_FAULT, "proxyAtFault": True}, False),
        ("ProxyDelivered", {"confirmDeadline": 1}, False),
        ("OrderWithdrawn", {"fromState": 0}, False),
        ("ArbiterRuled", {"verdict": Verdict.BUYER_AT_FAULT, "proxyAtFault": False}, False),  # settles next
    ],
)
def test_a_sale_completes_exactly_when_the_seller_is_paid(name: str, args: dict[str, Any], sale: bool) -> None:
    effects = rules.effects_of(name, {"id": 3, **args})
    assert (SaleCompleted(3) in effects) is sale
    assert sum(isinstance(e, SaleCompleted) for e in effects) == int(sale)


def test_a_settlement_always_has_a_verdict() -> None:
    with pytest.raises(ValueError, match="without a verdict"):
        rules.settlement_pays_seller(Verdict.NONE)


@pytest.mark.parametrize("name", sorted(ABI_EVENTS))
def test_every_contract_event_has_a_well_defined_meaning(name: str) -> None:
    """No event of the ABI trips the rules; order events name their order, and none both
    creates an order and completes a sale."""
    args = dummy_args(name)
    effects = rules.effects_of(name, args)
    for effect in effects:
        if isinstance(effect, (NewOrder, OrderUpdate, SaleCompleted)):
            assert effect.order_id == args["id"]
    assert not (any(isinstance(e, NewOrder) for e in effects) and any(isinstance(e, SaleCompleted) for e in effects))
    actor = rules.actor_of(name, args)
    assert actor == (to_checksum_address(BUYER) if name != "DisputeSettled" else "")


def test_proxy_standing_effects() -> None:
    proxy = to_checksum_address(PROXY)
    deposited = {"proxy": PROXY, "amount": 2, "total": 9}
    assert rules.effects_of("ProxyDeposited", deposited) == [ProxyDepositTotal(proxy, 9)]
    withdrawn = {"proxy": PROXY, "amount": 4, "remaining": 5}
    assert rules.effects_of("ProxyWithdrawn", withdrawn) == [ProxyDepositTotal(proxy, 5)]
    assert rules.effects_of("ProxySlashed", {"id": 1, "proxy": PROXY, "amount": 3}) == [ProxySlash(proxy, 3)]
    rated = {"id": 1, "rater": BUYER, "proxy": PROXY, "rating": 4}
    assert rules.effects_of("ProxyRated", rated) == [ProxyRating(proxy, 4)]
    assert rules.effects_of("ProxyWithdrawRequested", {"proxy": PROXY, "unlockAt": 1}) == []


def test_deposit_after_slashes_reads_back_to_the_last_stated_total() -> None:
    newest_first = [
        ("ProxySlashed", {"amount": "3"}),  # Record.args keep wide integers as strings
        ("ProxySlashed", {"amount": 2}),
        ("ProxyWithdrawn", {"amount": "1", "remaining": "10"}),
        ("ProxySlashed", {"amount": "1000"}),  # before the stated total: already in it
    ]
    assert rules.deposit_after(newest_first) == 5
    assert rules.deposit_after([("ProxyDeposited", {"amount": "4", "total": str(2**100)})]) == 2**100
    with pytest.raises(ValueError, match="no deposit on record"):
        rules.deposit_after([("ProxySlashed", {"amount": "1"})])
    with pytest.raises(ValueError, match="from a deposit of"):
        rules.deposit_after([("ProxySlashed", {"amount": "11"}), ("ProxyDeposited", {"total": "10"})])


def test_event_arguments_as_lossless_json() -> None:
    stored = rules.json_args("OrderPlaced", placed(), ABI_EVENTS)
    assert stored["price"] == str(2**90 + 1) and stored["id"] == "7" and stored["endTime"] == "1800000000"
    assert stored["buyer"] == to_checksum_address(BUYER)
    assert stored["descHash"] == DESC.hex()
    timed_out = rules.json_args("OrderTimedOut", {"id": 1, "by": SELLER, "fromState": 3, "toState": 4}, ABI_EVENTS)
    assert timed_out == {"id": "1", "by": to_checksum_address(SELLER), "fromState": 3, "toState": 4}
    settled = rules.json_args("DisputeSettled", {"id": 1, "verdict": 1, "proxyAtFault": False}, ABI_EVENTS)
    assert settled["proxyAtFault"] is False and settled["verdict"] == 1

"""Every state change emits its event, with the order id indexed (filterable by topic)."""

from __future__ import annotations

from typing import Any

from hexbytes import HexBytes
from web3.types import TxReceipt

from cpchain.types import OrderState
from tests.chain.conftest import World
from tests.chain.escrow.test_escrow_lifecycle import (
    DATA_HASH,
    DISPUTE,
    TIME_ALLOWED,
    events,
    last_receipt,
    one_event,
    order_in,
    place,
    travel,
)

ORDER_EVENTS = [
    "OrderPlaced", "SellerConfirmed", "ProxyFetched", "ProxyDelivered", "BuyerConfirmed", "OrderWithdrawn",
    "OrderTimedOut", "BuyerDisputed", "ProxyRuled", "VerdictAnswered", "ArbiterRuled", "DisputeSettled",
    "ProxyRated", "ProxySlashed",
]  # fmt: skip


def _check(world: World, receipt: TxReceipt, name: str, oid: int, **expected: Any) -> None:
    """`receipt` has exactly one `name` event for order `oid` (indexed: topic 1 is the id)."""
    args = one_event(world, receipt, name)
    assert args["id"] == oid
    for key, value in expected.items():
        assert args[key] == value, (name, key)
    abi_event = getattr(world.escrow.contract.events, name)()
    logs = [log for log in receipt["logs"] if HexBytes(log["topics"][0]) == HexBytes(abi_event.topic)]
    assert len(logs) == 1
    assert int.from_bytes(bytes(logs[0]["topics"][1]), "big") == oid


def _ids_by_filter(world: World, name: str, oid: int) -> list[int]:
    logs = getattr(world.escrow.contract.events, name)().get_logs(
        argument_filters={"id": oid}, from_block=world.escrow.deployment.block
    )
    return [log["args"]["id"] for log in logs]


def test_sale_events(world: World) -> None:
    other = place(world)  # a second order, to show the filters select by id
    oid = place(world, proxy2=world.address("proxy2"))
    _check(world, last_receipt(world), "OrderPlaced", oid, buyer=world.address("buyer"))
    _check(world, world.seller.confirm(oid), "SellerConfirmed", oid, seller=world.address("seller"))
    _check(world, world.proxy2.claim_fetched(oid), "ProxyFetched", oid, proxy=world.address("proxy2"))
    _check(world, world.proxy.claim_delivered(oid, DATA_HASH), "ProxyDelivered", oid, deliverHash=DATA_HASH)
    _check(world, world.buyer.confirm(oid), "BuyerConfirmed", oid, buyer=world.address("buyer"))
    receipt = world.buyer.rate_proxy(oid, 4)
    rated = events(world, receipt, "ProxyRated")
    assert [e["args"]["proxy"] for e in rated] == [world.address("proxy"), world.address("proxy2")]
    assert all(e["args"]["id"] == oid for e in rated)
    world.seller.confirm(other)
    for name in ("OrderPlaced", "SellerConfirmed", "ProxyFetched", "ProxyDelivered", "BuyerConfirmed"):
        assert _ids_by_filter(world, name, oid) == [oid], name
    assert _ids_by_filter(world, "SellerConfirmed", other) == [other]
    assert _ids_by_filter(world, "ProxyRated", oid) == [oid, oid]
    assert _ids_by_filter(world, "BuyerConfirmed", other) == []


def test_withdraw_and_timeout_events(world: World) -> None:
    oid = place(world)
    _check(world, world.buyer.withdraw(oid), "OrderWithdrawn", oid, fromState=OrderState.CREATED)
    oid2 = order_in(world, OrderState.PROXY_DELIVERED)
    travel(world, TIME_ALLOWED + 1)
    _check(
        world, world.seller.claim_timeout(oid2), "OrderTimedOut", oid2,
        by=world.address("seller"), fromState=OrderState.PROXY_DELIVERED, toState=OrderState.FINISHED,
    )  # fmt: skip
    assert _ids_by_filter(world, "OrderWithdrawn", oid) == [oid]
    assert _ids_by_filter(world, "OrderTimedOut", oid2) == [oid2]
    assert _ids_by_filter(world, "OrderTimedOut", oid) == []


def test_dispute_events(world: World) -> None:
    oid = order_in(world, OrderState.PROXY_DELIVERED, proxy2=world.address("proxy2"))
    receipt = world.buyer.dispute(oid)
    _check(world, receipt, "BuyerDisputed", oid, disputeEnd=world.escrow.status(oid).dispute_end)
    assert world.escrow.status(oid).dispute_end > 0
    _check(world, world.proxy.process_dispute(oid, True), "ProxyRuled", oid, verdict=2)
    _check(world, world.seller.answer_verdict(oid, False), "VerdictAnswered", oid, agree=False)
    receipt = world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=True)
    _check(world, receipt, "ArbiterRuled", oid, verdict=1, proxyAtFault=True)
    _check(world, receipt, "DisputeSettled", oid, verdict=1, proxyAtFault=True)
    slashed = events(world, receipt, "ProxySlashed")
    assert [(e["args"]["id"], e["args"]["proxy"]) for e in slashed] == [
        (oid, world.address("proxy")), (oid, world.address("proxy2")),
    ]  # fmt: skip
    for name in ORDER_EVENTS:
        ids = _ids_by_filter(world, name, oid)
        assert set(ids) <= {oid}, name


def test_timeout_settlement_events(world: World) -> None:
    oid = order_in(world, OrderState.DISPUTED)
    world.proxy.process_dispute(oid, False)
    travel(world, DISPUTE + 7 * 86400 + 1)
    receipt = world.buyer.claim_timeout(oid)
    _check(world, receipt, "OrderTimedOut", oid, fromState=OrderState.DISPUTED, toState=OrderState.SETTLED)
    _check(world, receipt, "DisputeSettled", oid, verdict=1, proxyAtFault=False)

"""The chain indexer against real contract events, on the in-process chain and on anvil:
orders through every ending, sales counted once, review eligibility, proxy standing,
idempotent re-runs and crashes mid-batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cpchain.chain.events import ChainEvent
from cpchain.market.proxy.models import ProxyNode
from cpchain.market.records import indexer as indexer_module
from cpchain.market.records.indexer import DbCheckpoint, Indexer, IndexerError
from cpchain.market.records.models import ChainOrder, Record, SyncState
from cpchain.market.records.queries import may_review
from cpchain.types import OrderState
from tests.chain.conftest import ETHER, World
from tests.chain.escrow.test_escrow_lifecycle import (
    ARBITER,
    DISPUTE,
    TIME_ALLOWED,
    UNBONDING,
    advance,
    order_in,
    travel,
)
from tests.market.records.conftest import listed_product

pytestmark = pytest.mark.usefixtures("market_db")


def db_state() -> dict[str, Any]:
    """Everything the indexer writes, in a comparable form."""
    from cpchain.market.product.models import Product

    return {
        "records": sorted(Record.objects.values_list("tx_hash", "log_index", "event", "args", "fee")),
        "orders": [
            {k: v for k, v in row.items() if k != "id"} for row in ChainOrder.objects.order_by("order_id").values()
        ],
        "sales": sorted(Product.objects.values_list("desc_hash", "sales")),
        "proxies": sorted(ProxyNode.objects.values_list("address", "deposit", "rating_count", "rating_sum")),
    }


def assert_mirrors_chain(world: World, order_ids: list[int]) -> None:
    """Each order's terms and status in the database are the contract's."""
    for oid in order_ids:
        row = ChainOrder.objects.get(order_id=oid)
        terms, status = world.escrow.terms(oid), world.escrow.status(oid)
        assert (row.buyer, row.seller, row.proxy, row.proxy2) == (terms.buyer, terms.seller, terms.proxy, terms.proxy2)
        assert (int(row.price), int(row.fee), row.desc_hash) == (terms.price, terms.fee, terms.desc_hash.hex())
        assert (row.state, row.verdict, row.end_time, row.dispute_end) == (
            status.state, status.verdict, status.end_time, status.dispute_end,
        )  # fmt: skip


def assert_proxies_mirror_chain(world: World) -> None:
    for name in ("proxy", "proxy2"):
        node = ProxyNode.objects.get(address=world.address(name))
        assert int(node.deposit) == world.escrow.proxy_account(node.address)[0]
        assert (node.rating_sum, node.rating_count) == world.escrow.proxy_rating(node.address)


def dispute_ruled(world: World, buyer_at_fault: bool, **terms: Any) -> int:
    oid = order_in(world, OrderState.DISPUTED, **terms)
    world.proxy.process_dispute(oid, not buyer_at_fault)
    return oid


def test_orders_through_every_ending_count_each_sale_once(world: World) -> None:
    product = listed_product(world.address("seller"))
    listed = {"desc_hash": bytes.fromhex(product.desc_hash)}
    o: dict[str, int] = {}
    o["confirmed"] = order_in(world, OrderState.FINISHED, proxy2=world.address("proxy2"), **listed)
    o["unlisted"] = order_in(world, OrderState.FINISHED)  # a product the market does not know
    o["buyer_at_fault"] = dispute_ruled(world, True, **listed)
    world.seller.answer_verdict(o["buyer_at_fault"], True)
    world.buyer.answer_verdict(o["buyer_at_fault"], True)
    o["seller_at_fault"] = order_in(world, OrderState.SETTLED, **listed)
    o["withdrawn"] = order_in(world, OrderState.WITHDRAWN, **listed)
    # appealed; the arbiter finds the buyer and both proxies at fault (both are slashed)
    o["arbiter"] = dispute_ruled(world, False, proxy2=world.address("proxy2"), **listed)
    world.seller.answer_verdict(o["arbiter"], False)
    world.arbiter.rule(o["arbiter"], seller_at_fault=False, proxy_at_fault=True)
    o["delivered"] = order_in(world, OrderState.PROXY_DELIVERED, **listed)
    o["disputed"] = dispute_ruled(world, True, **listed)
    o["created"] = order_in(world, OrderState.CREATED, **listed)
    world.buyer.rate_proxy(o["confirmed"], 4)  # rates proxy and proxy2
    world.seller.rate_proxy(o["confirmed"], 5)

    indexer = Indexer(world.escrow)
    assert indexer.sync() > 0
    product.refresh_from_db()
    assert product.sales == 3  # confirmed, buyer_at_fault, arbiter
    assert_mirrors_chain(world, list(o.values()))

    # Past every deadline: the seller times out the delivered order (a sale) and the ruled
    # dispute (Disputed -> Settled on the proxy's verdict: a sale, counted once although
    # OrderTimedOut and DisputeSettled both say so); the buyer takes back the unconfirmed one.
    travel(world, TIME_ALLOWED + DISPUTE + ARBITER + 1)
    world.seller.claim_timeout(o["delivered"])
    world.seller.claim_timeout(o["disputed"])
    world.buyer.claim_timeout(o["created"])
    assert Indexer(world.escrow).sync() == 4  # resumes from the checkpoint: only the 4 new events

    product.refresh_from_db()
    assert product.sales == 5
    assert_mirrors_chain(world, list(o.values()))
    paid = {name for name, oid in o.items() if ChainOrder.objects.get(order_id=oid).seller_paid}
    assert paid == {"confirmed", "unlisted", "buyer_at_fault", "arbiter", "delivered", "disputed"}
    assert ChainOrder.objects.get(order_id=o["unlisted"]).market_hash != product.market_hash
    assert ChainOrder.objects.get(order_id=o["confirmed"]).market_hash == product.market_hash
    assert_proxies_mirror_chain(world)

    # Review eligibility: the buyer of a completed purchase, nobody else, any address case.
    buyer, seller = world.address("buyer"), world.address("seller")
    for name, oid in o.items():
        allowed = may_review(buyer.lower(), oid)
        assert (allowed is not None) == (name in paid)
        assert allowed is None or allowed.order_id == oid
        assert may_review(seller, oid) is None
        assert may_review(world.address("other"), oid) is None
    assert may_review("not an address", o["confirmed"]) is None
    assert may_review(buyer, 2**64) is None

    # Replaying everything from the deployment block changes nothing.
    before = db_state()
    SyncState.objects.update(block=world.escrow.deployment.block - 1)
    assert Indexer(world.escrow).sync() == len(before["records"])
    assert db_state() == before


def test_records_carry_utc_block_times_senders_and_fees(world: World) -> None:
    oid = world.place()
    indexer = Indexer(world.escrow)
    indexer.sync()
    record = Record.objects.get(event="OrderPlaced", order_id=oid)
    receipt = world.w3.eth.get_transaction_receipt(record.tx_hash)  # type: ignore[arg-type]
    block = world.w3.eth.get_block(receipt["blockNumber"])
    assert record.block_time == datetime.fromtimestamp(block["timestamp"], tz=UTC)
    assert record.block_time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert int(record.fee) == receipt["gasUsed"] * receipt["effectiveGasPrice"] > 0
    assert record.sender == record.actor == world.address("buyer")
    assert record.args["price"] == str(10 * ETHER)
    order = ChainOrder.objects.get(order_id=oid)
    assert order.placed_at == record.block_time and order.placed_block == record.block


def test_a_fresh_database_starts_at_the_deployment_block_and_keeps_to_its_contract(world: World) -> None:
    follower = Indexer(world.escrow).follower()
    assert follower.checkpoint.load() == world.escrow.deployment.block - 1  # never genesis
    SyncState.objects.update(contract="1:0x0000000000000000000000000000000000000001:5")
    with pytest.raises(IndexerError, match="use a fresh market database"):
        DbCheckpoint(world.escrow).claim()


def test_proxy_standing_follows_deposits_withdrawals_and_ratings(world: World) -> None:
    ProxyNode.objects.create(address=world.address("proxy"), host="proxy.example")  # registered before
    world.proxy.deposit(2 * ETHER)
    oid = order_in(world, OrderState.FINISHED)
    world.seller.rate_proxy(oid, 3)
    world.proxy2.request_withdraw()
    travel(world, UNBONDING + 1)
    world.proxy2.withdraw(4 * ETHER)
    world.proxy2.deposit(ETHER // 2)  # bonds again
    Indexer(world.escrow).sync()
    assert_proxies_mirror_chain(world)
    registered, created = (ProxyNode.objects.get(address=world.address(n)) for n in ("proxy", "proxy2"))
    assert (registered.host, int(registered.deposit), registered.rating_count) == ("proxy.example", 7 * ETHER, 1)
    assert (created.host, int(created.deposit), created.rating_count) == ("", 3 * ETHER // 2, 0)


# ---------------------------------------------------------------- crashes


class Crash(Exception):
    pass


def trades(world: World) -> int:
    """A few orders with sales, a slash and ratings; returns the listed product's id."""
    product = listed_product(world.address("seller"))
    listed = {"desc_hash": bytes.fromhex(product.desc_hash)}
    first = order_in(world, OrderState.FINISHED, **listed)
    world.buyer.rate_proxy(first, 5)
    order_in(world, OrderState.FINISHED, **listed)
    slashed = dispute_ruled(world, False, **listed)
    world.buyer.answer_verdict(slashed, False)
    world.arbiter.rule(slashed, seller_at_fault=False, proxy_at_fault=True)
    advance(world, order_in(world, OrderState.CREATED), OrderState.WITHDRAWN)
    return int(product.pk)


def crash_between_events(world: World, mp: pytest.MonkeyPatch) -> Callable[[], None]:
    """The process dies before handling the 9th event (the first 8 are committed)."""
    indexer, seen = Indexer(world.escrow), []

    def handler(event: ChainEvent) -> None:
        seen.append(event)
        if len(seen) == 9:
            raise Crash
        indexer(event)

    return lambda: indexer.follower().poll(handler) and None


def crash_inside_an_event(world: World, mp: pytest.MonkeyPatch) -> Callable[[], None]:
    """The process dies in the middle of applying a sale: after its Record row was written
    and the order marked paid, before the product's count moved."""
    real = indexer_module.count_sale

    def count_then_die(order_id: int) -> bool:
        real(order_id)
        raise Crash

    mp.setattr(indexer_module, "count_sale", count_then_die)
    return lambda: Indexer(world.escrow).sync() and None


def crash_before_the_checkpoint(world: World, mp: pytest.MonkeyPatch) -> Callable[[], None]:
    """Every event of the batch is handled, then the checkpoint write fails (the 2018
    market's double counting: its cursor was saved only at the end)."""

    def fail(self: DbCheckpoint, block: int) -> None:
        raise Crash

    mp.setattr(DbCheckpoint, "save", fail)
    return lambda: Indexer(world.escrow).sync() and None


@pytest.mark.parametrize("crash", [crash_between_events, crash_inside_an_event, crash_before_the_checkpoint])
def test_a_crash_mid_batch_neither_loses_nor_double_counts(
    world: World, monkeypatch: pytest.MonkeyPatch, crash: Callable[..., Callable[[], None]]
) -> None:
    from cpchain.market.product.models import Product

    product_id = trades(world)
    Indexer(world.escrow).sync()
    clean = db_state()
    assert Product.objects.get(pk=product_id).sales == 3
    for model in (Record, ChainOrder, SyncState, ProxyNode):
        model.objects.all().delete()
    Product.objects.update(sales=0)

    with monkeypatch.context() as mp, pytest.raises(Crash):
        crash(world, mp)()
    partial = db_state()
    assert 0 < len(partial["records"]) <= len(clean["records"])
    if crash is crash_inside_an_event:
        # the dying event left nothing behind: no record, order not marked paid
        assert not ChainOrder.objects.filter(seller_paid=True).exists()
        assert not Record.objects.filter(event="BuyerConfirmed").exists()

    Indexer(world.escrow).sync()  # the restart
    assert db_state() == clean
    Indexer(world.escrow).sync()
    assert db_state() == clean

"""The chain indexer: applies the escrow's events to the market database, exactly once each.

Owns writing Record, ChainOrder and SyncState, the sales count (Product.sales) and the
chain-derived proxy standing (ProxyNode.deposit, rating_count, rating_sum); nothing else
may write those fields. Must not decide what an event means (cpchain.market.records.rules
does) nor read the chain beyond block times and receipts (EventFollower delivers events).

Exactly once: each event's Record row and all its effects are written in one transaction,
and an event whose (tx hash, log index) is already recorded is skipped. EventFollower
delivers at least once (a crash replays the unfinished batch), so a crash anywhere neither
loses an event nor applies one twice. The checkpoint lives in the same database (SyncState),
so a fresh database starts at the contract's deployment block, never at genesis.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.db.models import F
from eth_utils.address import to_checksum_address

from cpchain.chain.errors import ChainError
from cpchain.chain.escrow import Escrow
from cpchain.chain.events import ChainEvent, EventFollower
from cpchain.market.product.models import Product
from cpchain.market.proxy.models import ProxyNode
from cpchain.market.records import rules
from cpchain.market.records.models import ChainOrder, Record, SyncState
from cpchain.market.records.rules import (
    Effect,
    NewOrder,
    OrderUpdate,
    ProxyDepositTotal,
    ProxyRating,
    ProxySlash,
    SaleCompleted,
)

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "escrow"


class IndexerError(CommandError, ChainError):
    """The indexer cannot run as configured; the message is one line.

    A CommandError for `market-manage sync_chain` and a ChainError for the CLI wrapper, so
    both print the message instead of a traceback.
    """


def contract_identity(escrow: Escrow) -> str:
    d = escrow.deployment
    return f"{d.chain_id}:{d.address}:{d.block}"


class DbCheckpoint:
    """EventFollower's checkpoint in SyncState, bound to one contract deployment."""

    def __init__(self, escrow: Escrow, name: str = CHECKPOINT_NAME) -> None:
        self.name = name
        self.identity = contract_identity(escrow)
        self.start_block = escrow.deployment.block

    def claim(self) -> None:
        """Bind this database to the contract, or refuse if it holds another contract's records."""
        row, _ = SyncState.objects.get_or_create(
            name=self.name, defaults={"block": self.start_block - 1, "contract": self.identity}
        )
        if row.contract != self.identity:
            raise IndexerError(
                f"the market database holds records of contract {row.contract or '(unknown)'}, but the registrar "
                f"names {self.identity}; use a fresh market database for a new contract"
            )

    def load(self) -> int | None:
        row = SyncState.objects.filter(name=self.name, contract=self.identity).first()
        return None if row is None else row.block

    def save(self, block: int) -> None:
        # Never backwards, even with two indexers running by mistake.
        SyncState.objects.filter(name=self.name, contract=self.identity, block__lt=block).update(block=block)


@dataclass(frozen=True)
class TxInfo:
    sender: str
    fee: int


class Indexer:
    """EventFollower's handler: pass the indexer itself to `poll` (or call `handle`, which
    also says whether the event was new)."""

    def __init__(self, escrow: Escrow) -> None:
        self.escrow = escrow
        self.arg_types = rules.arg_types(escrow.contract.abi)
        self._block_times: OrderedDict[int, datetime] = OrderedDict()
        self._txs: OrderedDict[str, TxInfo] = OrderedDict()

    def follower(self, confirmations: int = 0, batch_blocks: int = 2000) -> EventFollower:
        checkpoint = DbCheckpoint(self.escrow)
        checkpoint.claim()
        return EventFollower(self.escrow, checkpoint, confirmations=confirmations, batch_blocks=batch_blocks)

    def sync(self, confirmations: int = 0) -> int:
        """Handle every confirmed event not handled yet; returns how many were delivered."""
        return self.follower(confirmations).poll(self)

    # ------------------------------------------------------------ one event

    def __call__(self, event: ChainEvent) -> None:
        self.handle(event)

    def handle(self, event: ChainEvent) -> bool:
        """Record `event` and apply its effects in one transaction; False if already recorded."""
        if Record.objects.filter(tx_hash=event.tx_hash, log_index=event.log_index).exists():
            return False  # a replay: skip before spending any chain reads on it
        return store_event(event, self.block_time(event.block_number), self.tx_info(event.tx_hash), self.arg_types)

    # ------------------------------------------------------------ chain reads (cached)

    def block_time(self, number: int) -> datetime:
        """The block's timestamp as an aware UTC datetime."""
        cached = self._block_times.get(number)
        if cached is None:
            timestamp = int(self.escrow.w3.eth.get_block(number)["timestamp"])
            cached = datetime.fromtimestamp(timestamp, tz=UTC)
            _remember(self._block_times, number, cached)
        return cached

    def tx_info(self, tx_hash: str) -> TxInfo:
        """Who sent the transaction and what it cost: gas used times the effective gas price."""
        cached = self._txs.get(tx_hash)
        if cached is None:
            receipt = self.escrow.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            cached = TxInfo(
                sender=to_checksum_address(receipt["from"]),
                fee=int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"]),
            )
            _remember(self._txs, tx_hash, cached)
        return cached


def store_event(event: ChainEvent, when: datetime, tx: TxInfo, arg_types: dict[str, dict[str, str]]) -> bool:
    """Write the event's Record and apply its effects, all or nothing; False if already recorded."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                Record.objects.create(
                    tx_hash=event.tx_hash,
                    log_index=event.log_index,
                    block=event.block_number,
                    block_time=when,
                    event=event.name,
                    order_id=event.args.get("id"),
                    actor=rules.actor_of(event.name, event.args),
                    args=rules.json_args(event.name, event.args, arg_types),
                    sender=tx.sender,
                    fee=Decimal(tx.fee),
                )
        except IntegrityError:
            return False  # another indexer recorded it in the meantime
        for effect in rules.effects_of(event.name, event.args):
            apply_effect(effect, event.block_number, when)
    return True


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any, size: int = 256) -> None:
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


# ---------------------------------------------------------------- effects on the database


def apply_effect(effect: Effect, block: int, when: datetime) -> None:
    """Apply one effect; must run inside the event's transaction."""
    if isinstance(effect, NewOrder):
        _create_order(effect, block, when)
    elif isinstance(effect, OrderUpdate):
        _update_order(effect, block, when)
    elif isinstance(effect, SaleCompleted):
        count_sale(effect.order_id)
    elif isinstance(effect, ProxyDepositTotal):
        _proxy(effect.proxy).update(deposit=Decimal(effect.total))
    elif isinstance(effect, ProxySlash):
        # The slash record is already written: the deposit is the last total less the
        # slashes since, wholly from the chain's own events (no delta on a value others
        # might have touched).
        _proxy(effect.proxy).update(deposit=Decimal(proxy_deposit(effect.proxy)))
    elif isinstance(effect, ProxyRating):
        _proxy(effect.proxy).update(rating_count=F("rating_count") + 1, rating_sum=F("rating_sum") + effect.rating)
    else:  # pragma: no cover - the Effect union is closed
        raise TypeError(f"unknown effect {effect!r}")


def _create_order(o: NewOrder, block: int, when: datetime) -> None:
    ChainOrder.objects.get_or_create(
        order_id=o.order_id,
        defaults={
            "buyer": o.buyer,
            "seller": o.seller,
            "proxy": o.proxy,
            "proxy2": o.proxy2,
            "price": Decimal(o.price),
            "fee": Decimal(o.fee),
            "desc_hash": o.desc_hash,
            "market_hash": o.market_hash,
            "data_hash": o.data_hash,
            "state": int(rules.STATE_AFTER["OrderPlaced"]),
            "end_time": o.end_time,
            "placed_block": block,
            "placed_at": when,
            "updated_block": block,
            "updated_at": when,
        },
    )


def _update_order(u: OrderUpdate, block: int, when: datetime) -> None:
    fields: dict[str, Any] = {"updated_block": block, "updated_at": when}
    if u.state is not None:
        fields["state"] = int(u.state)
    if u.end_time is not None:
        fields["end_time"] = u.end_time
    if u.dispute_end is not None:
        fields["dispute_end"] = u.dispute_end
    if u.verdict is not None:
        fields["verdict"] = int(u.verdict)
    if not ChainOrder.objects.filter(order_id=u.order_id).update(**fields):
        log.warning("event for order %s, which has no OrderPlaced record", u.order_id)


def count_sale(order_id: int) -> bool:
    """Mark the order's seller paid and count one sale of its product, at most once per order.

    Returns whether a sale was counted. An order for a product the market does not list is
    still marked (its buyer completed a purchase) but counts towards no product.
    """
    if not ChainOrder.objects.filter(order_id=order_id, seller_paid=False).update(seller_paid=True):
        return False
    desc_hash = ChainOrder.objects.filter(order_id=order_id).values_list("desc_hash", flat=True).get()
    products = Product.objects.filter(desc_hash=desc_hash)
    for pk in products.values_list("pk", flat=True):
        transaction.on_commit(lambda pk=pk: _reindex(pk))  # type: ignore[misc]
    products.update(sales=F("sales") + 1)
    return True


def _reindex(product_pk: int) -> None:
    """Refresh the product in the search index (sales is a sort key) once the count is durable."""
    from cpchain.market.search import SearchError, get_backend

    product = Product.objects.filter(pk=product_pk).first()
    if product is None:
        return
    try:
        get_backend().index(product)
    except SearchError as exc:  # the count is stored; a reindex will catch the index up
        log.warning("search index not updated for product %s: %s", product.market_hash, exc)


def _proxy(address: str) -> Any:
    """A queryset of the proxy's one registry row, created (with no host) if missing."""
    ProxyNode.objects.get_or_create(address=address)
    return ProxyNode.objects.filter(address=address)


def proxy_deposit(address: str) -> int:
    """The proxy's deposit according to the recorded events (see rules.deposit_after)."""
    rows = (
        Record.objects.filter(actor=address, event__in=rules.DEPOSIT_EVENTS)
        .order_by("-block", "-log_index")
        .values_list("event", "args")
    )
    history: list[tuple[str, dict[str, Any]]] = []
    for name, args in rows.iterator():
        history.append((name, args))
        if name != "ProxySlashed":
            break
    return rules.deposit_after(history)

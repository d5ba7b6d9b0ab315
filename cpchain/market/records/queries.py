"""What the rest of the market may ask of the chain records: who may review, whose orders,
which contract events. Read-only; the indexer is the only writer of these tables.

Addresses are compared in their EIP-55 checksum form, the only form the indexer stores, so
a lowercase address from a client still matches (the 2018 market compared lowercase
un-prefixed strings with checksummed ones and never matched).
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from eth_utils.address import is_hex_address, to_checksum_address

from cpchain.market.records.models import ChainOrder, Record
from cpchain.types import OrderState

MAX_ORDER_ID = 2**63 - 1  # ChainOrder.order_id is a signed 64-bit column
ROLES = ("buyer", "seller", "proxy")


def checksum_or_none(address: object) -> str | None:
    if not isinstance(address, str) or not address.startswith("0x") or not is_hex_address(address):
        return None
    return str(to_checksum_address(address))


def may_review(user_address: str, order_id: int) -> ChainOrder | None:
    """The order if `user_address` is its buyer and the purchase completed (seller paid).

    A completed purchase is one the indexer saw end with the seller paid: the buyer
    confirmed, the confirm window ran out after delivery, or a dispute was settled in the
    seller's favour. Callers still check that the order's `market_hash` is the reviewed
    product's. None for anyone else, any other order, or malformed input.
    """
    address = checksum_or_none(user_address)
    if address is None or not isinstance(order_id, int) or not 0 <= order_id <= MAX_ORDER_ID:
        return None
    order: ChainOrder | None = ChainOrder.objects.filter(order_id=order_id, buyer=address, seller_paid=True).first()
    return order


def party_filter(address: str, role: str | None = None) -> Q:
    """Orders in which `address` (checksummed) holds `role`, or any role when None."""
    by_role = {
        "buyer": Q(buyer=address),
        "seller": Q(seller=address),
        "proxy": Q(proxy=address) | Q(proxy2=address),
    }
    if role is None:
        return by_role["buyer"] | by_role["seller"] | by_role["proxy"]
    return by_role[role]


def orders_of(address: str, role: str | None = None, state: OrderState | None = None) -> QuerySet[ChainOrder]:
    """The orders of `address`, newest first."""
    orders = ChainOrder.objects.filter(party_filter(address, role))
    if state is not None:
        orders = orders.filter(state=int(state))
    return orders.order_by("-order_id")


def order_for_party(address: str, order_id: int) -> ChainOrder | None:
    if not 0 <= order_id <= MAX_ORDER_ID:
        return None
    order: ChainOrder | None = ChainOrder.objects.filter(party_filter(address), order_id=order_id).first()
    return order


def transactions(address: str | None = None, order_id: int | None = None) -> QuerySet[Record]:
    """Contract events, newest first: those of one order, and/or those concerning `address`
    (it acted, sent the transaction, or is a party of the event's order)."""
    records = Record.objects.all()
    if order_id is not None:
        records = records.filter(order_id=order_id)
    if address is not None:
        own_orders = ChainOrder.objects.filter(party_filter(address)).values("order_id")
        records = records.filter(Q(actor=address) | Q(sender=address) | Q(order_id__in=own_orders))
    return records.order_by("-block", "-log_index")

"""The records API: a caller's own orders (as the indexer saw them on chain) and the
contract's public event log.

Owns reading the records for clients; must not write them (the indexer does). Orders are
shown only to their parties; contract events are public, as they are on chain.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.market.api import ApiError, IsWalletUser, page_params, page_response
from cpchain.market.product.models import Product
from cpchain.market.records.models import ChainOrder, Record
from cpchain.market.records.queries import (
    MAX_ORDER_ID,
    ROLES,
    checksum_or_none,
    order_for_party,
    orders_of,
    transactions,
)
from cpchain.types import OrderState, Verdict

STATE_NAMES = [s.name.lower() for s in OrderState]


class TransactionOut(serializers.Serializer):
    tx_hash = serializers.CharField()
    log_index = serializers.IntegerField()
    block = serializers.IntegerField()
    block_time = serializers.DateTimeField(allow_null=True, help_text="UTC")
    event = serializers.CharField(help_text="the contract event's name")
    order_id = serializers.IntegerField(allow_null=True)
    actor = serializers.CharField(help_text="the account the event is about (empty for DisputeSettled)")
    sender = serializers.CharField(help_text="the transaction's sender")
    fee = serializers.CharField(allow_null=True, help_text="wei: gas used x effective gas price")
    args = serializers.DictField(help_text="event arguments; integers wider than 8 bits are decimal strings")


class OrderOut(serializers.Serializer):
    order_id = serializers.IntegerField()
    buyer = serializers.CharField()
    seller = serializers.CharField()
    proxy = serializers.CharField()
    proxy2 = serializers.CharField()
    price = serializers.CharField(help_text="wei, as a decimal string")
    fee = serializers.CharField(help_text="wei per proxy, as a decimal string")
    desc_hash = serializers.CharField()
    market_hash = serializers.CharField()
    data_hash = serializers.CharField()
    product_title = serializers.CharField(allow_null=True, help_text="null when the market does not list it")
    state = serializers.ChoiceField(choices=STATE_NAMES)
    verdict = serializers.ChoiceField(choices=[v.name.lower() for v in Verdict])
    end_time = serializers.IntegerField(help_text="unix time of the order's deadline")
    dispute_end = serializers.IntegerField(help_text="unix time the agreement window closes; 0 if never disputed")
    seller_paid = serializers.BooleanField(help_text="the sale completed: counted, and the buyer may review")
    placed_block = serializers.IntegerField()
    placed_at = serializers.DateTimeField(allow_null=True)
    updated_block = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)


class OrderDetailOut(OrderOut):
    events = TransactionOut(many=True, help_text="the order's contract events, oldest first")


class OrderPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = OrderOut(many=True)


class TransactionPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = TransactionOut(many=True)


def _utc(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def transaction_json(r: Record) -> dict[str, Any]:
    return {
        "tx_hash": r.tx_hash,
        "log_index": r.log_index,
        "block": r.block,
        "block_time": _utc(r.block_time),
        "event": r.event,
        "order_id": r.order_id,
        "actor": r.actor,
        "sender": r.sender,
        "fee": None if r.fee is None else str(int(r.fee)),
        "args": r.args,
    }


def order_json(o: ChainOrder, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "buyer": o.buyer,
        "seller": o.seller,
        "proxy": o.proxy,
        "proxy2": o.proxy2,
        "price": str(int(o.price)),
        "fee": str(int(o.fee)),
        "desc_hash": o.desc_hash,
        "market_hash": o.market_hash,
        "data_hash": o.data_hash,
        "product_title": titles.get(o.desc_hash),
        "state": OrderState(o.state).name.lower(),
        "verdict": Verdict(o.verdict).name.lower(),
        "end_time": o.end_time,
        "dispute_end": o.dispute_end,
        "seller_paid": o.seller_paid,
        "placed_block": o.placed_block,
        "placed_at": _utc(o.placed_at),
        "updated_block": o.updated_block,
        "updated_at": _utc(o.updated_at),
    }


def product_titles(orders: list[ChainOrder]) -> dict[str, str]:
    """desc_hash -> title of the listed products among `orders` (one query per page)."""
    hashes = {o.desc_hash for o in orders}
    return dict(Product.objects.filter(desc_hash__in=hashes).values_list("desc_hash", "title"))


# ---------------------------------------------------------------- query parameters


def role_param(request: Request) -> str | None:
    role = request.query_params.get("role") or None
    if role is not None and role not in ROLES:
        raise ApiError(f"role must be one of {', '.join(ROLES)}")
    return role


def state_param(request: Request) -> OrderState | None:
    raw = (request.query_params.get("state") or "").strip().lower()
    if not raw:
        return None
    if raw.isdigit() and int(raw) in OrderState._value2member_map_:
        return OrderState(int(raw))
    if raw in STATE_NAMES:
        return OrderState[raw.upper()]
    raise ApiError(f"state must be one of {', '.join(STATE_NAMES)} (or its number)")


def address_param(request: Request) -> str | None:
    raw = request.query_params.get("address")
    if not raw:
        return None
    address = checksum_or_none(raw)
    if address is None:
        raise ApiError("address must be a 0x-prefixed 20-byte hex address")
    return address


def order_id_param(request: Request) -> int | None:
    raw = request.query_params.get("order_id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) > MAX_ORDER_ID:
        raise ApiError(f"order_id must be an integer between 0 and {MAX_ORDER_ID}")
    return int(raw)


PAGE_PARAMETERS = [OpenApiParameter("page", int), OpenApiParameter("page_size", int)]


# ---------------------------------------------------------------- views


class OrderListView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(
        parameters=[
            OpenApiParameter("role", str, enum=list(ROLES), description="only orders where you hold this role"),
            OpenApiParameter("state", str, enum=STATE_NAMES, description="only orders in this state"),
            *PAGE_PARAMETERS,
        ],
        responses={200: OrderPage},
    )
    def get(self, request: Request) -> Response:
        """Your orders (as buyer, seller or proxy), newest first."""
        role, state = role_param(request), state_param(request)
        page, size = page_params(request)
        orders = orders_of(request.user.address, role, state)
        rows = list(orders[(page - 1) * size : page * size])
        titles = product_titles(rows)
        return page_response(request, orders.count(), [order_json(o, titles) for o in rows], page, size)


class OrderDetailView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(responses={200: OrderDetailOut})
    def get(self, request: Request, order_id: int) -> Response:
        """One of your orders with its contract events; 404 if you are not one of its parties."""
        order = order_for_party(request.user.address, order_id)
        if order is None:
            raise ApiError(f"no order {order_id} among your orders", code="not_found", status_code=404)
        body = order_json(order, product_titles([order]))
        events = Record.objects.filter(order_id=order_id).order_by("block", "log_index")
        body["events"] = [transaction_json(r) for r in events]
        return Response(body)


class TransactionListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("address", str, description="events this account acted in, sent, or whose order it is in"),
            OpenApiParameter("order_id", int, description="events of this order"),
            *PAGE_PARAMETERS,
        ],
        responses={200: TransactionPage},
    )
    def get(self, request: Request) -> Response:
        """The escrow contract's events as indexed, newest first (public, as on chain)."""
        address, order_id = address_param(request), order_id_param(request)
        page, size = page_params(request)
        records = transactions(address, order_id)
        rows = records[(page - 1) * size : page * size]
        return page_response(request, records.count(), [transaction_json(r) for r in rows], page, size)

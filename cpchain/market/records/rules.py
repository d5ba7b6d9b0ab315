"""What each escrow event means for the market, as pure functions over plain data.

Owns the event -> effect rules of the chain indexer (which state an event leaves its order
in, when a sale is complete, how a proxy's deposit changes) and the JSON form of event
arguments. No Django, no chain access: cpchain.market.records.indexer applies the effects
to the database. The rules follow contracts/PdashEscrow.sol:

- a sale is complete, and the seller paid, exactly when the order reaches Finished
  (BuyerConfirmed, or OrderTimedOut into Finished) or a dispute settles with the buyer at
  fault (`_settle` pays the seller unless the verdict is SELLER_AT_FAULT). A timeout into
  Settled is always followed by DisputeSettled in the same transaction, so only the latter
  counts;
- ProxyDeposited and ProxyWithdrawn carry the new total; ProxySlashed carries the amount
  taken, so the deposit after it is the last total less the slashes since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from cpchain.types import OrderState, Verdict, market_hash_of

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class NewOrder:
    order_id: int
    buyer: str
    seller: str
    proxy: str
    proxy2: str
    price: int
    fee: int
    desc_hash: str  # 64 lowercase hex digits, as Product.desc_hash
    market_hash: str
    data_hash: str
    end_time: int


@dataclass(frozen=True)
class OrderUpdate:
    """New values for an order's mutable fields (None: unchanged)."""

    order_id: int
    state: OrderState | None = None
    end_time: int | None = None
    dispute_end: int | None = None
    verdict: Verdict | None = None


@dataclass(frozen=True)
class SaleCompleted:
    """The seller was paid: count one sale of the product and let the buyer review it."""

    order_id: int


@dataclass(frozen=True)
class ProxyDepositTotal:
    """The proxy's bonded deposit is now `total` wei."""

    proxy: str
    total: int


@dataclass(frozen=True)
class ProxySlash:
    """`amount` wei was taken from the proxy's deposit."""

    proxy: str
    amount: int


@dataclass(frozen=True)
class ProxyRating:
    proxy: str
    rating: int


Effect = NewOrder | OrderUpdate | SaleCompleted | ProxyDepositTotal | ProxySlash | ProxyRating

# The state an order is in right after each event that always leads to the same state.
STATE_AFTER: dict[str, OrderState] = {
    "OrderPlaced": OrderState.CREATED,
    "SellerConfirmed": OrderState.SELLER_CONFIRMED,
    "ProxyFetched": OrderState.PROXY_FETCHED,
    "ProxyDelivered": OrderState.PROXY_DELIVERED,
    "BuyerConfirmed": OrderState.FINISHED,
    "BuyerDisputed": OrderState.DISPUTED,
    "OrderWithdrawn": OrderState.WITHDRAWN,
    "DisputeSettled": OrderState.SETTLED,
}

# The account an event is about (the acting party, or the proxy whose standing changed).
ACTOR_ARG: dict[str, str] = {
    "OrderPlaced": "buyer",
    "SellerConfirmed": "seller",
    "ProxyFetched": "proxy",
    "ProxyDelivered": "proxy",
    "BuyerConfirmed": "buyer",
    "OrderWithdrawn": "by",
    "OrderTimedOut": "by",
    "BuyerDisputed": "buyer",
    "ProxyRuled": "proxy",
    "VerdictAnswered": "party",
    "ArbiterRuled": "arbiter",
    "ProxyRated": "rater",
    "ProxyDeposited": "proxy",
    "ProxyWithdrawRequested": "proxy",
    "ProxyWithdrawn": "proxy",
    "ProxySlashed": "proxy",
    "PayoutDeferred": "to",
    "PayoutClaimed": "to",
    "ArbiterProposed": "current",
    "ArbiterChanged": "current",
}

VERDICT_EVENTS = ("ProxyRuled", "ArbiterRuled", "DisputeSettled")
DEPOSIT_EVENTS = ("ProxyDeposited", "ProxyWithdrawn", "ProxySlashed")


def hex32(value: bytes) -> str:
    return bytes(value).hex()


def settlement_pays_seller(verdict: Verdict) -> bool:
    """`_settle` pays the party in the right: the seller unless the seller is at fault."""
    if verdict is Verdict.NONE:
        raise ValueError("a dispute cannot settle without a verdict")
    return verdict is not Verdict.SELLER_AT_FAULT


def pays_seller(name: str, args: Mapping[str, Any]) -> bool:
    """Whether this event completes a sale (the seller receives the price less fees)."""
    if name == "BuyerConfirmed":
        return True
    if name == "OrderTimedOut":
        return OrderState(args["toState"]) is OrderState.FINISHED
    if name == "DisputeSettled":
        return settlement_pays_seller(Verdict(args["verdict"]))
    return False


def new_order(args: Mapping[str, Any]) -> NewOrder:
    desc_hash = bytes(args["descHash"])
    return NewOrder(
        order_id=int(args["id"]),
        buyer=to_checksum_address(args["buyer"]),
        seller=to_checksum_address(args["seller"]),
        proxy=to_checksum_address(args["proxy"]),
        proxy2=to_checksum_address(args["proxy2"]),
        price=int(args["price"]),
        fee=int(args["fee"]),
        desc_hash=hex32(desc_hash),
        market_hash=market_hash_of(desc_hash),
        data_hash=hex32(args["dataHash"]),
        end_time=int(args["endTime"]),
    )


def order_update(name: str, args: Mapping[str, Any]) -> OrderUpdate | None:
    """How an order event changes the order's mutable fields; None if it changes none."""
    verdict = Verdict(args["verdict"]) if name in VERDICT_EVENTS else None
    if name not in STATE_AFTER and name != "OrderTimedOut" and verdict is None:
        return None
    order_id = int(args["id"])
    if name == "OrderTimedOut":
        return OrderUpdate(order_id, state=OrderState(args["toState"]))
    if name == "ProxyDelivered":
        return OrderUpdate(order_id, state=STATE_AFTER[name], end_time=int(args["confirmDeadline"]))
    if name == "BuyerDisputed":
        return OrderUpdate(order_id, state=STATE_AFTER[name], dispute_end=int(args["disputeEnd"]))
    if name == "OrderPlaced":
        return None  # the order itself: see new_order
    return OrderUpdate(order_id, state=STATE_AFTER.get(name), verdict=verdict)


def effects_of(name: str, args: Mapping[str, Any]) -> list[Effect]:
    """Every effect of one event, in the order they must be applied."""
    if name == "OrderPlaced":
        return [new_order(args)]
    effects: list[Effect] = []
    update = order_update(name, args)
    if update is not None:
        effects.append(update)
    if pays_seller(name, args):
        effects.append(SaleCompleted(int(args["id"])))
    if name in ("ProxyDeposited", "ProxyWithdrawn"):
        total = args["total"] if name == "ProxyDeposited" else args["remaining"]
        effects.append(ProxyDepositTotal(to_checksum_address(args["proxy"]), int(total)))
    elif name == "ProxySlashed":
        effects.append(ProxySlash(to_checksum_address(args["proxy"]), int(args["amount"])))
    elif name == "ProxyRated":
        effects.append(ProxyRating(to_checksum_address(args["proxy"]), int(args["rating"])))
    return effects


def actor_of(name: str, args: Mapping[str, Any]) -> str:
    key = ACTOR_ARG.get(name)
    return to_checksum_address(args[key]) if key is not None else ""


def deposit_after(history: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """A proxy's deposit after its deposit events `history`, newest first.

    Reads back to the newest event that states a total (ProxyDeposited, ProxyWithdrawn) and
    takes off every slash after it. Amounts may be ints or decimal strings (Record.args).
    """
    slashed = 0
    for name, args in history:
        if name == "ProxySlashed":
            slashed += int(args["amount"])
        elif name in ("ProxyDeposited", "ProxyWithdrawn"):
            total = int(args["total"] if name == "ProxyDeposited" else args["remaining"])
            if slashed > total:
                raise ValueError(f"slashed {slashed} wei from a deposit of {total}")
            return total - slashed
        else:
            raise ValueError(f"{name} is not a deposit event")
    raise ValueError("a proxy was slashed with no deposit on record")


# ---------------------------------------------------------------- event arguments as JSON


def arg_types(abi: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """event name -> argument name -> ABI type, from a contract ABI."""
    return {
        str(item["name"]): {str(i["name"]): str(i["type"]) for i in item["inputs"]}
        for item in abi
        if item.get("type") == "event"
    }


def json_value(value: Any, abi_type: str) -> Any:
    """One argument in a JSON form that loses nothing on any database or client.

    uint8 fields (states, verdicts, ratings) stay numbers; wider integers (wei, times, ids)
    become decimal strings, because JSON numbers above 2**53 lose precision in JavaScript
    and in MySQL's JSON type. bytesN become lowercase hex without 0x, addresses checksums.
    """
    if abi_type == "bool":
        return bool(value)
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type.startswith("bytes"):
        return bytes(value).hex()
    if abi_type in ("uint8", "int8"):
        return int(value)
    if abi_type.startswith(("uint", "int")):
        return str(int(value))
    return str(value)


def json_args(name: str, args: Mapping[str, Any], types: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    event_types = types.get(name, {})
    return {key: json_value(value, event_types.get(key, "")) for key, value in args.items()}

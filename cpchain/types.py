"""Types shared by every component: order states, verdicts, order terms and status.

Owns plain data only; no I/O. The numbering matches contracts/PdashEscrow.sol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class OrderState(IntEnum):
    CREATED = 0
    SELLER_CONFIRMED = 1
    PROXY_FETCHED = 2
    PROXY_DELIVERED = 3
    FINISHED = 4
    DISPUTED = 5
    SETTLED = 6
    WITHDRAWN = 7

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({OrderState.FINISHED, OrderState.SETTLED, OrderState.WITHDRAWN})


class Verdict(IntEnum):
    NONE = 0
    BUYER_AT_FAULT = 1
    SELLER_AT_FAULT = 2


class Role(IntEnum):
    BUYER = 0
    SELLER = 1
    PROXY = 2
    ARBITER = 3
    OTHER = 4


@dataclass(frozen=True)
class OrderTerms:
    """The immutable terms of an order (the contract's `Order` struct, committed by hash)."""

    buyer: str
    seller: str
    proxy: str
    proxy2: str
    price: int
    fee: int
    desc_hash: bytes
    data_hash: bytes
    buyer_key: bytes

    def as_tuple(self) -> tuple[str, str, str, str, int, int, bytes, bytes, bytes]:
        return (
            self.buyer,
            self.seller,
            self.proxy,
            self.proxy2,
            self.price,
            self.fee,
            self.desc_hash,
            self.data_hash,
            self.buyer_key,
        )

    def role_of(self, address: str) -> list[Role]:
        """Every role `address` holds in this order (a proxy may be both proxies)."""
        a = address.lower()
        roles = []
        if a == self.buyer.lower():
            roles.append(Role.BUYER)
        if a == self.seller.lower():
            roles.append(Role.SELLER)
        if a in (self.proxy.lower(), self.proxy2.lower()):
            roles.append(Role.PROXY)
        return roles


@dataclass(frozen=True)
class OrderStatus:
    """The mutable part of an order, as stored in the contract's packed status slot."""

    state: OrderState
    end_time: int
    dispute_end: int = 0
    verdict: Verdict = Verdict.NONE
    buyer_agreed: bool = False
    seller_agreed: bool = False
    appealed: bool = False
    buyer_rated: bool = False
    seller_rated: bool = False


@dataclass(frozen=True)
class Order:
    id: int
    terms: OrderTerms
    status: OrderStatus

"""Types shared by every component: order states, verdicts, order terms and status, and the
product description whose hash orders commit to.

Owns plain data only; no I/O. The numbering matches contracts/PdashEscrow.sol.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from eth_utils.crypto import keccak


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


class ProductType(StrEnum):
    FILE = "file"
    STREAM = "stream"


PRODUCT_SCHEMA_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE = re.compile(r"[0-9a-f]{32}")


class InvalidProduct(ValueError):
    """A product description with a missing, malformed or out-of-range field."""


@dataclass(frozen=True)
class ProductDescription:
    """What a seller publishes and signs; its keccak hash is the order's on-chain `descHash`.

    Every field a buyer relies on is inside, including the ciphertext's SHA-256 (`data_hash`,
    equal to the order's `dataHash`) and the storage type, so neither the market nor a proxy
    can alter them unnoticed. The encoding is canonical JSON (sorted keys, no spaces), which
    is unambiguous where the 2018 original concatenated fields without separators. `nonce`
    makes two otherwise identical listings distinct.
    """

    seller: str
    title: str
    ptype: ProductType
    description: str
    price: int
    category: str
    tags: tuple[str, ...]
    data_hash: str
    storage_type: str
    size: int
    start_date: int = 0
    end_date: int = 0
    nonce: str = ""

    def __post_init__(self) -> None:
        problems = _product_problems(self)
        if problems:
            raise InvalidProduct(problems[0])

    def to_dict(self) -> dict[str, object]:
        return {
            "v": PRODUCT_SCHEMA_VERSION,
            "seller": self.seller,
            "title": self.title,
            "ptype": str(self.ptype),
            "description": self.description,
            "price": self.price,
            "category": self.category,
            "tags": list(self.tags),
            "data_hash": self.data_hash,
            "storage_type": self.storage_type,
            "size": self.size,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "nonce": self.nonce,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProductDescription:
        """Build from plain data (e.g. a request body); InvalidProduct on any problem."""
        if not isinstance(data, Mapping):
            raise InvalidProduct("product description must be an object")
        expected = set(cls.__dataclass_fields__) | {"v"}
        unknown = set(data) - expected
        if unknown:
            raise InvalidProduct(f"unknown product field {sorted(unknown)[0]!r}")
        if data.get("v", PRODUCT_SCHEMA_VERSION) != PRODUCT_SCHEMA_VERSION:
            raise InvalidProduct(f"product schema version must be {PRODUCT_SCHEMA_VERSION}")
        kwargs = {k: v for k, v in data.items() if k != "v"}
        missing = [k for k in ("seller", "title", "ptype", "price", "data_hash", "storage_type") if k not in kwargs]
        if missing:
            raise InvalidProduct(f"product field {missing[0]!r} is required")
        tags = kwargs.get("tags", [])
        if not isinstance(tags, (list, tuple)):
            raise InvalidProduct("tags must be a list of strings")
        kwargs["tags"] = tuple(tags)
        try:
            kwargs["ptype"] = ProductType(str(kwargs["ptype"]))
        except ValueError:
            raise InvalidProduct("ptype must be 'file' or 'stream'") from None
        kwargs.setdefault("description", "")
        kwargs.setdefault("category", "")
        kwargs.setdefault("size", 0)
        return cls(**kwargs)  # type: ignore[arg-type]

    def canonical(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def desc_hash(self) -> bytes:
        """keccak-256 of the canonical encoding: the `descHash` an order commits to."""
        return bytes(keccak(self.canonical()))

    def market_hash(self) -> str:
        """The product's public id: URL-safe base64 of `desc_hash`, unpadded (43 characters)."""
        return market_hash_of(self.desc_hash())


def market_hash_of(desc_hash: bytes) -> str:
    return base64.urlsafe_b64encode(desc_hash).rstrip(b"=").decode()


def desc_hash_of(market_hash: str) -> bytes:
    """Inverse of market_hash_of; InvalidProduct if `market_hash` is not one."""
    if not isinstance(market_hash, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", market_hash):
        raise InvalidProduct("market hash must be 43 URL-safe base64 characters")
    return base64.urlsafe_b64decode(market_hash + "=")


MAX_TITLE = 100
MAX_DESCRIPTION = 10_000
MAX_TAGS = 10
MAX_TAG = 40
MAX_CATEGORY = 100
MAX_PRICE = 2**128


def _product_problems(p: ProductDescription) -> list[str]:
    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    problems = []
    if not isinstance(p.seller, str) or not _ADDRESS.fullmatch(p.seller):
        problems.append("seller must be a 0x-prefixed address")
    if not isinstance(p.title, str) or not p.title.strip() or len(p.title) > MAX_TITLE:
        problems.append(f"title must be 1..{MAX_TITLE} characters")
    if not isinstance(p.description, str) or len(p.description) > MAX_DESCRIPTION:
        problems.append(f"description must be at most {MAX_DESCRIPTION} characters")
    if not is_int(p.price) or not 0 < p.price < MAX_PRICE:
        problems.append("price must be a positive integer number of wei")
    if not isinstance(p.category, str) or len(p.category) > MAX_CATEGORY:
        problems.append(f"category must be at most {MAX_CATEGORY} characters")
    if len(p.tags) > MAX_TAGS or not all(
        isinstance(t, str) and 0 < len(t) <= MAX_TAG and t == t.strip() and "," not in t for t in p.tags
    ):
        problems.append(f"tags must be at most {MAX_TAGS} non-empty strings of at most {MAX_TAG} characters")
    elif len(set(p.tags)) != len(p.tags):
        problems.append("tags must not repeat")
    if not isinstance(p.data_hash, str) or not _HEX64.fullmatch(p.data_hash):
        problems.append("data_hash must be 64 lowercase hex characters (SHA-256 of the ciphertext)")
    if not isinstance(p.storage_type, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", p.storage_type):
        problems.append("storage_type must be a plugin name")
    if not is_int(p.size) or p.size < 0:
        problems.append("size must be a non-negative integer")
    if not is_int(p.start_date) or not is_int(p.end_date) or p.start_date < 0 or p.end_date < 0:
        problems.append("start_date and end_date must be non-negative unix times")
    elif p.end_date and p.end_date < p.start_date:
        problems.append("end_date must not be before start_date")
    if not isinstance(p.nonce, str) or not (p.nonce == "" or _NONCE.fullmatch(p.nonce)):
        problems.append("nonce must be 32 lowercase hex characters")
    return problems

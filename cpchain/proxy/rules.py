"""What a proxy accepts, as pure functions of a request, the order's terms and its status.

Owns the decisions (which request may make the proxy work, serve or delete), the byte-range
arithmetic of delivery tracking and the retention rule. No I/O: callers read the chain,
the database and the clock, and pass the values in, so every rule is tested without a
network. Must not import Twisted, sockets or web3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cpchain.chain.lifecycle import Action, Windows, refusal
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import Domain, KeyGrant, ProtocolError, check_key_grant
from cpchain.storage.base import Locator, LocatorError
from cpchain.types import InvalidProduct, OrderState, OrderStatus, OrderTerms, ProductDescription, ProductType

# States in which the order's buyer may fetch the key and download: after the proxy
# fetched, and until a refund (Withdrawn). A finished or settled sale may be re-downloaded
# until the retention period removes the file.
SERVABLE_STATES = frozenset(
    {OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.FINISHED, OrderState.DISPUTED, OrderState.SETTLED}
)

# States in which a SELLER_DATA is still worth acting on although proxyFetched happened: the
# order's other proxy claimed first, and this one fetches a copy so the buyer has a second
# source (the secondary proxy of the order). Its claims then find the work already done.
BACKUP_STATES = frozenset({OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED})

_CONTRACT_REASONS = {
    "only proxy": pb.NOT_THIS_PROXY,
    "wrong state": pb.WRONG_STATE,
    "deadline passed": pb.DEADLINE_PASSED,
}


class Refused(ProtocolError):
    """A well-formed request this proxy must not act on (status says why)."""


def is_proxy_of(terms: OrderTerms, address: str) -> bool:
    return address.lower() in (terms.proxy.lower(), terms.proxy2.lower())


@dataclass(frozen=True)
class SellerOffer:
    """A SELLER_DATA request that passed every check: what to fetch and hand to the buyer."""

    product: ProductDescription
    locator: Locator
    grant: KeyGrant

    @property
    def max_bytes(self) -> int | None:
        return self.product.size or None


def check_identity(terms: OrderTerms, signer: str, proxy: str, *, seller: bool) -> None:
    """The signer is the order's seller (or buyer) and this proxy serves the order."""
    role, expected = ("seller", terms.seller) if seller else ("buyer", terms.buyer)
    if signer.lower() != expected.lower():
        raise Refused(f"signer {signer} is not the order's {role}", pb.WRONG_SIGNER)
    if not is_proxy_of(terms, proxy):
        raise Refused(f"this proxy ({proxy}) is not the order's proxy", pb.NOT_THIS_PROXY)


def check_seller_request(
    data: pb.SellerData,
    *,
    terms: OrderTerms,
    status: OrderStatus,
    signer: str,
    proxy: str,
    domain: Domain,
    now: int,
    windows: Windows,
) -> SellerOffer:
    """Every check of a SELLER_DATA request before any work; Refused/ProtocolError otherwise.

    The order's parties, hashes and state come from the chain, never from the message.
    """
    check_identity(terms, signer, proxy, seller=True)
    if status.state in BACKUP_STATES:
        if now >= status.end_time:  # the other proxy claimed; this one keeps a backup copy
            raise Refused(f"order is {status.state.name}: deadline passed", pb.DEADLINE_PASSED)
    else:
        reason = refusal(Action.PROXY_FETCHED, terms, status, proxy, now, windows)
        if reason is not None:
            raise Refused(f"order is {status.state.name}: {reason}", _CONTRACT_REASONS.get(reason, pb.WRONG_STATE))
    product = parse_product(data.product)
    if product.desc_hash() != terms.desc_hash:
        raise Refused("the product's hash is not the order's descHash", pb.DESC_HASH_MISMATCH)
    if product.seller.lower() != terms.seller.lower():
        raise Refused("the product names another seller", pb.WRONG_SIGNER)
    if product.data_hash != terms.data_hash.hex():
        raise Refused("the product's data hash is not the order's dataHash", pb.DATA_HASH_MISMATCH)
    if product.ptype is not ProductType.FILE:
        raise Refused("this proxy relays files only", pb.MALFORMED)
    try:
        locator = Locator.from_json(data.locator)
    except LocatorError as exc:
        raise Refused(f"locator: {exc}", pb.MALFORMED) from None
    if locator.type != product.storage_type:
        raise Refused(
            f"locator type {locator.type!r} is not the product's storage type {product.storage_type!r}",
            pb.STORAGE_TYPE_MISMATCH,
        )
    grant = check_key_grant(data.key_grant, order_id=data.order_id, terms=terms, domain=domain)
    return SellerOffer(product, locator, grant)


def parse_product(text: str) -> ProductDescription:
    try:
        data = json.loads(text)
        return ProductDescription.from_dict(data)
    except (ValueError, RecursionError, InvalidProduct, TypeError) as exc:
        raise Refused(f"product description: {exc}", pb.MALFORMED) from None


def check_buyer_request(terms: OrderTerms, status: OrderStatus, *, signer: str, proxy: str) -> None:
    """A BUYER_DATA request or a download by this order's buyer, in a state that allows it."""
    check_identity(terms, signer, proxy, seller=False)
    if status.state not in SERVABLE_STATES:
        if status.state in (OrderState.CREATED, OrderState.SELLER_CONFIRMED):
            raise Refused(f"order is {status.state.name}: the data is not fetched yet", pb.NOT_READY)
        raise Refused(f"order is {status.state.name}: nothing to serve", pb.WRONG_STATE)


def fetch_already_claimed(state: OrderState) -> bool:
    """The chain shows proxyFetched happened (by this proxy or the secondary proxy)."""
    return state in SERVABLE_STATES


def delivery_already_claimed(state: OrderState) -> bool:
    return state in (OrderState.PROXY_DELIVERED, OrderState.FINISHED, OrderState.DISPUTED, OrderState.SETTLED)


# ---------------------------------------------------------------- byte ranges

Range = tuple[int, int]  # half-open [start, end)


def merge_ranges(ranges: Iterable[Range], new: Range | None = None) -> list[Range]:
    """Sorted, non-overlapping, non-adjacent ranges covering the same bytes."""
    items = sorted(r for r in [*ranges, *([new] if new else [])] if r[1] > r[0])
    merged: list[Range] = []
    for start, end in items:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing_ranges(ranges: Sequence[Range], size: int) -> list[Range]:
    """The bytes of [0, size) not covered by `ranges` (which must be merged)."""
    gaps: list[Range] = []
    cursor = 0
    for start, end in ranges:
        if start > cursor:
            gaps.append((cursor, min(start, size)))
        cursor = max(cursor, end)
        if cursor >= size:
            break
    if cursor < size:
        gaps.append((cursor, size))
    return [g for g in gaps if g[1] > g[0]]


def fully_served(ranges: Sequence[Range], size: int) -> bool:
    return not missing_ranges(ranges, size)


def parse_range(header: str | None, size: int) -> Range | None:
    """The single byte range a Range header asks for, None for the whole file.

    Raises ValueError for an unsatisfiable range (the caller answers 416). Multiple ranges
    are ignored (the whole file is served), which RFC 9110 allows.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first or last) or not (first.isdigit() or not first) or not (last.isdigit() or not last):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise ValueError("unsatisfiable range")
        return (max(0, size - n), size)
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise ValueError("unsatisfiable range")
    return (start, end)


# ---------------------------------------------------------------- retention


def file_removable(*, state: OrderState | None, fetched_at: int, now: int, retention: int) -> bool:
    """Whether a fetched file may be deleted.

    A file goes once its order reached a final state (paid out or refunded: no one can need
    it for delivery or a dispute), or once it is older than the retention period; never
    while its order is disputed, because it is the evidence of what was delivered.
    `state` None means the order no longer exists on this chain.
    """
    if state is OrderState.DISPUTED:
        return False
    if state is None or state.is_final:
        return True
    return now - fetched_at >= retention

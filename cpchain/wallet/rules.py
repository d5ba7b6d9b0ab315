"""The wallet's decisions as pure functions of plain data: no I/O, no clock, no network.

Owns what the wallet itself decides on top of the contract's lifecycle rules
(cpchain.chain.lifecycle, which it reuses): whether a market listing is genuine, whether a
seller should accept an order, whether a purchase may be placed, received or reviewed, and
which steps the automation takes for an order given the chain's state and the local
record. Callers read the chain, the database and the clocks and pass the values in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cpchain.chain.escrow import EscrowParams
from cpchain.chain.lifecycle import Action, Windows, refusal
from cpchain.crypto.errors import CryptoError
from cpchain.crypto.signing import product_signer
from cpchain.proxy.rules import SERVABLE_STATES
from cpchain.proxy.streams.wire import STORAGE_TYPE as STREAM_STORAGE
from cpchain.proxy.streams.wire import WireError, channel_commitment, is_channel_id
from cpchain.types import (
    InvalidProduct,
    OrderState,
    OrderStatus,
    OrderTerms,
    ProductDescription,
    ProductType,
    Verdict,
)
from cpchain.wallet.errors import InvalidListing

__all__ = [
    "RECEIVABLE_STATES",
    "ROLE_BUYER",
    "ROLE_SELLER",
    "OrderFacts",
    "Policy",
    "Task",
    "backoff",
    "buy_refusal",
    "decide",
    "default_fee",
    "download_names",
    "rate_refusal",
    "receive_refusal",
    "seller_refusal",
    "stream_channel",
    "stream_proxy",
    "verdict_favours",
    "verify_listing",
]

ROLE_BUYER = "buyer"
ROLE_SELLER = "seller"

RECEIVABLE_STATES = SERVABLE_STATES
"""States in which the order's proxy hands the buyer the key and the file."""

# Timeouts worth claiming, per role: the ones that pay the claimant something back.
_TIMEOUT_PAYS = {
    ROLE_BUYER: frozenset(
        {OrderState.CREATED, OrderState.SELLER_CONFIRMED, OrderState.PROXY_FETCHED, OrderState.DISPUTED}
    ),
    ROLE_SELLER: frozenset(
        {OrderState.SELLER_CONFIRMED, OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.DISPUTED}
    ),
}


# --------------------------------------------------------------------------- listings


def verify_listing(info: Mapping[str, object]) -> ProductDescription:
    """The signed description inside a market reply, checked end to end.

    The canonical text must parse to a valid description, re-encode to itself, hash to the
    market hash the market reports, and be signed by its own seller; otherwise
    InvalidListing (the market, or someone between, altered it).
    """
    canonical, signature, market_hash = info.get("canonical"), info.get("signature"), info.get("market_hash")
    if not isinstance(canonical, str) or not isinstance(signature, str) or not isinstance(market_hash, str):
        raise InvalidListing("the market's reply lacks the signed description")
    try:
        product = ProductDescription.from_dict(json.loads(canonical))
    except (ValueError, InvalidProduct) as exc:
        raise InvalidListing(f"the listing's description is invalid: {exc}") from None
    if product.canonical().decode() != canonical:
        raise InvalidListing("the listing's description is not in canonical form")
    if product.market_hash() != market_hash:
        raise InvalidListing("the listing's description does not hash to its market hash")
    try:
        signer = product_signer(canonical.encode(), signature)
    except (CryptoError, ValueError):
        raise InvalidListing("the listing's signature is malformed") from None
    if signer.lower() != product.seller.lower():
        raise InvalidListing(f"the listing is signed by {signer}, not by its seller {product.seller}")
    return product


# --------------------------------------------------------------------------- seller


def seller_refusal(terms: OrderTerms, product: ProductDescription | None, seller: str) -> str | None:
    """Why the seller must not accept (confirm) this order, or None if it is a fair order."""
    if terms.seller.lower() != seller.lower():
        return "this account is not the order's seller"
    if product is None:
        return "the order is not for one of this wallet's products"
    if product.seller.lower() != seller.lower():
        return "the product belongs to another seller"
    if terms.desc_hash != product.desc_hash():
        return "the order commits to another description"
    if terms.data_hash.hex() != product.data_hash:
        return "the order's data hash is not the product's"
    if terms.price < product.price:
        return f"the order pays {terms.price} wei, less than the listed {product.price}"
    if product.ptype is ProductType.STREAM:
        if stream_proxy(product, (terms.proxy, terms.proxy2)) is None:
            return "the order does not name the proxy of the product's channel"
    elif product.ptype is not ProductType.FILE:
        return "only file and stream products are delivered by this wallet"
    return None


# --------------------------------------------------------------------------- streams


def stream_channel(product: ProductDescription) -> str | None:
    """The channel a stream listing names, or None if it is not a well-formed stream listing.

    A stream product's nonce is its channel id (the same shape: 32 lowercase hex characters,
    unique per channel), so the signed description names its channel; the data hash
    commits to that channel on its proxy (cpchain.proxy.streams.wire.channel_commitment).
    """
    if product.ptype is not ProductType.STREAM or product.storage_type != STREAM_STORAGE:
        return None
    return product.nonce if is_channel_id(product.nonce) else None


def stream_proxy(product: ProductDescription, candidates: Sequence[str]) -> str | None:
    """The candidate proxy hosting the stream product's channel (its data hash commits to it), or None."""
    channel = stream_channel(product)
    if channel is None:
        return None
    for proxy in candidates:
        try:
            if channel_commitment(proxy, channel).hex() == product.data_hash:
                return proxy
        except WireError:
            continue
    return None


# --------------------------------------------------------------------------- buyer


def default_fee(price: int) -> int:
    """The proxy fee offered when the buyer names none: 1 % of the price (0 below 100 wei)."""
    return price // 100


def buy_refusal(product: ProductDescription, buyer: str, params: EscrowParams, *, fee: int,
                time_allowed: int) -> str | None:  # fmt: skip
    """Why placing this order would fail (or is pointless), checked before paying."""
    if product.seller.lower() == buyer.lower():
        return "this is your own product"
    if product.ptype is ProductType.STREAM:
        if stream_channel(product) is None:
            return "the stream listing does not name its channel"
    elif product.ptype is not ProductType.FILE:
        return "only file and stream products can be bought with this wallet"
    if fee < 0 or product.price <= 2 * fee:
        return "the price must exceed twice the proxy fee"
    if not params.min_time_allowed <= time_allowed <= params.max_time_allowed:
        return f"the time allowed must be between {params.min_time_allowed} and {params.max_time_allowed} seconds"
    return None


def receive_refusal(state: OrderState) -> str | None:
    if state in RECEIVABLE_STATES:
        return None
    if state in (OrderState.CREATED, OrderState.SELLER_CONFIRMED):
        return "the proxy has not fetched the data yet"
    return f"nothing to receive in state {state.name}"


def rate_refusal(role: str, state: OrderState) -> str | None:
    """A review is for the buyer of a completed purchase (the market checks it again)."""
    if role != ROLE_BUYER:
        return "only the buyer reviews a purchase"
    if state not in (OrderState.FINISHED, OrderState.SETTLED):
        return "the purchase is not complete"
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def download_names(order_id: int, contract: str, title: str) -> tuple[str, str]:
    """(ciphertext file name, plaintext file name) for an order's download, never a path."""
    tag = f"{contract.lower().removeprefix('0x')[:8]}-{order_id}"
    clean = _UNSAFE.sub("_", title).strip(" .")[:80] or "data"
    return f"{tag}.pdash", f"{tag}-{clean}"


# --------------------------------------------------------------------------- automation


class Task(StrEnum):
    IGNORE = "ignore"  # seller: record why the order will not be confirmed
    SELLER_CONFIRM = "confirm"
    DELIVER = "deliver"
    RECEIVE = "receive"
    BUYER_CONFIRM = "buyer-confirm"
    CLAIM_TIMEOUT = "claim-timeout"
    ACCEPT_VERDICT = "accept-verdict"  # agree with a proxy's verdict in this account's favour


@dataclass(frozen=True)
class Policy:
    """What the automation may do on its own."""

    auto_confirm: bool = False  # buyer: confirm once the file is verified and decrypted
    claim_timeouts: bool = True  # claim a timeout that pays this account back
    accept_verdicts: bool = True  # agree with a proxy's verdict in this account's favour (never appeal)
    retry_base: int = 5  # seconds before the first retry of a failed step
    retry_max: int = 300


def backoff(attempts: int, policy: Policy) -> int:
    """Seconds to wait after `attempts` consecutive failures (exponential, capped)."""
    return int(min(policy.retry_max, policy.retry_base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class OrderFacts:
    """What the automation knows about one order, as plain data."""

    role: str
    terms: OrderTerms
    state: OrderState
    end_time: int
    dispute_end: int = 0
    ignored: str = ""  # seller: a reason recorded earlier
    next_try: int = 0  # unix time of the next allowed attempt
    product: ProductDescription | None = None  # seller: the local product the order is for
    received: bool = False  # buyer: downloaded, verified and decrypted (a stream: its key stored)
    verdict: Verdict = Verdict.NONE  # disputed: the proxy's verdict, if given
    agreed: bool = False  # disputed: this account has agreed with the verdict


def verdict_favours(role: str, verdict: Verdict) -> bool:
    """Whether a dispute's verdict is in the favour of the party in `role`."""
    if role == ROLE_BUYER:
        return verdict is Verdict.SELLER_AT_FAULT
    return role == ROLE_SELLER and verdict is Verdict.BUYER_AT_FAULT


def decide(facts: OrderFacts, *, me: str, chain_now: int, wall_now: int, windows: Windows,
           policy: Policy) -> list[Task]:  # fmt: skip
    """The steps due for one order now, in order; [] when nothing is due or it is backing off.

    A buyer receives what it paid for in every state the proxy serves it, final ones
    included (a sale may be finished by the seller's timeout claim before the download).
    In a dispute, a party agrees with a verdict in its favour (the other may still appeal;
    rejecting a verdict is a person's decision, never the automation's) and claims the
    timeout only if the outcome pays it.
    """
    if wall_now < facts.next_try:
        return []
    status = OrderStatus(facts.state, facts.end_time, facts.dispute_end, verdict=facts.verdict,
                         buyer_agreed=facts.agreed and facts.role == ROLE_BUYER,
                         seller_agreed=facts.agreed and facts.role == ROLE_SELLER)  # fmt: skip

    def allowed(action: Action) -> bool:
        return refusal(action, facts.terms, status, me, chain_now, windows) is None

    tasks: list[Task] = []
    if facts.role == ROLE_BUYER and not facts.received and facts.state in RECEIVABLE_STATES:
        expired = facts.state is OrderState.PROXY_FETCHED and chain_now >= facts.end_time
        if not expired:
            tasks.append(Task.RECEIVE)
    if facts.state.is_final:
        return tasks
    if facts.role == ROLE_SELLER:
        if facts.state is OrderState.CREATED and allowed(Action.SELLER_CONFIRM):
            reason = seller_refusal(facts.terms, facts.product, me)
            if reason is None:
                tasks += [Task.SELLER_CONFIRM, Task.DELIVER]
            elif not facts.ignored:
                tasks.append(Task.IGNORE)
        elif facts.state is OrderState.SELLER_CONFIRMED and chain_now < facts.end_time:
            tasks.append(Task.DELIVER)
    elif (
        facts.role == ROLE_BUYER
        and policy.auto_confirm
        and facts.state is OrderState.PROXY_DELIVERED
        and (facts.received or Task.RECEIVE in tasks)
        and allowed(Action.BUYER_CONFIRM)
    ):
        tasks.append(Task.BUYER_CONFIRM)
    disputed = facts.state is OrderState.DISPUTED
    favoured = verdict_favours(facts.role, facts.verdict)
    if disputed and policy.accept_verdicts and favoured and allowed(Action.ANSWER_VERDICT):
        tasks.append(Task.ACCEPT_VERDICT)
    lost = disputed and facts.verdict is not Verdict.NONE and not favoured
    if (
        policy.claim_timeouts
        and facts.state in _TIMEOUT_PAYS.get(facts.role, ())
        and not lost
        and allowed(Action.CLAIM_TIMEOUT)
    ):
        tasks.append(Task.CLAIM_TIMEOUT)
    return tasks

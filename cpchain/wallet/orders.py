"""The account's orders: mirrored from the chain's events into the local database, and the
order actions buyers and sellers share, each checked against the lifecycle before sending.

Owns following the escrow's events for one account (checkpoint in the wallet database,
so a restarted wallet resumes where it stopped), refreshing an order's state and
deadlines, and `Party`: the guard that refuses a forbidden action with the contract's own
reason before any transaction is sent, and the actions open to both roles (claim a
timeout, answer a verdict, rate the proxy, claim deferred payouts). Must not hold
role-specific logic (cpchain.wallet.seller and .buyer do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from web3.types import TxReceipt

from cpchain.chain.errors import UnknownOrder as ChainUnknownOrder
from cpchain.chain.escrow import PartyAgent
from cpchain.chain.events import ChainEvent, EventFollower
from cpchain.chain.lifecycle import Action, refusal
from cpchain.types import Order, OrderState, market_hash_of
from cpchain.wallet.context import WalletContext
from cpchain.wallet.db import OrderRecord
from cpchain.wallet.errors import ForbiddenAction, UnknownOrder, WalletError, translated
from cpchain.wallet.rules import ROLE_BUYER, ROLE_SELLER

__all__ = ["ORDER_EVENTS", "OrderBook", "Party"]

log = logging.getLogger(__name__)

ORDER_EVENTS = (
    "OrderPlaced", "SellerConfirmed", "ProxyFetched", "ProxyDelivered", "BuyerConfirmed", "OrderWithdrawn",
    "OrderTimedOut", "BuyerDisputed", "ProxyRuled", "VerdictAnswered", "ArbiterRuled", "DisputeSettled",
    "ProxyRated",
)  # fmt: skip


class _Checkpoint:
    """cpchain.chain.events.Checkpoint in the wallet database, per contract and account."""

    def __init__(self, ctx: WalletContext) -> None:
        self.ctx = ctx

    def load(self) -> int | None:
        return self.ctx.db.checkpoint(self.ctx.contract, self.ctx.address)

    def save(self, block: int) -> None:
        self.ctx.db.save_checkpoint(self.ctx.contract, self.ctx.address, block)


class OrderBook:
    """The account's orders in the local database, kept in step with the chain."""

    def __init__(self, ctx: WalletContext) -> None:
        self.ctx = ctx
        self.follower = EventFollower(ctx.escrow, _Checkpoint(ctx), confirmations=ctx.sender.confirmations,
                                      names=ORDER_EVENTS)  # fmt: skip

    def sync(self) -> int:
        """Apply every new event about the account's orders; returns how many events were read."""
        with translated("follow the chain"):
            return self.follower.poll(self._handle)

    def _handle(self, event: ChainEvent) -> None:
        order_id = event.args.get("id")
        if not isinstance(order_id, int):
            return
        me = self.ctx.address.lower()
        if event.name == "OrderPlaced" and me in (str(event.args["buyer"]).lower(), str(event.args["seller"]).lower()):
            self.record(self.ctx.escrow.order(order_id))
        elif self.local(order_id) is not None:
            self.refresh(order_id)

    # ------------------------------------------------------------------ reading

    def local(self, order_id: int) -> OrderRecord | None:
        return self.ctx.db.order(self.ctx.contract, self.ctx.address, order_id)

    def mine(self, order_id: int, role: str | None = None) -> OrderRecord:
        """The account's order (read from the chain if the database has not seen it yet)."""
        found = self.local(order_id) or self.refresh(order_id)
        if role is not None and found.role != role:
            raise UnknownOrder(f"order {order_id}: this account is its {found.role}, not its {role}")
        return found

    def orders(self, *, active: bool = False) -> list[OrderRecord]:
        return self.ctx.db.orders(self.ctx.contract, self.ctx.address, active=active)

    def chain_order(self, order_id: int) -> Order:
        try:
            with translated(f"read order {order_id}"):
                return self.ctx.escrow.order(order_id)
        except WalletError as exc:
            if isinstance(exc.__cause__, ChainUnknownOrder):
                raise UnknownOrder(f"order {order_id} does not exist") from None
            raise

    # ------------------------------------------------------------------ writing

    def refresh(self, order_id: int) -> OrderRecord:
        """Read the order from the chain into the database; UnknownOrder if not a party to it."""
        return self.record(self.chain_order(order_id))

    def record(self, order: Order) -> OrderRecord:
        terms, status, me = order.terms, order.status, self.ctx.address.lower()
        if me == terms.buyer.lower():
            role = ROLE_BUYER
        elif me == terms.seller.lower():
            role = ROLE_SELLER
        else:
            raise UnknownOrder(f"order {order.id}: this account is neither its buyer nor its seller")
        market_hash = market_hash_of(terms.desc_hash)
        saved = self.ctx.db.upsert_order(
            OrderRecord(
                contract=self.ctx.contract, order_id=order.id, account=self.ctx.address, role=role,
                market_hash=market_hash, buyer=terms.buyer, seller=terms.seller, proxy=terms.proxy,
                proxy2=terms.proxy2, price=terms.price, fee=terms.fee, desc_hash=terms.desc_hash.hex(),
                data_hash=terms.data_hash.hex(), buyer_key=terms.buyer_key.hex(), state=status.state,
                end_time=status.end_time, dispute_end=status.dispute_end, updated=int(time.time()),
            )
        )  # fmt: skip
        if role == ROLE_BUYER:
            self.ctx.db.ensure_purchase(self.ctx.contract, self.ctx.address, order.id, market_hash)
        return saved


class Party:
    """What a buyer and a seller may both do on their orders; subclasses add their role's."""

    role: str = ""

    def __init__(self, ctx: WalletContext, agent: PartyAgent) -> None:
        self.ctx = ctx
        self.agent = agent
        self.book = OrderBook(ctx)

    def guard(self, action: Action, order_id: int) -> Order:
        """The order, if the lifecycle lets this account take `action` on it now.

        ForbiddenAction carries the contract's own reason ("only buyer", "wrong state",
        "deadline passed"...); no transaction is sent in that case.
        """
        order = self.book.chain_order(order_id)
        with translated(f"check {action}"):
            now = self.ctx.escrow.now()
            windows = self.ctx.escrow.windows
            reason = refusal(action, order.terms, order.status, self.ctx.address, now, windows)
        if reason is not None:
            raise ForbiddenAction(str(action), reason, order_id)
        return order

    def act(self, action: Action, order_id: int, send: Callable[[], TxReceipt]) -> OrderRecord:
        """Guard, send, and record the order's new state locally."""
        self.guard(action, order_id)
        with translated(str(action)):
            receipt = send()
        log.info("order %d: %s in transaction 0x%s", order_id, action, bytes(receipt["transactionHash"]).hex())
        return self.book.refresh(order_id)

    # ------------------------------------------------------------------ shared actions

    def claim_timeout(self, order_id: int) -> OrderRecord:
        """Close an order whose deadline passed (refund, or payment after the confirm window)."""
        return self.act(Action.CLAIM_TIMEOUT, order_id, lambda: self.agent.claim_timeout(order_id))

    def answer_verdict(self, order_id: int, agree: bool) -> OrderRecord:
        """Accept (or appeal to the arbiter) the proxy's verdict on a dispute."""
        return self.act(Action.ANSWER_VERDICT, order_id, lambda: self.agent.answer_verdict(order_id, agree))

    def rate_proxy(self, order_id: int, rating: int) -> OrderRecord:
        """Rate the order's proxies on chain (1-5, once per party, after a completed sale)."""
        if not 1 <= rating <= 5:
            raise ForbiddenAction(str(Action.RATE_PROXY), "the rating must be between 1 and 5", order_id)
        return self.act(Action.RATE_PROXY, order_id, lambda: self.agent.rate_proxy(order_id, rating))

    def claim_payouts(self) -> int:
        """Withdraw payouts the contract could not send directly; returns the wei claimed."""
        with translated("claim payouts"):
            owed = self.ctx.escrow.deferred_payout(self.ctx.address)
            if owed:
                self.agent.claim_deferred()
        return owed

    def orders(self, states: Sequence[OrderState] = ()) -> list[OrderRecord]:
        """The account's orders in this role (in `states` if given), from the local database."""
        return [o for o in self.book.orders() if o.role == self.role and (not states or o.state in states)]

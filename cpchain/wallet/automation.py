"""The wallet's background work: one `step()` that does what is due on the account's orders.

Owns the I/O around cpchain.wallet.rules.decide: follow the chain's events into the local
database, gather each order's facts (chain state and deadlines as mirrored, the local
product or purchase, retry back-off), run the steps the rules choose through the Seller
and Buyer flows, and record each outcome. All state lives in the wallet database, so a
step is idempotent and a restarted wallet resumes a trade where it stopped (the proxy's
SELLER_DATA and the resumable download are both safe to repeat). `run()` loops `step()`
until told to stop. Must not contain decisions (rules.decide) or trade logic (seller,
buyer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cpchain.types import OrderState, Verdict
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext
from cpchain.wallet.db import OrderRecord
from cpchain.wallet.errors import WalletError, translated
from cpchain.wallet.rules import (
    RECEIVABLE_STATES,
    ROLE_BUYER,
    ROLE_SELLER,
    OrderFacts,
    Policy,
    Task,
    backoff,
    decide,
    seller_refusal,
)
from cpchain.wallet.seller import Seller

__all__ = ["Automation", "StepReport"]

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one step did: events read, steps done and steps that failed (with the error)."""

    events: int = 0
    done: list[tuple[int, Task]] = field(default_factory=list)
    failed: list[tuple[int, Task, str]] = field(default_factory=list)


class Automation:
    """Seller: confirm and deliver new orders. Buyer: receive, verify and decrypt deliveries.

    Both: claim timeouts that pay the account back, agree with a dispute's verdict in the
    account's favour (Policy.accept_verdicts); optionally (Policy.auto_confirm) the
    buyer confirms a verified delivery.
    """

    def __init__(self, ctx: WalletContext, policy: Policy | None = None, *, clock: Callable[[], float] = time.time,
                 progress: Callable[[int, str, int, int], None] | None = None) -> None:  # fmt: skip
        self.ctx = ctx
        self.policy = policy or Policy()
        self.clock = clock
        self.progress = progress
        """Told (order id, phase, bytes done, bytes in all) while a delivery is received."""
        self.seller = Seller(ctx)
        self.buyer = Buyer(ctx)
        self.book = self.seller.book

    def step(self) -> StepReport:
        """Sync with the chain, then run every step due; failures are recorded, not raised
        (except the chain being unreachable, since nothing can be decided without it)."""
        report = StepReport(events=self.book.sync())
        with translated("read the chain"):
            chain_now = self.ctx.escrow.now()
            windows = self.ctx.escrow.windows
        for order in self._candidates():
            facts = self._facts(order)
            tasks = decide(facts, me=self.ctx.address, chain_now=chain_now, wall_now=int(self.clock()),
                           windows=windows, policy=self.policy)  # fmt: skip
            for task in tasks:
                try:
                    self._run(task, order)
                except WalletError as exc:
                    self._failed(order, task, exc, report)
                    break
                report.done.append((order.order_id, task))
            else:
                if tasks and order.attempts:
                    self.ctx.db.set_progress(self.ctx.contract, self.ctx.address, order.order_id, attempts=0,
                                             next_try=0, last_error="")  # fmt: skip
        return report

    def run(self, stop: threading.Event, interval: float = 2.0,
            on_report: Callable[[StepReport], None] | None = None) -> None:  # fmt: skip
        """Step every `interval` seconds until `stop` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                report = self.step()
            except WalletError as exc:
                log.warning("automation step failed: %s", exc)
            except Exception:
                log.exception("automation step failed unexpectedly")
            else:
                if on_report is not None:
                    on_report(report)
            stop.wait(interval)

    # ------------------------------------------------------------------ internals

    def _candidates(self) -> list[OrderRecord]:
        """Active orders, and bought ones still to be received (a sale may end before that)."""

        def pending_receipt(order: OrderRecord) -> bool:
            return order.role == ROLE_BUYER and order.state in RECEIVABLE_STATES and not self._received(order)

        return [o for o in self.book.orders() if not o.state.is_final or pending_receipt(o)]

    def _received(self, order: OrderRecord) -> bool:
        purchase = self.ctx.db.purchase(self.ctx.contract, self.ctx.address, order.order_id)
        return purchase is not None and purchase.received

    def _facts(self, order: OrderRecord) -> OrderFacts:
        verdict, agreed = Verdict.NONE, False
        if order.state is OrderState.DISPUTED:  # the verdict is not mirrored locally: read it
            with translated("read the chain"):
                status = self.ctx.escrow.status(order.order_id)
            verdict = status.verdict
            agreed = status.buyer_agreed if order.role == ROLE_BUYER else status.seller_agreed
        return OrderFacts(
            role=order.role,
            terms=order.terms,
            state=order.state,
            end_time=order.end_time,
            dispute_end=order.dispute_end,
            ignored=order.ignored,
            next_try=order.next_try,
            product=self.seller.product_for(order) if order.role == ROLE_SELLER else None,
            received=order.role == ROLE_BUYER and self._received(order),
            verdict=verdict,
            agreed=agreed,
        )

    def _run(self, task: Task, order: OrderRecord) -> None:
        order_id = order.order_id
        log.info("order %d: %s", order_id, task)
        if task is Task.IGNORE:
            reason = seller_refusal(order.terms, self.seller.product_for(order), self.ctx.address) or "refused"
            log.warning("order %d will not be confirmed: %s", order_id, reason)
            self.ctx.db.set_progress(self.ctx.contract, self.ctx.address, order_id, ignored=reason)
        elif task is Task.SELLER_CONFIRM:
            self.seller.confirm(order_id)
        elif task is Task.DELIVER:
            self.seller.deliver(order_id)
        elif task is Task.RECEIVE:
            report = self.progress
            self.buyer.receive(order_id, None if report is None else
                               (lambda phase, done, total: report(order_id, phase, done, total)))  # fmt: skip
        elif task is Task.BUYER_CONFIRM:
            current = self.book.refresh(order_id)
            if current.state is OrderState.PROXY_DELIVERED and self._received(current):
                self.buyer.confirm(order_id)
        elif task is Task.CLAIM_TIMEOUT:
            (self.seller if order.role == ROLE_SELLER else self.buyer).claim_timeout(order_id)
        elif task is Task.ACCEPT_VERDICT:
            (self.seller if order.role == ROLE_SELLER else self.buyer).answer_verdict(order_id, True)

    def _failed(self, order: OrderRecord, task: Task, exc: WalletError, report: StepReport) -> None:
        attempts = order.attempts + 1
        wait = backoff(attempts, self.policy)
        log.warning("order %d: %s failed (attempt %d, next in %d s): %s", order.order_id, task, attempts, wait, exc)
        self.ctx.db.set_progress(self.ctx.contract, self.ctx.address, order.order_id, attempts=attempts,
                                 next_try=int(self.clock()) + wait, last_error=str(exc))  # fmt: skip
        report.failed.append((order.order_id, task, str(exc)))

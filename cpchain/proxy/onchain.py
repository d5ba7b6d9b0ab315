"""The proxy's chain access: order reads, and claims that survive a crash at any step.

Owns proxyFetched/proxyDelivered transactions of this proxy's account. A claim is written
to the database as intent before it is signed, with its transaction hash before it is sent,
and as confirmed after its receipt; resuming a claim first looks for the earlier
transaction and at the order's on-chain state, so a restarted proxy never claims twice.
Blocking: called from worker threads, never from the reactor. Must not decide whether a
claim is wanted (cpchain.proxy.service does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3.exceptions import TimeExhausted, TransactionNotFound
from web3.types import Nonce, TxParams, TxReceipt

from cpchain.chain.errors import ChainError, ContractRevert, TransactionFailed
from cpchain.chain.escrow import Escrow
from cpchain.chain.lifecycle import Windows
from cpchain.chain.tx import GAS_MARGIN, TxSender
from cpchain.proxy import failpoints
from cpchain.proxy.protocol import Domain
from cpchain.proxy.rules import delivery_already_claimed, fetch_already_claimed
from cpchain.proxy.store import ClaimKind, ClaimState, TradeStore
from cpchain.types import OrderStatus, OrderTerms

log = logging.getLogger(__name__)
PENDING_WAIT = 60.0


@dataclass(frozen=True)
class OrderView:
    terms: OrderTerms
    status: OrderStatus
    now: int  # the clock the contract's deadlines use (latest block, at least wall time)


class ChainGateway:
    """Reads orders and sends this proxy's claims; safe to share between threads."""

    def __init__(self, escrow: Escrow, sender: TxSender, store: TradeStore, clock: Callable[[], float] = time.time):
        self.escrow = escrow
        self.sender = sender
        self.store = store
        self.w3 = escrow.w3
        self.address: ChecksumAddress = sender.account.address
        self.domain = Domain(escrow.deployment.chain_id, escrow.address)
        self._clock = clock
        self._nonce_lock = threading.Lock()
        self._windows: Windows | None = None

    # ------------------------------------------------------------ reads

    @property
    def windows(self) -> Windows:
        if self._windows is None:
            self._windows = self.escrow.windows
        return self._windows

    def now(self) -> int:
        """The next block cannot be older than this: the deadline check must use it."""
        return max(self.escrow.now(), int(self._clock()))

    def order(self, order_id: int) -> OrderView:
        """Terms (cached, committed on chain), current status and chain time; UnknownOrder if absent."""
        terms = self.escrow.terms(order_id)
        return OrderView(terms, self.escrow.status(order_id), self.now())

    # ------------------------------------------------------------ claims

    def claim(self, order_id: int, kind: ClaimKind, deliver_hash: bytes | None = None) -> str:
        """Make sure this order's claim is on chain; returns the transaction hash ('' if another
        proxy of the order made it). ContractRevert when the contract refuses."""
        existing = self.store.claim(order_id, kind)
        if existing is not None and existing.state is ClaimState.CONFIRMED:
            return existing.tx_hash
        if existing is not None and existing.state in (ClaimState.INTENT, ClaimState.SENT):
            done = self._reconcile(order_id, kind, existing.tx_hash)
        else:
            done = self._already_claimed(order_id, kind)  # e.g. by the order's other proxy
        return done if done is not None else self._send_claim(order_id, kind, deliver_hash)

    def _function(self, order_id: int, kind: ClaimKind, deliver_hash: bytes | None) -> Any:
        terms = self.escrow.terms(order_id).as_tuple()
        fn = self.escrow.contract.functions
        if kind is ClaimKind.FETCHED:
            return fn.proxyFetched(order_id, terms)
        if deliver_hash is None or len(deliver_hash) != 32:
            raise ValueError("proxyDelivered needs the 32-byte hash of the served ciphertext")
        return fn.proxyDelivered(order_id, terms, deliver_hash)

    def _send_claim(self, order_id: int, kind: ClaimKind, deliver_hash: bytes | None) -> str:
        fn = self._function(order_id, kind, deliver_hash)
        self.store.claim_intent(order_id, kind, int(self._clock()))
        try:
            self.sender.call(fn)  # the contract's reason, before anything is signed
            gas = int(fn.estimate_gas(cast(TxParams, {"from": self.address})) * GAS_MARGIN)
        except ContractRevert as exc:
            self.store.claim_update(order_id, kind, ClaimState.FAILED, int(self._clock()), error=exc.reason)
            raise
        except Exception as exc:
            raise ChainError(f"{kind} claim: {type(exc).__name__}: {exc}") from None
        with self._nonce_lock:
            nonce = self.w3.eth.get_transaction_count(self.address, "pending")
            tx = fn.build_transaction(cast(TxParams, {"from": self.address, "gas": gas, "nonce": Nonce(nonce)}))
            signed = self.sender.account.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = "0x" + bytes(signed.hash).hex()
            self.store.claim_update(order_id, kind, ClaimState.SENT, int(self._clock()), tx_hash=tx_hash)
            failpoints.hit(f"before-send-{kind}")
            try:
                self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                raise ChainError(f"{kind} claim: sending failed: {exc}") from None
        log.info("order %d: %s claim sent in %s", order_id, kind, tx_hash)
        failpoints.hit(f"after-send-{kind}")
        receipt = self._wait(tx_hash)
        return self._settle(order_id, kind, tx_hash, receipt)

    def _wait(self, tx_hash: str) -> TxReceipt:
        try:
            return self.w3.eth.wait_for_transaction_receipt(
                HexBytes(tx_hash), timeout=self.sender.timeout, poll_latency=self.sender.poll_interval
            )
        except TimeExhausted:
            raise TransactionFailed(f"claim {tx_hash} not mined within {self.sender.timeout:.0f}s") from None

    def _settle(self, order_id: int, kind: ClaimKind, tx_hash: str, receipt: TxReceipt) -> str:
        if receipt["status"] == 1:
            self.store.claim_update(order_id, kind, ClaimState.CONFIRMED, int(self._clock()), tx_hash=tx_hash)
            log.info("order %d: %s claim confirmed", order_id, kind)
            return tx_hash
        done = self._already_claimed(order_id, kind)
        if done is not None:
            return done
        reason = "transaction failed on chain"
        self.store.claim_update(order_id, kind, ClaimState.FAILED, int(self._clock()), error=reason)
        raise TransactionFailed(f"{kind} claim {tx_hash}: {reason}")

    def _reconcile(self, order_id: int, kind: ClaimKind, tx_hash: str) -> str | None:
        """After a crash: the earlier attempt's outcome, or None if a new transaction is needed."""
        if tx_hash:
            receipt = self._receipt(tx_hash)
            if receipt is None and self._known(tx_hash):
                receipt = self._wait(tx_hash)
            if receipt is not None and receipt["status"] == 1:
                return self._settle(order_id, kind, tx_hash, receipt)
        self._wait_for_pending()
        return self._already_claimed(order_id, kind)

    def _already_claimed(self, order_id: int, kind: ClaimKind) -> str | None:
        state = self.escrow.status(order_id).state
        claimed = fetch_already_claimed(state) if kind is ClaimKind.FETCHED else delivery_already_claimed(state)
        if not claimed:
            return None
        tx_hash = self._event_tx(order_id, kind)
        self.store.claim_update(order_id, kind, ClaimState.CONFIRMED, int(self._clock()), tx_hash=tx_hash)
        log.info("order %d: %s claim found on chain (%s)", order_id, kind, tx_hash or "by the other proxy")
        return tx_hash

    def _event_tx(self, order_id: int, kind: ClaimKind) -> str:
        events = self.escrow.contract.events
        event = events.ProxyFetched() if kind is ClaimKind.FETCHED else events.ProxyDelivered()
        logs = event.get_logs(
            argument_filters={"id": order_id, "proxy": self.address}, from_block=self.escrow.deployment.block
        )
        return "0x" + bytes(logs[0]["transactionHash"]).hex() if logs else ""

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def _known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(HexBytes(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def _wait_for_pending(self) -> None:
        """Let this account's pending transactions be mined before judging by the chain state."""
        deadline = time.monotonic() + PENDING_WAIT
        while self.w3.eth.get_transaction_count(self.address, "pending") > self.w3.eth.get_transaction_count(
            self.address, "latest"
        ):
            if time.monotonic() > deadline:
                raise TransactionFailed("this proxy's earlier transactions are still pending")
            time.sleep(self.sender.poll_interval)

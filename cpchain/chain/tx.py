"""Locally signed transactions: build, sign with the account key, send, wait, decode reverts.

Owns nonces and receipts for one account; must not use node-held keys or `personal_*`.
A revert surfaces as ContractRevert with the contract's reason, whichever node answered
(web3 raises ContractCustomError/ContractLogicError on anvil, eth-tester TransactionFailed).
"""

from __future__ import annotations

import ast
import threading
import time
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from cpchain.chain.errors import ChainError, ContractRevert, TransactionFailed

REFUSED_SELECTOR = keccak(text="Refused(string)")[:4]
ERROR_SELECTOR = keccak(text="Error(string)")[:4]
PANIC_SELECTOR = keccak(text="Panic(uint256)")[:4]
GAS_MARGIN = 1.25


def _revert_data(exc: BaseException) -> bytes | None:
    """The raw revert payload carried by any backend's exception, if there is one."""
    candidates: list[Any] = [getattr(exc, "data", None)]
    candidates += list(getattr(exc, "args", ()))
    for item in candidates:
        if isinstance(item, dict):
            item = item.get("data")
        if isinstance(item, (bytes, bytearray)):
            return bytes(item)
        if isinstance(item, str):
            text = item.strip().removeprefix("execution reverted:").strip()
            if text.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in text[2:]):
                return bytes(HexBytes(text))
            if text[:2] in ('b"', "b'"):
                # eth-tester reports eth_call reverts as the repr of the raw bytes.
                try:
                    raw = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(raw, bytes):
                    return raw
    return None


def revert_reason(exc: BaseException) -> str | None:
    """The contract's reason for a revert, or None if `exc` is not a revert."""
    data = _revert_data(exc)
    if data is not None and len(data) >= 4:
        selector, body = data[:4], data[4:]
        try:
            if selector in (REFUSED_SELECTOR, ERROR_SELECTOR):
                return str(abi_decode(["string"], body)[0])
            if selector == PANIC_SELECTOR:
                return f"panic 0x{abi_decode(['uint256'], body)[0]:02x}"
        except Exception:
            return f"undecodable revert 0x{data.hex()}"
    if isinstance(exc, (ContractLogicError, ContractCustomError)) or type(exc).__name__ == "TransactionFailed":
        message = str(exc.args[0] if exc.args else exc)
        return message.removeprefix("execution reverted: ").removeprefix("execution reverted") or "reverted"
    return None


class TxSender:
    """Sends one account's transactions, signing locally; safe to share between threads."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        timeout: float = 120.0,
        poll_interval: float = 0.2,
        confirmations: int = 0,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.address = account.address
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.confirmations = confirmations
        # Serialises nonce assignment; the node's pending count is the source of truth,
        # so a dropped transaction or a reorg never leaves a stale local nonce behind.
        self._lock = threading.Lock()

    def call(self, fn: ContractFunction, value: int = 0) -> Any:
        """A read-only call from this account (reverts become ContractRevert)."""
        try:
            return fn.call(cast(TxParams, {"from": self.address, "value": value}))
        except Exception as exc:
            raise self._translate(exc, fn.fn_name) from None

    def transact(self, fn: ContractFunction, value: int = 0, gas: int | None = None) -> TxReceipt:
        """Send a contract call and wait for its receipt; a refusal raises ContractRevert."""
        params = cast(TxParams, {"from": self.address, "value": value})
        label = getattr(fn, "fn_name", "constructor")
        try:
            if gas is None:
                gas = int(fn.estimate_gas(params) * GAS_MARGIN)
            params["gas"] = gas
            tx = fn.build_transaction(params)
        except Exception as exc:
            raise self._translate(exc, label) from None
        return self._send(tx, label, replay=(fn, value) if label != "constructor" else None)

    def send_value(self, to: str, value: int) -> TxReceipt:
        """A plain transfer of `value` wei."""
        tx = cast(TxParams, {"from": self.address, "to": Web3.to_checksum_address(to), "value": value})
        try:
            tx["gas"] = self.w3.eth.estimate_gas(tx)
        except Exception as exc:
            raise self._translate(exc, "transfer") from None
        tx["chainId"] = self.w3.eth.chain_id
        self._fill_fees(tx)
        return self._send(tx, "transfer")

    def _fill_fees(self, tx: TxParams) -> None:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            tx["gasPrice"] = self.w3.eth.gas_price
            return
        tip = self.w3.eth.max_priority_fee
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = Wei(2 * int(base) + tip)

    def _send(self, tx: TxParams, label: str, replay: tuple[ContractFunction, int] | None = None) -> TxReceipt:
        with self._lock:
            tx["nonce"] = Nonce(self.w3.eth.get_transaction_count(self.address, "pending"))
            signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                raise self._translate(exc, label) from None
        receipt = self._wait(tx_hash, label)
        if receipt["status"] != 1:
            reason = self._replay_reason(replay, receipt["blockNumber"]) if replay else None
            if reason:
                raise ContractRevert(reason, label)
            raise TransactionFailed(f"{label}: transaction 0x{bytes(tx_hash).hex()} failed on chain")
        return receipt

    def _replay_reason(self, replay: tuple[ContractFunction, int], block: int) -> str | None:
        """Why a mined transaction failed: re-run it as a call in its block's context.

        The call sees the block's timestamp (so a deadline that passed between estimate and
        mining is reported as such); "latest" is the fallback for nodes without history.
        """
        fn, value = replay
        params = cast(TxParams, {"from": self.address, "value": value})
        for block_id in (block, "latest"):
            try:
                fn.call(params, block_identifier=block_id)
            except Exception as exc:
                reason = revert_reason(exc)
                if reason and not reason.startswith("undecodable"):
                    return reason
        return None

    def _wait(self, tx_hash: HexBytes, label: str) -> TxReceipt:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.timeout, poll_latency=self.poll_interval
            )
        except TimeExhausted:
            raise TransactionFailed(f"{label}: not mined within {self.timeout:.0f}s") from None
        deadline = time.monotonic() + self.timeout
        while self.confirmations and self.w3.eth.block_number - receipt["blockNumber"] < self.confirmations:
            if time.monotonic() > deadline:
                raise TransactionFailed(f"{label}: not confirmed within {self.timeout:.0f}s")
            time.sleep(self.poll_interval)
        return receipt

    @staticmethod
    def _translate(exc: Exception, label: str) -> ChainError:
        if isinstance(exc, ChainError):
            return exc
        reason = revert_reason(exc)
        if reason is not None:
            return ContractRevert(reason, label)
        if isinstance(exc, Web3RPCError):
            message = exc.rpc_response.get("error", {}).get("message") if exc.rpc_response else str(exc)
            return TransactionFailed(f"{label}: {message}")
        if isinstance(exc, ValueError):
            return TransactionFailed(f"{label}: {exc}")
        return ChainError(f"{label}: {type(exc).__name__}: {exc}")

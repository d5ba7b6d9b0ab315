"""The account's coins: balance, plain transfers (quoted with their fee before sending) and
the account's transaction history read from the chain.

Owns amounts in and out of the account's address outside the escrow's bookkeeping: parsing
what a person types ("1.5" CPC), quoting a transfer (gas, fee at most, total) and refusing
one the balance cannot pay before anything is signed, sending it through the account's
`TxSender`, and listing the transactions from or to the account by scanning the chain's
blocks (incrementally: a `Funds` remembers how far it has read). Must not touch orders
(cpchain.wallet.orders) or the market.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address

from cpchain.wallet.context import WalletContext
from cpchain.wallet.errors import BadInput, InsufficientFunds, translated

__all__ = ["UNIT", "Funds", "Transfer", "TransferQuote", "format_amount", "parse_amount"]

UNIT = 10**18
"""Wei per CPC (the chain's native coin, 18 decimals)."""


def parse_amount(text: str) -> int:
    """Wei from a decimal CPC amount as typed ("1", "0.25"); BadInput unless positive with <= 18 decimals."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise BadInput(f"not an amount: {text.strip()!r}") from None
    if not value.is_finite() or value <= 0:
        raise BadInput("the amount must be more than 0")
    with localcontext() as exact:
        exact.prec = 100
        wei = value * UNIT
    if wei != wei.to_integral_value():
        raise BadInput("an amount has at most 18 decimals")
    return int(wei)


def format_amount(wei: int, places: int = 6) -> str:
    """Text like "1.5 CPC": at most `places` decimals, trailing zeros dropped, never exponent form."""
    with localcontext() as exact:
        exact.prec = 100
        value = (Decimal(wei) / UNIT).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
        text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} CPC"


def checked_address(text: str) -> str:
    """The checksummed address, or BadInput (mixed case must carry a valid checksum)."""
    text = text.strip()
    if not is_hex_address(text):
        raise BadInput(f"not an address: {text!r}")
    if text != text.lower() and text[2:] != text[2:].upper() and to_checksum_address(text) != text:
        raise BadInput(f"the address {text} has a wrong checksum (a typo?)")
    return str(to_checksum_address(text))


@dataclass(frozen=True)
class TransferQuote:
    """What a transfer will cost before it is sent: `fee` is the most it can cost in gas."""

    to: str
    value: int
    gas: int
    max_fee_per_gas: int
    balance: int

    @property
    def fee(self) -> int:
        return self.gas * self.max_fee_per_gas

    @property
    def total(self) -> int:
        return self.value + self.fee


@dataclass(frozen=True)
class Transfer:
    """One transaction from or to the account, as mined."""

    tx_hash: str
    block: int
    time: int  # unix time of its block
    sender: str
    to: str  # "" for a contract creation
    value: int
    fee: int  # wei the sender paid in gas
    ok: bool
    action: str  # "transfer", or the escrow function called ("placeOrder"...), or "contract call"

    def direction(self, me: str) -> str:
        if self.sender.lower() == me.lower():
            return "self" if self.to.lower() == me.lower() else "out"
        return "in"


class Funds:
    """The account's balance, transfers and history; safe to use from one worker thread at a time."""

    def __init__(self, ctx: WalletContext, *, history_blocks: int = 5000) -> None:
        self.ctx = ctx
        self.w3 = ctx.sender.w3
        self.history_blocks = history_blocks
        self._seen: list[Transfer] = []
        self._next_block: int | None = None
        self._lock = threading.Lock()

    def balance(self) -> int:
        with translated("read the balance"):
            return int(self.w3.eth.get_balance(to_checksum_address(self.ctx.address)))

    def quote(self, to: str, amount: int | str) -> TransferQuote:
        """The transfer's gas, fee and total; InsufficientFunds if the balance cannot pay it."""
        address = checked_address(to)
        value = parse_amount(amount) if isinstance(amount, str) else amount
        if value <= 0:
            raise BadInput("the amount must be more than 0")
        tx: Any = {"from": self.ctx.address, "to": address, "value": value}
        with translated("quote the transfer"):
            balance = int(self.w3.eth.get_balance(to_checksum_address(self.ctx.address)))
            gas = int(self.w3.eth.estimate_gas(tx)) if value <= balance else 21000
            base = self.w3.eth.get_block("latest").get("baseFeePerGas")
            per_gas = int(self.w3.eth.gas_price) if base is None else 2 * int(base) + int(self.w3.eth.max_priority_fee)
        quote = TransferQuote(address, value, gas, per_gas, balance)
        if quote.total > balance:
            raise InsufficientFunds(
                f"the balance of {format_amount(balance)} cannot pay {format_amount(value)} plus a fee of up to "
                f"{format_amount(quote.fee)}"
            )
        return quote

    def send(self, quote: TransferQuote) -> Transfer:
        """Send a quoted transfer and wait for it to be mined."""
        with translated("transfer"):
            receipt = self.ctx.sender.send_value(quote.to, quote.value)
            block = self.w3.eth.get_block(receipt["blockNumber"])
        fee = int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0) or 0)
        return Transfer(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(), block=int(receipt["blockNumber"]),
            time=int(block["timestamp"]), sender=self.ctx.address, to=quote.to, value=quote.value, fee=fee,
            ok=receipt["status"] == 1, action="transfer",
        )  # fmt: skip

    def history(self) -> list[Transfer]:
        """The account's transactions, newest first: the last `history_blocks` blocks at the
        first call, then only the blocks mined since."""
        with self._lock, translated("read the history"):
            head = int(self.w3.eth.block_number)
            start = self._next_block if self._next_block is not None else max(0, head - self.history_blocks + 1)
            me = self.ctx.address.lower()
            for number in range(start, head + 1):
                block = self.w3.eth.get_block(number, full_transactions=True)
                txs: list[Any] = list(block["transactions"])
                for tx in txs:
                    sender, to = str(tx["from"]), str(tx.get("to") or "")
                    if me in (sender.lower(), to.lower()):
                        self._seen.append(self._transfer(tx, int(block["timestamp"])))
            self._next_block = head + 1
            return sorted(self._seen, key=lambda t: (t.block, t.tx_hash), reverse=True)

    def _transfer(self, tx: Any, when: int) -> Transfer:
        receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
        to = str(tx.get("to") or "")
        data = bytes(tx.get("input") or b"")
        if not data:
            action = "transfer"
        elif to.lower() == self.ctx.contract.lower():
            try:
                action = self.ctx.escrow.contract.get_function_by_selector(data[:4]).fn_name
            except ValueError:
                action = "contract call"
        else:
            action = "contract call" if to else "contract creation"
        return Transfer(
            tx_hash="0x" + bytes(tx["hash"]).hex(), block=int(tx["blockNumber"]), time=when, sender=str(tx["from"]),
            to=to, value=int(tx["value"]), fee=int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0) or 0),
            ok=receipt["status"] == 1, action=action,
        )  # fmt: skip

"""`pdash balance|faucet|send`: the account's coins."""

from __future__ import annotations

import argparse
from typing import Any

import requests

from cpchain.chain.connection import checksum, connect
from cpchain.chain.errors import InvalidAddress
from cpchain.chain.escrow import Escrow
from cpchain.wallet.commands.base import CliError, Parser, Result, Session, add_command, format_cpc, parse_amount
from cpchain.wallet.errors import translated


def balance(s: Session, args: argparse.Namespace) -> Result:
    """No password needed: the balance is public."""
    address = _address(args.address) if args.address else s.address()
    with translated("connect to the chain"):
        w3 = connect(s.config)
        escrow = Escrow.from_config(w3, s.config)
    with translated("read the balance"):
        wei = int(w3.eth.get_balance(checksum(address)))
        owed = int(escrow.deferred_payout(address))
    text = f"{address}: {format_cpc(wei)}"
    if owed:
        text += f" (+ {format_cpc(owed)} of payouts to claim)"
    return Result({"address": address, "balance_wei": str(wei), "payouts_wei": str(owed)}, text)


def faucet(s: Session, args: argparse.Namespace) -> Result:
    """Ask the charge server ([account] charge_server) for test coins."""
    address = _address(args.address) if args.address else s.address()
    url = str(s.config.get("account.charge_server")).rstrip("/")
    if not url:
        raise CliError("no faucet configured ([account] charge_server)")
    try:
        reply = requests.post(f"{url}/api/fund", json={"address": address}, timeout=args.timeout)
    except requests.RequestException as exc:
        raise CliError(f"faucet {url} unreachable ({type(exc).__name__})") from None
    try:
        body: Any = reply.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if reply.status_code != 200:
        raise CliError(f"faucet refused: {body.get('error') or f'HTTP {reply.status_code}'}")
    amount = int(body.get("amount_wei", 0))
    return Result({"address": address, "amount_wei": str(amount), "tx_hash": body.get("tx_hash")},
                  f"the faucet sent {format_cpc(amount)} to {address} (tx {body.get('tx_hash')})")  # fmt: skip


def send(s: Session, args: argparse.Namespace) -> Result:
    to = _address(args.to)
    wei = parse_amount(args.amount)
    ctx = s.wallet
    with translated("send"):
        receipt = ctx.sender.send_value(to, wei)
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    return Result({"from": ctx.address, "to": to, "amount_wei": str(wei), "tx_hash": tx},
                  f"sent {format_cpc(wei)} from {ctx.address} to {to} (tx {tx})")  # fmt: skip


def _address(text: str) -> str:
    try:
        return str(checksum(text))
    except InvalidAddress:
        raise CliError(f"not an address: {text!r}") from None


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    p = add_command(sub, "balance", balance, "the account's coins, and payouts the contract holds for it", [common])
    p.add_argument("address", nargs="?", help="any address (default: the account's)")
    p = add_command(sub, "faucet", faucet, "ask the test faucet ([account] charge_server) for coins", [common])
    p.add_argument("address", nargs="?", help="default: the account's")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the faucet")
    p = add_command(sub, "send", send, "send coins to an address", [common])
    p.add_argument("to")
    p.add_argument("amount", help="in CPC (e.g. 1.5), or in wei with the suffix 'wei'")

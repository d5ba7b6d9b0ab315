"""Proxy operator commands (bin/proxy-ctl): deposit, withdraw, standing, disputes, trades.

Owns argument parsing and wiring the operator's account (the proxy's keystore and password
file from [proxy]) to cpchain.chain.escrow.ProxyAgent; every failure a user can cause ends
in one line on stderr. Must not talk to a running proxy process: it reads the proxy's
database read-only for `trades` and `dispute` evidence.
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
from decimal import Decimal, InvalidOperation

from web3 import Web3

from cpchain.chain.connection import connect
from cpchain.chain.errors import InvalidArgument
from cpchain.chain.escrow import Escrow, ProxyAgent
from cpchain.chain.tx import TxSender
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, load_config
from cpchain.proxy.settings import ProxySettings
from cpchain.types import OrderState


def parse_amount(text: str) -> int:
    """An amount in ether ("1.5") or in wei with a suffix ("1500wei") as wei."""
    try:
        wei = text.endswith("wei")
        value = int(text.removesuffix("wei")) if wei else int(Web3.to_wei(Decimal(text), "ether"))
    except (InvalidOperation, ValueError):
        raise InvalidArgument(f"not an amount: {text!r} (ether, or wei with a 'wei' suffix)") from None
    if value <= 0:
        raise InvalidArgument("the amount must be positive")
    return value


def _ether(wei: int) -> str:
    return f"{Web3.from_wei(wei, 'ether')} ETH"


def _when(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _agent(config: Config) -> ProxyAgent:
    from cpchain.chain.cli import unlock_account

    settings = ProxySettings.from_config(config)
    account = unlock_account(settings.keystore, settings.password_file)
    w3 = connect(config)
    sender = TxSender(w3, account, timeout=float(config.get("chain.tx_timeout")),
                      poll_interval=float(config.get("chain.poll_interval")))  # fmt: skip
    return ProxyAgent(Escrow.from_config(w3, config), sender)


def show(agent: ProxyAgent) -> None:
    deposit, unlock_at = agent.escrow.proxy_account(agent.address)
    total, count = agent.escrow.proxy_rating(agent.address)
    minimum = agent.escrow.params().min_proxy_deposit
    print(f"proxy:    {agent.address}")
    print(f"deposit:  {_ether(deposit)} (minimum {_ether(minimum)})")
    status = "bonded" if unlock_at == 0 else f"unbonding, withdrawable from {_when(unlock_at)}"
    print(f"status:   {status}")
    print(f"credit:   {total / count:.2f} from {count} ratings" if count else "credit:   no ratings yet")
    print(f"payouts:  {_ether(agent.escrow.deferred_payout(agent.address))} deferred")


def withdraw(agent: ProxyAgent, amount: str | None) -> None:
    """First run: request the unbonding; once it has passed: withdraw (all, or `amount`)."""
    deposit, unlock_at = agent.escrow.proxy_account(agent.address)
    if deposit == 0:
        raise InvalidArgument("this proxy has no deposit")
    if unlock_at == 0:
        agent.request_withdraw()
        _, unlock_at = agent.escrow.proxy_account(agent.address)
        print(f"withdrawal requested: the deposit unlocks at {_when(unlock_at)}; run `proxy-ctl withdraw` again then")
        return
    if agent.escrow.now() < unlock_at:
        raise InvalidArgument(f"the deposit unlocks at {_when(unlock_at)}")
    value = deposit if amount is None else parse_amount(amount)
    agent.withdraw(value)
    print(f"withdrew {_ether(value)}; {_ether(agent.escrow.proxy_account(agent.address)[0])} remain")


def trades(settings: ProxySettings) -> None:
    if not settings.db_path.exists():
        print("no trades yet")
        return
    db = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    rows = db.execute("SELECT order_id, stage, size, error FROM trades ORDER BY order_id").fetchall()
    db.close()
    for order_id, stage, size, error in rows:
        print(f"{order_id:>8}  {stage:<9}  {size if size is not None else '-':>12}  {error}")


def dispute(agent: ProxyAgent, order_id: int, verdict: str) -> None:
    """Rule on a disputed order: `seller` (the seller is at fault) or `buyer`."""
    status = agent.escrow.status(order_id)
    if status.state is not OrderState.DISPUTED:
        raise InvalidArgument(f"order {order_id} is {status.state.name}, not disputed")
    agent.process_dispute(order_id, seller_at_fault=verdict == "seller")
    print(f"order {order_id}: ruled that the {verdict} is at fault")


def _main() -> int:
    parser = argparse.ArgumentParser(prog="proxy-ctl", description="Operate a PDash relay proxy's account.")
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="deposit, unbonding status, credit and deferred payouts")
    deposit = sub.add_parser("deposit", help="add to the proxy's deposit")
    deposit.add_argument("amount", help="in ether (e.g. 1.5), or wei with a 'wei' suffix")
    out = sub.add_parser("withdraw", help="request unbonding, then (after the delay) withdraw")
    out.add_argument("amount", nargs="?", help="default: the whole deposit")
    ruling = sub.add_parser("dispute", help="answer a dispute on an order this proxy served")
    ruling.add_argument("order_id", type=int)
    ruling.add_argument("--at-fault", choices=("seller", "buyer"), required=True, dest="verdict")
    sub.add_parser("trades", help="the trades in this proxy's database")
    sub.add_parser("claim-payouts", help="collect payouts the contract deferred")
    args = parser.parse_args()
    config = load_config(args.config) if args.config else load_config()
    setup_logging(config, "WARNING")
    if args.command == "trades":
        trades(ProxySettings.from_config(config))
        return 0
    agent = _agent(config)
    if args.command == "show":
        show(agent)
    elif args.command == "deposit":
        agent.deposit(parse_amount(args.amount))
        show(agent)
    elif args.command == "withdraw":
        withdraw(agent, args.amount)
    elif args.command == "dispute":
        dispute(agent, args.order_id, args.verdict)
    elif args.command == "claim-payouts":
        amount = agent.escrow.deferred_payout(agent.address)
        agent.claim_deferred()
        print(f"claimed {_ether(amount)}")
    return 0


def main() -> None:
    run_cli("proxy-ctl", _main)

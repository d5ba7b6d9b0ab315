"""`pdash buy|orders|receive|confirm|dispute|rate|withdraw|claim-timeout`: the order lifecycle.

Every action goes through the wallet core, which checks the lifecycle before it sends a
transaction; `orders` shows each order's live state, its deadlines against the chain's
clock, and the commands the lifecycle allows this account now.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cpchain.chain.lifecycle import Action, refusal
from cpchain.types import OrderState
from cpchain.wallet.buyer import DEFAULT_TIME_ALLOWED, Buyer
from cpchain.wallet.commands.base import Parser, Result, Session, add_command, format_cpc, parse_amount, table
from cpchain.wallet.db import OrderRecord, PurchaseRecord
from cpchain.wallet.errors import ForbiddenAction, translated
from cpchain.wallet.orders import OrderBook
from cpchain.wallet.rules import ROLE_BUYER, ROLE_SELLER
from cpchain.wallet.seller import Seller

# The lifecycle actions a role may take, and the pdash command that takes each.
COMMANDS = {
    ROLE_BUYER: {Action.BUYER_WITHDRAW: "withdraw", Action.BUYER_CONFIRM: "confirm", Action.BUYER_DISPUTE: "dispute",
                 Action.CLAIM_TIMEOUT: "claim-timeout"},
    ROLE_SELLER: {Action.SELLER_CONFIRM: "confirm", Action.CLAIM_TIMEOUT: "claim-timeout"},
}  # fmt: skip


def order_json(order: OrderRecord, purchase: PurchaseRecord | None = None, *, chain_now: int | None = None,
               actions: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    data: dict[str, Any] = {
        "order_id": order.order_id, "role": order.role, "state": order.state.name, "market_hash": order.market_hash,
        "buyer": order.buyer, "seller": order.seller, "proxy": order.proxy, "proxy2": order.proxy2,
        "price_wei": str(order.price), "fee_wei": str(order.fee), "end_time": order.end_time,
        "dispute_end": order.dispute_end, "delivered": order.delivered, "last_error": order.last_error,
        "ignored": order.ignored,
    }  # fmt: skip
    if chain_now is not None:
        data["chain_time"] = chain_now
        data["seconds_left"] = max(0, order.end_time - chain_now) if not order.state.is_final else None
    if actions is not None:
        data["actions"] = actions
    if purchase is not None:
        data["purchase"] = {"title": purchase.title, "verified": purchase.verified, "decrypted": purchase.decrypted,
                            "path": purchase.decrypted_path or None}  # fmt: skip
    return data


def _left(order: OrderRecord, now: int) -> str:
    if order.state.is_final:
        return "-"
    left = order.end_time - now
    if left <= 0:
        return f"passed {_duration(-left)} ago"
    return f"in {_duration(left)}"


def _duration(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def _allowed(s: Session, order: OrderRecord, now: int) -> list[str]:
    """The commands the lifecycle allows this account on the order now."""
    ctx = s.wallet
    commands: list[str] = []
    if not order.state.is_final:
        with translated(f"read order {order.order_id}"):
            status = ctx.escrow.status(order.order_id)
            windows = ctx.escrow.windows
        for action, command in COMMANDS[order.role].items():
            if command not in commands and refusal(action, order.terms, status, ctx.address, now, windows) is None:
                commands.append(command)
        if order.role == ROLE_SELLER and order.state is OrderState.SELLER_CONFIRMED and now < order.end_time:
            commands.append("confirm")  # delivers to the proxy (again)
    if order.role == ROLE_BUYER and order.state in (OrderState.FINISHED, OrderState.SETTLED):
        commands.append("rate")
    purchase = ctx.db.purchase(ctx.contract, ctx.address, order.order_id) if order.role == ROLE_BUYER else None
    if (purchase is not None and not purchase.decrypted
            and order.state in (OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED, OrderState.FINISHED,
                                OrderState.DISPUTED, OrderState.SETTLED)):  # fmt: skip
        commands.append("receive")
    return commands


def orders(s: Session, args: argparse.Namespace) -> Result:
    ctx = s.wallet
    book = OrderBook(ctx)
    if not args.no_sync:
        book.sync()
    with translated("read the chain"):
        now = ctx.escrow.now()
    found = [o for o in book.orders(active=args.active) if not args.role or o.role == args.role]
    docs, rows = [], []
    for order in sorted(found, key=lambda o: o.order_id):
        purchase = ctx.db.purchase(ctx.contract, ctx.address, order.order_id) if order.role == ROLE_BUYER else None
        actions = _allowed(s, order, now)
        docs.append(order_json(order, purchase, chain_now=now, actions=actions))
        note = order.last_error or order.ignored
        if purchase is not None and purchase.decrypted:
            note = f"received: {purchase.decrypted_path}"
        elif order.role == ROLE_SELLER and order.delivered:
            note = note or "delivered"
        rows.append((order.order_id, order.role, order.state.name, format_cpc(order.price), _left(order, now),
                     ", ".join(actions) or "-", note))  # fmt: skip
    text = table(["ORDER", "ROLE", "STATE", "PRICE", "DEADLINE", "YOU MAY", "NOTE"], rows)
    return Result({"account": ctx.address, "chain_time": now, "orders": docs}, text)


def buy(s: Session, args: argparse.Namespace) -> Result:
    buyer = Buyer(s.wallet)
    fee = parse_amount(args.fee) if args.fee is not None else None
    order = buyer.buy(args.market_hash, proxy=args.proxy, proxy2=args.proxy2, time_allowed=args.time_allowed,
                      fee=fee)  # fmt: skip
    text = (f"order {order.order_id} placed: {format_cpc(order.price)} in escrow for {order.market_hash}\n"
            f"  proxy {order.proxy} (secondary {order.proxy2}); fee {format_cpc(order.fee)}; "
            f"the seller must confirm by {_when(order.end_time)}")  # fmt: skip
    return Result(order_json(order), text)


def receive(s: Session, args: argparse.Namespace) -> Result:
    buyer = Buyer(s.wallet)
    purchase = buyer.receive(args.order_id, progress=s.progress())
    s.progress().close()
    order = buyer.book.mine(args.order_id)
    return Result(order_json(order, purchase),
                  f"order {args.order_id}: verified and decrypted to {purchase.decrypted_path}")  # fmt: skip


def confirm(s: Session, args: argparse.Namespace) -> Result:
    """Buyer: accept the delivery. Seller: accept the order (deposit), then deliver to its proxy."""
    ctx = s.wallet
    role = OrderBook(ctx).mine(args.order_id).role
    if role == ROLE_BUYER:
        order = Buyer(ctx).confirm(args.order_id)
        return Result(order_json(order), f"order {args.order_id}: delivery accepted, the seller is paid")
    seller = Seller(ctx)
    order = seller.book.refresh(args.order_id)
    lines = []
    if order.state is OrderState.CREATED:
        order = seller.confirm(args.order_id)
        lines.append(f"order {args.order_id}: accepted (deposit of {format_cpc(order.price)} made)")
    if args.no_deliver:
        return Result(order_json(order), "\n".join(lines) or f"order {args.order_id}: {order.state.name}")
    receipt = seller.deliver(args.order_id)
    order = seller.book.mine(args.order_id)
    lines.append(f"order {args.order_id}: delivered to the proxy ({receipt.size} bytes)")
    return Result(order_json(order), "\n".join(lines))


def dispute(s: Session, args: argparse.Namespace) -> Result:
    order = Buyer(s.wallet).dispute(args.order_id)
    return Result(order_json(order), f"order {args.order_id}: disputed; the order's proxy rules on it first")


def withdraw(s: Session, args: argparse.Namespace) -> Result:
    order = Buyer(s.wallet).withdraw(args.order_id)
    return Result(order_json(order), f"order {args.order_id}: withdrawn, {format_cpc(order.price)} refunded")


def claim_timeout(s: Session, args: argparse.Namespace) -> Result:
    ctx = s.wallet
    role = OrderBook(ctx).mine(args.order_id).role
    party = Buyer(ctx) if role == ROLE_BUYER else Seller(ctx)
    order = party.claim_timeout(args.order_id)
    return Result(order_json(order), f"order {args.order_id}: timeout claimed, now {order.state.name}")


def rate(s: Session, args: argparse.Namespace) -> Result:
    if not 1 <= args.rating <= 5:
        raise ForbiddenAction("rate", "the rating must be between 1 and 5", args.order_id)
    if args.proxy_rating is not None and not 1 <= args.proxy_rating <= 5:
        raise ForbiddenAction("rateProxy", "the rating must be between 1 and 5", args.order_id)
    review = Buyer(s.wallet).rate(args.order_id, args.rating, args.comment, proxy_rating=args.proxy_rating)
    text = f"order {args.order_id}: reviewed {args.rating}/5"
    if args.proxy_rating is not None:
        text += f"; its proxies rated {args.proxy_rating}/5 on chain"
    return Result({"order_id": args.order_id, "review": review, "proxy_rating": args.proxy_rating}, text)


def _when(unix: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix))


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    p = add_command(sub, "buy", buy, "pay for a listing into escrow (the proxy is picked by deposit and credit)",
                    [common])  # fmt: skip
    p.add_argument("market_hash")
    p.add_argument("--proxy", help="the order's proxy (default: the best live one)")
    p.add_argument("--proxy2", help="the secondary proxy (default: the next best)")
    p.add_argument("--time-allowed", type=int, default=DEFAULT_TIME_ALLOWED,
                   help="seconds the seller has to confirm and deliver")  # fmt: skip
    p.add_argument("--fee", help="the proxy's fee (default: 1%% of the price)")
    p = add_command(sub, "orders", orders, "the account's orders: live states, deadlines, what you may do",
                    [common])  # fmt: skip
    p.add_argument("--role", choices=[ROLE_BUYER, ROLE_SELLER])
    p.add_argument("--active", action="store_true", help="only orders still open")
    p.add_argument("--no-sync", action="store_true", help="do not read new chain events first")

    def order_command(name: str, handler: Any, help: str) -> Parser:
        parser = add_command(sub, name, handler, help, [common])
        parser.add_argument("order_id", type=int)
        return parser

    order_command("receive", receive, "download, verify and decrypt a purchase (buyer)")
    p = order_command("confirm", confirm,
                      "buyer: accept the delivery; seller: accept the order and deliver it to its proxy")  # fmt: skip
    p.add_argument("--no-deliver", action="store_true", help="seller: accept only (deliver later)")
    order_command("dispute", dispute, "contest the delivery (buyer)")
    order_command("withdraw", withdraw, "take the payment back before the seller's data was fetched (buyer)")
    order_command("claim-timeout", claim_timeout, "close an order whose deadline passed")
    p = order_command("rate", rate, "review a completed purchase on the market (buyer)")
    p.add_argument("rating", type=int, help="1 to 5")
    p.add_argument("--comment", default="")
    p.add_argument("--proxy-rating", type=int, help="also rate the order's proxies on chain (1 to 5)")

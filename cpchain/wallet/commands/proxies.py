"""`pdash proxy list`: the live proxies with their on-chain deposit and credit."""

from __future__ import annotations

import argparse

from cpchain.chain.connection import connect
from cpchain.chain.escrow import Escrow
from cpchain.proxy.discovery import DiscoverySettings
from cpchain.proxy.protocol import Domain
from cpchain.wallet.commands.base import Parser, Result, Session, add_command, format_cpc, table
from cpchain.wallet.context import ProxyDirectory
from cpchain.wallet.errors import translated


def list_(s: Session, args: argparse.Namespace) -> Result:
    """No password needed: the tracker's list and the deposits are public."""
    with translated("connect to the chain"):
        escrow = Escrow.from_config(connect(s.config), s.config)
    discovery = DiscoverySettings.from_config(s.config)
    directory = ProxyDirectory(escrow, Domain(escrow.deployment.chain_id, escrow.address),
                               tracker=discovery.tracker, timeout=discovery.tracker_timeout)  # fmt: skip
    standings = directory.standings()
    docs = [{"address": p.address, "host": p.record.host, "ports": dict(p.record.ports), "deposit_wei": str(p.deposit),
             "unlock_at": p.unlock_at, "credit": p.credit, "ratings": p.rating_count, "eligible": p.eligible,
             "fingerprint": p.record.tls_fingerprint} for p in standings]  # fmt: skip
    rows = [(p.address, f"{p.record.host}:{p.record.ports['control']}", format_cpc(p.deposit),
             "-" if p.credit is None else f"{p.credit:.2f} ({p.rating_count})",
             "yes" if p.eligible else "no (leaving)" if p.unlock_at else "no") for p in standings]  # fmt: skip
    return Result({"proxies": docs}, table(["PROXY", "CONTROL", "DEPOSIT", "CREDIT", "ELIGIBLE"], rows))


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("proxy", help="the proxies that carry trades", description="The proxies.")
    proxies = group.add_subparsers(dest="proxy_command", required=True, metavar="ACTION")
    add_command(proxies, "list", list_, "the live proxies, best first: deposit, credit (average rating)", [common])

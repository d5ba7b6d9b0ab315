#!/usr/bin/env python3
"""Gas of one complete trade on the v2 escrow, measured on a real anvil node.

Deploys the contract on a fresh anvil, bonds a proxy (one-time setup, not counted), then
runs place -> seller confirm -> fetched -> delivered -> buyer confirm. Payouts are pushed
inside buyerConfirmDeliver, so no further calls are needed for every party to hold its
money. Prints each step, then the figures last as `name: value unit`.
Run: .venv/bin/python bench/gas.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account

from cpchain.chain.escrow import BuyerAgent, Escrow, EscrowParams, ProxyAgent, SellerAgent, deploy
from cpchain.chain.node import anvil_binary, wait_ready
from cpchain.chain.tx import TxSender

ETHER = 10**18
# Quoted from the issue: the 2018 contract (solc 0.4.24, optimizer) on anvil, same trade.
ORIGINAL_2018_GAS = 855_000
GOAL_GAS = 250_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    binary = anvil_binary()
    if binary is None:
        print("gas: anvil not installed; run bin/setup", file=sys.stderr)
        return 1
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "0", "--prune-history", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w3 = wait_ready(f"http://127.0.0.1:{port}", proc=proc)
        bank = Account.create()
        w3.provider.make_request("anvil_setBalance", [bank.address, hex(10**30)])  # type: ignore[arg-type]
        bank_tx = TxSender(w3, bank, poll_interval=0.01)
        people = {name: Account.create() for name in ("buyer", "seller", "proxy", "arbiter")}
        for account in people.values():
            bank_tx.send_value(account.address, 1000 * ETHER)
        params = EscrowParams(ETHER, 600, 30 * 86400, 3600, 86400, 7 * 86400)
        escrow = Escrow(w3, deploy(bank_tx, people["arbiter"].address, params))

        def sender(name: str) -> TxSender:
            return TxSender(w3, people[name], poll_interval=0.01)

        buyer, seller = BuyerAgent(escrow, sender("buyer")), SellerAgent(escrow, sender("seller"))
        proxy = ProxyAgent(escrow, sender("proxy"))
        setup_gas = proxy.deposit(5 * ETHER)["gasUsed"]

        data_hash = os.urandom(32)
        order_id, place_receipt = buyer.place_order_with_receipt(
            desc_hash=os.urandom(32),
            data_hash=data_hash,
            buyer_key=os.urandom(32),
            seller=people["seller"].address,
            proxy=people["proxy"].address,
            price=10 * ETHER,
            fee=ETHER // 10,
            time_allowed=86400,
        )
        steps = [
            ("placeOrder", place_receipt["gasUsed"]),
            ("sellerConfirm", seller.confirm(order_id)["gasUsed"]),
            ("proxyFetched", proxy.claim_fetched(order_id)["gasUsed"]),
            ("proxyDelivered", proxy.claim_delivered(order_id, data_hash)["gasUsed"]),
            ("buyerConfirmDeliver", buyer.confirm(order_id)["gasUsed"]),
        ]
        assert escrow.status(order_id).state.name == "FINISHED"
        assert w3.eth.get_balance(escrow.address) == escrow.proxy_account(people["proxy"].address)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    total = sum(gas for _, gas in steps)
    print("step gas (anvil, one complete trade, payouts pushed in the confirm):")
    for name, gas in steps:
        print(f"  {name:22} {gas:>8,}")
    print(f"  {'(setup) proxyDeposit':22} {setup_gas:>8,}  one-time, not per trade")
    print(f"reference: 2018 contract ~{ORIGINAL_2018_GAS:,} gas per trade (quoted from the issue, not re-measured)")
    for name, gas in steps:
        print(f"gas {name}: {gas} gas")
    print(f"gas per completed trade: {total} gas")
    print(f"goal per completed trade: {GOAL_GAS} gas")
    print(f"saving vs 2018 contract: {100 * (1 - total / ORIGINAL_2018_GAS):.1f} %")
    return 0 if total <= GOAL_GAS else 2


if __name__ == "__main__":
    sys.exit(main())

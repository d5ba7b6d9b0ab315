#!/usr/bin/env python3
"""Gas of one complete trade on the v2 escrow and on the 2018 baseline, on a real anvil.

v2: deploys the contract on a fresh anvil, bonds a proxy (one-time setup, not counted),
then runs place -> seller confirm -> fetched -> delivered -> buyer confirm. Payouts are
pushed inside buyerConfirmDeliver, so no further call is needed for every party to hold its
money. Baseline, in the same run: bench/baseline/Escrow2018.sol (the 2018 contract's
storage layout and trade path, re-implemented from the reference description, solc 0.4.24
with the optimizer) runs the same trade with a 550-byte RSA buyer key, as the 2018 wallet
did. Prints each step, then the figures last as `name: value unit`.
Run: .venv/bin/python bench/gas.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account

from cpchain.chain.artifact import REPO_ROOT
from cpchain.chain.escrow import BuyerAgent, Escrow, EscrowParams, ProxyAgent, SellerAgent, deploy
from cpchain.chain.node import anvil_binary, wait_ready
from cpchain.chain.tx import TxSender
from cpchain.netutil import free_port

ETHER = 10**18
# The figure for the original 2018 contract, for comparison with our re-implementation.
QUOTED_2018_GAS = 855_000
GOAL_GAS = 250_000
BASELINE_SOURCE = Path(__file__).with_name("baseline") / "Escrow2018.sol"


def compile_baseline() -> dict[str, Any]:
    """ABI and bytecode of the 2018 baseline, compiled with npm solc 0.4.24 via the shim."""
    request = {
        "language": "Solidity",
        "sources": {"Escrow2018.sol": {"content": BASELINE_SOURCE.read_text(encoding="utf-8")}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "chain" / "solc-shim.js"), "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PDASH_SOLC_MODULE": "solc-0.4.24"},
    ).stdout
    result = json.loads(out)
    errors = [e for e in result.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise RuntimeError(errors[0]["formattedMessage"])
    contract = result["contracts"]["Escrow2018.sol"]["Escrow2018"]
    return {"abi": contract["abi"], "bytecode": "0x" + contract["evm"]["bytecode"]["object"]}


def baseline_trade(w3: Any, senders: dict[str, TxSender], bank: TxSender) -> list[tuple[str, int]]:
    """The same trade on the 2018 layout: proxy = secondary proxy, 550-byte RSA key."""
    compiled = compile_baseline()
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    address = bank.transact(factory.constructor())["contractAddress"]
    old = w3.eth.contract(address=address, abi=compiled["abi"])
    proxy = senders["proxy"].address
    price, fee = 10 * ETHER, ETHER // 10
    steps = [
        (
            "placeOrder",
            senders["buyer"].transact(
                old.functions.placeOrder(
                    os.urandom(32), os.urandom(550), senders["seller"].address, proxy, proxy, fee, 86400
                ),
                value=price,
            ),
        ),
        ("sellerConfirm", senders["seller"].transact(old.functions.sellerConfirm(1), value=price)),
        ("proxyFetched", senders["proxy"].transact(old.functions.proxyFetched(1))),
        ("proxyDelivered", senders["proxy"].transact(old.functions.proxyDelivered(b"dummy".ljust(32, b"\0"), 1))),
        ("buyerConfirmDeliver", senders["buyer"].transact(old.functions.buyerConfirmDeliver(1))),
    ]
    return [(name, int(receipt["gasUsed"])) for name, receipt in steps]


def main() -> int:
    binary = anvil_binary()
    if binary is None:
        print("gas: anvil not installed; run bin/setup", file=sys.stderr)
        return 1
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "0", "--prune-history", "256", "--silent"],
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
        baseline = baseline_trade(w3, {name: sender(name) for name in people}, bank_tx)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    total = sum(gas for _, gas in steps)
    baseline_total = sum(gas for _, gas in baseline)
    print(f"step gas on anvil, one complete trade:  {'v2':>9} {'2018 layout':>12}")
    for (name, gas), (_, old_gas) in zip(steps, baseline, strict=True):
        print(f"  {name:36} {gas:>9,} {old_gas:>12,}")
    print(f"  {'(setup, once per proxy) proxyDeposit':36} {setup_gas:>9,}")
    print(f"the issue quotes ~{QUOTED_2018_GAS:,} gas for the original 2018 contract on the same trade")
    for name, gas in steps:
        print(f"gas {name}: {gas} gas")
    print(f"baseline 2018 gas per completed trade: {baseline_total} gas")
    print(f"gas per completed trade: {total} gas")
    print(f"goal per completed trade: {GOAL_GAS} gas")
    print(f"saving vs 2018 baseline: {100 * (1 - total / baseline_total):.1f} %")
    return 0 if total <= GOAL_GAS else 2


if __name__ == "__main__":
    sys.exit(main())

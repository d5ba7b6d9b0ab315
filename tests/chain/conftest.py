"""Chain fixtures: every contract test runs on the in-process chain and on anvil.

A deployed escrow with funded role accounts is built once per backend; each test runs
from a snapshot of that state, so tests are independent and fast.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from cpchain.chain.connection import dev_bank, in_process_chain, revert, snapshot
from cpchain.chain.escrow import ArbiterAgent, BuyerAgent, Escrow, EscrowParams, ProxyAgent, SellerAgent, deploy
from cpchain.chain.node import anvil_binary, wait_ready
from cpchain.chain.tx import TxSender
from cpchain.netutil import free_port

ETHER = 10**18
PARAMS = EscrowParams(
    min_proxy_deposit=ETHER,
    min_time_allowed=600,
    max_time_allowed=30 * 86400,
    confirm_window=3600,
    dispute_window=86400,
    arbiter_window=7 * 86400,
)
BACKENDS = ["in-process", "anvil"]


@dataclass
class AnvilProcess:
    proc: subprocess.Popen[bytes]
    url: str
    w3: Web3

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_anvil() -> AnvilProcess:
    binary = anvil_binary()
    if binary is None:
        pytest.fail("anvil is not installed: run bin/setup")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", "31337", "--accounts", "0",
         "--prune-history", "256", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return AnvilProcess(proc, url, wait_ready(url, proc=proc))


def funded_bank(w3: Web3, backend: str) -> LocalAccount:
    if backend == "in-process":
        return dev_bank(w3)
    bank: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [bank.address, hex(10**30)])  # type: ignore[arg-type]
    return bank


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    node = start_anvil()
    yield node
    node.stop()


@dataclass
class World:
    """A deployed escrow and one agent per role, all funded; proxies hold deposits."""

    w3: Web3
    backend: str
    escrow: Escrow
    accounts: dict[str, LocalAccount]
    buyer: BuyerAgent
    seller: SellerAgent
    proxy: ProxyAgent
    proxy2: ProxyAgent
    arbiter: ArbiterAgent
    bank: TxSender
    extra: dict[str, object] = field(default_factory=dict)

    def sender(self, name: str) -> TxSender:
        return TxSender(self.w3, self.accounts[name], poll_interval=0.01)

    def address(self, name: str) -> str:
        return self.accounts[name].address

    def balance(self, name: str) -> int:
        return int(self.w3.eth.get_balance(self.address(name)))

    def place(self, **overrides: object) -> int:
        """A valid order from buyer to seller via proxy (overrides change any argument)."""
        args: dict[str, object] = {
            "desc_hash": os.urandom(32),
            "data_hash": b"\xda" * 32,
            "buyer_key": os.urandom(32),
            "seller": self.address("seller"),
            "proxy": self.address("proxy"),
            "proxy2": self.address("proxy"),
            "price": 10 * ETHER,
            "fee": ETHER // 10,
            "time_allowed": 86400,
        }
        args.update(overrides)
        return self.buyer.place_order(**args)  # type: ignore[arg-type]


ROLES = ["buyer", "seller", "proxy", "proxy2", "arbiter", "other"]


def build_world(w3: Web3, backend: str) -> World:
    bank = TxSender(w3, funded_bank(w3, backend), poll_interval=0.01)
    accounts: dict[str, LocalAccount] = {name: Account.create() for name in ROLES}
    for account in accounts.values():
        bank.send_value(account.address, 1000 * ETHER)
    escrow = Escrow(w3, deploy(bank, accounts["arbiter"].address, PARAMS))

    def sender(name: str) -> TxSender:
        return TxSender(w3, accounts[name], poll_interval=0.01)

    world = World(
        w3=w3,
        backend=backend,
        escrow=escrow,
        accounts=accounts,
        buyer=BuyerAgent(escrow, sender("buyer")),
        seller=SellerAgent(escrow, sender("seller")),
        proxy=ProxyAgent(escrow, sender("proxy")),
        proxy2=ProxyAgent(escrow, sender("proxy2")),
        arbiter=ArbiterAgent(escrow, sender("arbiter")),
        bank=bank,
    )
    world.proxy.deposit(5 * ETHER)
    world.proxy2.deposit(5 * ETHER)
    return world


@pytest.fixture(scope="session")
def worlds() -> dict[str, tuple[World, object]]:
    return {}


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, worlds: dict[str, tuple[World, object]]) -> Iterator[World]:
    """A fresh-looking World on each backend (restored from a snapshot after each test)."""
    backend: str = request.param
    if backend not in worlds:
        w3 = request.getfixturevalue("anvil").w3 if backend == "anvil" else in_process_chain()
        built = build_world(w3, backend)
        worlds[backend] = (built, snapshot(w3))
    built, snap = worlds[backend]
    yield built
    revert(built.w3, snap)
    # evm_revert consumes the snapshot on anvil; take a new one of the same state.
    worlds[backend] = (built, snapshot(built.w3))
    built.escrow._terms.clear()

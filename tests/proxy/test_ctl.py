"""bin/proxy-ctl: the operator's deposit, standing, withdrawal and dispute commands on anvil."""

from __future__ import annotations

import subprocess

import pytest

from cpchain.chain.connection import time_travel
from cpchain.chain.escrow import ProxyAgent
from cpchain.chain.tx import TxSender
from cpchain.types import OrderState, Verdict
from tests.proxy.conftest import ETHER, ROOT, Chain, ProxyProc, bonded_account, make_trade


@pytest.fixture
def operator(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> ProxyProc:
    """A bonded proxy's home (config, keystore, password file); the proxy itself is not started."""
    return ProxyProc("operator", tmp_path_factory.mktemp("operator"), chain, bonded_account(chain))


def ctl(operator: ProxyProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "bin" / "proxy-ctl"), *args], env=operator.env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_show_and_deposit(chain: Chain, operator: ProxyProc) -> None:
    shown = ctl(operator, "show")
    assert shown.returncode == 0, shown.stderr
    assert operator.address in shown.stdout and "deposit:  5 ETH" in shown.stdout and "bonded" in shown.stdout
    assert "no ratings yet" in shown.stdout
    more = ctl(operator, "deposit", "1.5")
    assert more.returncode == 0 and "deposit:  6.5 ETH" in more.stdout
    assert chain.world.escrow.proxy_account(operator.address)[0] == 65 * ETHER // 10
    bad = ctl(operator, "deposit", "lots")
    assert (
        bad.returncode == 1
        and bad.stderr.strip().startswith("proxy-ctl: not an amount")
        and "Traceback" not in bad.stderr
    )
    assert ctl(operator, "trades").stdout.strip() == "no trades yet"


def test_withdraw_requests_then_withdraws_after_the_delay(chain: Chain, operator: ProxyProc) -> None:
    requested = ctl(operator, "withdraw")
    assert requested.returncode == 0 and "withdrawal requested" in requested.stdout
    early = ctl(operator, "withdraw")
    assert early.returncode == 1 and "unlocks at" in early.stderr
    _, unlock_at = chain.world.escrow.proxy_account(operator.address)
    time_travel(chain.world.w3, unlock_at - chain.world.escrow.now() + 1)
    before = chain.world.w3.eth.get_balance(operator.address)
    done = ctl(operator, "withdraw")
    assert done.returncode == 0, done.stderr
    assert "withdrew 5 ETH; 0 ETH remain" in done.stdout
    assert chain.world.w3.eth.get_balance(operator.address) > before + 4 * ETHER


def test_answer_a_dispute(chain: Chain, operator: ProxyProc) -> None:
    world = chain.world
    trade = make_trade(chain, operator.address)
    agent = ProxyAgent(world.escrow, TxSender(world.w3, operator.account, poll_interval=0.01))
    not_yet = ctl(operator, "dispute", str(trade.order_id), "--at-fault", "seller")
    assert not_yet.returncode == 1 and "not disputed" in not_yet.stderr
    agent.claim_fetched(trade.order_id)
    agent.claim_delivered(trade.order_id, trade.terms.data_hash)
    world.buyer.dispute(trade.order_id)
    ruled = ctl(operator, "dispute", str(trade.order_id), "--at-fault", "seller")
    assert ruled.returncode == 0, ruled.stderr
    status = world.escrow.status(trade.order_id)
    assert status.state is OrderState.DISPUTED and status.verdict is Verdict.SELLER_AT_FAULT
    again = ctl(operator, "dispute", str(trade.order_id), "--at-fault", "buyer")
    assert again.returncode == 1 and "verdict already given" in again.stderr

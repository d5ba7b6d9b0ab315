"""Crash recovery: the proxy process is killed (SIGKILL) at each step of a trade and restarted.

Each trade still completes, nothing is lost, and every claim is on chain exactly once: one
ProxyFetched and one ProxyDelivered event, and exactly one transaction per claim from the
proxy's account (no second, reverted attempt).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpchain.crypto import aead, ecies
from cpchain.proxy.client import ProxyUnreachable
from cpchain.types import OrderState
from tests.proxy.conftest import Chain, ProxyProc, Trade, bonded_account, make_trade


@pytest.fixture(scope="module")
def proxy(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProc]:
    proc = ProxyProc("crashy", tmp_path_factory.mktemp("crashy"), chain, bonded_account(chain))
    yield proc
    proc.kill()


def events(chain: Chain, name: str, order_id: int) -> int:
    escrow = chain.world.escrow
    event = getattr(escrow.contract.events, name)()
    return len(event.get_logs(argument_filters={"id": order_id}, from_block=escrow.deployment.block))


def sent_transactions(chain: Chain, proxy: ProxyProc) -> int:
    return int(chain.world.w3.eth.get_transaction_count(proxy.address))


def send_seller_data(chain: Chain, proxy: ProxyProc, trade: Trade) -> str:
    receipt = chain.client("seller").send_seller_data(proxy.endpoint, trade.order_id, trade.product,
                                                      trade.locator.to_json(), wrapped_key=trade.wrapped_key,
                                                      buyer_key=trade.terms.buyer_key)  # fmt: skip
    return receipt.fetched_tx


def complete(chain: Chain, proxy: ProxyProc, trade: Trade, tmp_path: Path) -> None:
    """The buyer's side, then checks that each claim happened once."""
    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    cipher = buyer.download(grant, tmp_path / f"{trade.order_id}.bin", trade.terms)
    aead.decrypt_file(ecies.unwrap_key(trade.buyer_secret, grant.wrapped_key), cipher, tmp_path / "plain")
    assert (tmp_path / "plain").read_bytes() == trade.plaintext.read_bytes()
    buyer.wait_delivered(grant, trade.terms)
    chain.world.buyer.confirm(trade.order_id)
    assert chain.world.escrow.status(trade.order_id).state is OrderState.FINISHED
    assert events(chain, "ProxyFetched", trade.order_id) == 1
    assert events(chain, "ProxyDelivered", trade.order_id) == 1


@pytest.mark.parametrize("point", ["after-request", "after-fetch", "before-send-fetched", "after-send-fetched"])
def test_a_crash_while_handling_seller_data(chain: Chain, proxy: ProxyProc, tmp_path: Path, point: str) -> None:
    proxy.start(failpoints=point)
    trade = make_trade(chain, proxy.address)
    before = sent_transactions(chain, proxy)
    with pytest.raises(ProxyUnreachable):
        send_seller_data(chain, proxy, trade)
    assert proxy.wait_exit() == -signal.SIGKILL
    proxy.start()  # resumes the pending fetch or claim by itself
    fetched_tx = send_seller_data(chain, proxy, trade)  # the seller's retry gets the answer
    assert fetched_tx.startswith("0x") and send_seller_data(chain, proxy, trade) == fetched_tx
    assert sent_transactions(chain, proxy) == before + 1
    complete(chain, proxy, trade, tmp_path)
    assert sent_transactions(chain, proxy) == before + 2
    proxy.stop()


@pytest.mark.parametrize("point", ["before-send-delivered", "after-send-delivered"])
def test_a_crash_while_claiming_delivery(chain: Chain, proxy: ProxyProc, tmp_path: Path, point: str) -> None:
    proxy.start(failpoints=point)
    trade = make_trade(chain, proxy.address)
    before = sent_transactions(chain, proxy)
    send_seller_data(chain, proxy, trade)
    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    buyer.download(grant, tmp_path / "cipher.bin", trade.terms, top_up=False)  # the claim starts after the last byte
    assert proxy.wait_exit() == -signal.SIGKILL
    proxy.start()
    delivered = buyer.wait_delivered(grant, trade.terms)
    assert delivered.delivered_tx.startswith("0x")
    assert sent_transactions(chain, proxy) == before + 2
    chain.world.buyer.confirm(trade.order_id)
    assert events(chain, "ProxyDelivered", trade.order_id) == 1
    proxy.stop()


def test_a_crash_during_the_download(chain: Chain, proxy: ProxyProc, tmp_path: Path) -> None:
    """Killed mid-transfer: the buyer resumes from its partial file, fetches again whatever the
    restarted proxy has no record of sending, and the proxy attests delivery once."""
    proxy.start()
    trade = make_trade(chain, proxy.address, size=48 << 20)
    send_seller_data(chain, proxy, trade)
    crashed: list[int] = []

    def progress(done: int, total: int) -> None:
        if not crashed and done >= 8 << 20:
            crashed.append(done)
            proxy.kill()
            proxy.start()

    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    with aead.decrypting_to(ecies.unwrap_key(trade.buyer_secret, grant.wrapped_key), tmp_path / "plain") as decryptor:
        buyer.download(grant, tmp_path / "cipher.bin", trade.terms, progress=progress, sink=decryptor)
        assert crashed and crashed[0] < trade.ciphertext.stat().st_size
        # The download resumed where its file ended, which is where the decryptor was too.
        assert not decryptor.abandoned
    assert (tmp_path / "plain").read_bytes() == trade.plaintext.read_bytes()
    buyer.wait_delivered(grant, trade.terms)
    assert events(chain, "ProxyDelivered", trade.order_id) == 1
    proxy.stop()

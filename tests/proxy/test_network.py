"""A proxy network on 127.0.0.1: tracker and DHT boot node (bin/proxy-first-node), three proxies.

Buyers pick a proxy from the tracker's live list with its on-chain standing, sellers and
buyers find the order's proxies through the DHT (records signed by the proxies, TLS pinned),
and complete trades, including one where the order's first proxy dies and its secondary
proxy serves the buyer.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpchain.proxy.client import Endpoint, pick_proxy, resolve
from cpchain.proxy.tracker import list_live_proxies
from cpchain.storage.proxy import ProxyStorage
from cpchain.types import OrderState
from tests.proxy.conftest import (
    ROOT,
    Chain,
    ProxyProc,
    bonded_account,
    make_trade,
    service_port,
    start_all,
)
from tests.proxy.test_trade import finish_trade


@dataclass
class Network:
    proxies: dict[str, ProxyProc]
    tracker: tuple[str, int]
    boot: tuple[str, int]

    def resolve(self, chain: Chain, address: str) -> Endpoint:
        return resolve(address, [self.boot], chain.domain, timeout=10)


def first_node(chain: Chain, home: Path, dht_port: int, tracker_port: int) -> subprocess.Popen[str]:
    config = home / "first-node.toml"
    config.write_text(
        f'[core]\nrc_dir = "{home}"\n[chain]\nregistrar_json = "{chain.registrar}"\n'
        f'[proxy]\nboot_nodes = ["127.0.0.1:{dht_port}"]\ntracker = "127.0.0.1:{tracker_port}"\n'
        f"[proxy.discovery]\nfirst_node_dht_port = {dht_port}\nfirst_node_tracker_port = {tracker_port}\n"
        "heartbeat_interval = 0.5\npeer_expiry = 20.0\nrpc_timeout = 2.0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")} | {"CPCHAIN_HOME": str(home)}
    with (home / "first-node.log").open("w") as log:
        proc = subprocess.Popen([str(ROOT / "bin" / "proxy-first-node"), "--config", str(config)], env=env,
                                text=True, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], 30)
    assert readable, "proxy-first-node did not start"
    line = proc.stdout.readline()
    assert "tracker on" in line, line
    return proc


@pytest.fixture(scope="module")
def network(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    base = tmp_path_factory.mktemp("network")
    dht_port, tracker_port = service_port(), service_port()
    boot = first_node(chain, base, dht_port, tracker_port)
    discovery = {"boot_nodes": [f"127.0.0.1:{dht_port}"], "tracker": f"127.0.0.1:{tracker_port}"}
    accounts = {"proxy": chain.world.accounts["proxy"], "proxy2": chain.world.accounts["proxy2"],
                "proxy3": bonded_account(chain)}  # fmt: skip
    procs = {name: ProxyProc(name, base / name, chain, account, dict(discovery)) for name, account in accounts.items()}
    try:
        start_all(procs.values())
        net = Network(procs, ("127.0.0.1", tracker_port), ("127.0.0.1", dht_port))
        deadline = time.monotonic() + 30
        while len(live(chain, net)) < len(procs):
            assert time.monotonic() < deadline, "the proxies did not all register with the tracker"
            time.sleep(0.2)
        yield net
    finally:
        for proc in procs.values():
            proc.stop()
        boot.terminate()
        boot.wait(timeout=10)


def live(chain: Chain, net: Network) -> set[str]:
    records = asyncio.run(list_live_proxies(net.tracker, chain_id=chain.domain.chain_id,
                                            contract=chain.domain.contract))  # fmt: skip
    return {r.address for r in records}


def test_buyers_see_every_live_proxy_with_its_standing(chain: Chain, network: Network) -> None:
    assert live(chain, network) == {p.address for p in network.proxies.values()}
    chosen = pick_proxy(network.tracker, chain.world.escrow)
    assert chosen.address in live(chain, network) and chosen.deposit >= 5 * 10**18 and chosen.eligible


def test_the_dht_gives_each_proxys_signed_endpoint_and_pinned_certificate(chain: Chain, network: Network) -> None:
    for proc in network.proxies.values():
        endpoint = network.resolve(chain, proc.address)
        assert endpoint == proc.endpoint  # host, both ports and the certificate fingerprint


def test_a_trade_found_entirely_through_discovery(chain: Chain, network: Network, tmp_path: Path) -> None:
    """The buyer picks the order's proxy from the tracker; the seller stores the file on another
    proxy found in the DHT; both reach the order's proxy through its DHT record."""
    chosen = pick_proxy(network.tracker, chain.world.escrow)
    others = [p for p in network.proxies.values() if p.address != chosen.address]
    store = network.resolve(chain, others[0].address)
    trade = make_trade(chain, chosen.address, proxy2=others[1].address, storage_type="proxy", confirm=False)
    trade.locator = ProxyStorage(endpoint=store, account=chain.world.accounts["seller"], domain=chain.domain).upload(
        trade.ciphertext
    )
    chain.world.seller.confirm(trade.order_id)
    order_proxy = network.resolve(chain, trade.terms.proxy)
    proc = next(p for p in network.proxies.values() if p.address == order_proxy.address)
    finish_trade(chain, proc, trade, tmp_path)


def test_the_secondary_proxy_serves_when_the_first_is_gone(chain: Chain, network: Network, tmp_path: Path) -> None:
    first, second = network.proxies["proxy2"], network.proxies["proxy3"]
    trade = make_trade(chain, first.address, proxy2=second.address)
    seller = chain.client("seller")
    for proc in (first, second):
        seller.send_seller_data(network.resolve(chain, proc.address), trade.order_id, trade.product,
                                trade.locator.to_json(), wrapped_key=trade.wrapped_key,
                                buyer_key=trade.terms.buyer_key)  # fmt: skip
    assert chain.world.escrow.status(trade.order_id).state is OrderState.PROXY_FETCHED
    first.kill()
    try:
        buyer = chain.client("buyer")
        grant = buyer.send_buyer_data(network.resolve(chain, second.address), trade.order_id, trade.terms)
        buyer.download(grant, tmp_path / "cipher.bin", trade.terms)
        buyer.wait_delivered(grant, trade.terms)
        escrow = chain.world.escrow
        fetched = escrow.contract.events.ProxyFetched().get_logs(argument_filters={"id": trade.order_id},
                                                                 from_block=escrow.deployment.block)  # fmt: skip
        delivered = escrow.contract.events.ProxyDelivered().get_logs(argument_filters={"id": trade.order_id},
                                                                     from_block=escrow.deployment.block)  # fmt: skip
        assert [e["args"]["proxy"] for e in fetched] == [first.address]
        assert [e["args"]["proxy"] for e in delivered] == [second.address]
        chain.world.buyer.confirm(trade.order_id)
    finally:
        first.start()

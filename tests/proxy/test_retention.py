"""Retention: served files go once their order is final or too old (never while disputed),
uploads expire, and old trade rows are forgotten, so nothing on the proxy grows without bound."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpchain.proxy.client import ProxyRefused
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.storage.proxy import ProxyStorage
from tests.proxy.conftest import Chain, ProxyProc, Trade, bonded_account, make_trade, start_all
from tests.proxy.test_fileserver import get
from tests.proxy.test_refusals import seller_envelope, status_of


@pytest.fixture(scope="module")
def keeper_and_forgetter(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProc, ...]]:
    """`keeper` keeps files a day unless their order is final; `forgetter` keeps them 2 s."""
    base = tmp_path_factory.mktemp("retention")
    keeps: dict[str, object] = {"retention_seconds": 86400, "gc_interval_seconds": 0.3}
    forgets: dict[str, object] = {"retention_seconds": 2, "upload_retention_seconds": 1, "gc_interval_seconds": 0.3}
    keeper = ProxyProc("keeper", base / "keeper", chain, bonded_account(chain), keeps)
    forgetter = ProxyProc("forgetter", base / "forgetter", chain, bonded_account(chain), forgets)
    start_all([keeper, forgetter])
    yield keeper, forgetter
    keeper.stop()
    forgetter.stop()


def order_file(proxy: ProxyProc, order_id: int) -> Path:
    return proxy.home / "proxy" / "server_root" / "orders" / f"{order_id}.bin"


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def fetched(chain: Chain, proxy: ProxyProc) -> Trade:
    trade = make_trade(chain, proxy.address)
    assert status_of(chain, proxy, seller_envelope(chain, trade)).status == pb.OK
    assert order_file(proxy, trade.order_id).exists()
    return trade


def delivered(chain: Chain, proxy: ProxyProc, trade: Trade, tmp_path: Path) -> None:
    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    buyer.download(grant, tmp_path / f"{trade.order_id}.bin", trade.terms)
    buyer.wait_delivered(grant, trade.terms)


def test_files_go_when_the_order_is_final_but_stay_while_disputed(
    chain: Chain, keeper_and_forgetter: tuple[ProxyProc, ...], tmp_path: Path
) -> None:
    keeper = keeper_and_forgetter[0]
    finished, disputed, pending = fetched(chain, keeper), fetched(chain, keeper), fetched(chain, keeper)
    for trade in (finished, disputed):
        delivered(chain, keeper, trade, tmp_path)
    chain.world.buyer.confirm(finished.order_id)
    chain.world.buyer.dispute(disputed.order_id)
    eventually(lambda: not order_file(keeper, finished.order_id).exists())
    time.sleep(1.0)  # several collection rounds
    assert order_file(keeper, disputed.order_id).exists() and order_file(keeper, pending.order_id).exists()
    grant = chain.client("buyer").send_buyer_data(keeper.endpoint, disputed.order_id, disputed.terms)
    assert grant.delivered  # the evidence is still served during the dispute


def test_old_files_uploads_and_rows_are_forgotten(chain: Chain, keeper_and_forgetter: tuple[ProxyProc, ...]) -> None:
    forgetter = keeper_and_forgetter[1]
    trade = fetched(chain, forgetter)
    locator = ProxyStorage(endpoint=forgetter.endpoint, account=chain.world.accounts["seller"],
                           domain=chain.domain).upload(trade.ciphertext)  # fmt: skip
    path = "/store/" + str(locator.params["url"]).rsplit("/", 1)[1]
    assert get(forgetter, path)[0] == 200
    eventually(lambda: not order_file(forgetter, trade.order_id).exists())
    with pytest.raises(ProxyRefused) as removed:
        chain.client("buyer").send_buyer_data(forgetter.endpoint, trade.order_id, trade.terms)
    assert removed.value.status in (pb.WRONG_STATE, pb.NOT_READY)
    eventually(lambda: get(forgetter, path)[0] == 404)
    assert not list((forgetter.home / "proxy" / "server_root" / "store").iterdir())

    def forgotten() -> bool:
        try:
            chain.client("buyer").send_buyer_data(forgetter.endpoint, trade.order_id, trade.terms)
        except ProxyRefused as exc:
            return exc.status == pb.NOT_READY and "no verified data" in exc.reason
        return False

    eventually(forgotten)

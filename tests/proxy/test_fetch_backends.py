"""Full file trades through a real proxy process whose seller stores the ciphertext on IPFS
(the session's js-ipfs daemon) or S3 (the session's moto server, fetched by the proxy through
the presigned URL in the locator), and the proxy operator's policy refusing a plugin type or
a host before anything is fetched or claimed.

The IPFS and S3 servers listen on 127.0.0.1, an address a proxy refuses by default (a seller
must not make it fetch from the operator's internal network), so the `open` proxy here is
configured as an operator would for storage on its own host: `fetch_allow_internal = true`
with `fetch_hosts = ["127.0.0.1"]`, so only that one host is reachable. The `strict` proxy
keeps the default (no internal addresses) and does not fetch IPFS at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpchain.crypto.hashing import sha256_file
from cpchain.proxy.client import ProxyRefused
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.storage import IpfsStorage, Locator, S3Credentials, S3Settings, S3Storage
from cpchain.storage.devservers import JsIpfsDaemon, MotoS3
from cpchain.types import OrderState
from tests.conftest import S3_BUCKET
from tests.proxy.conftest import Chain, ProxyProc, Trade, make_trade, start_all
from tests.proxy.test_trade import finish_trade

SIZE = (5 << 20) + 12_345  # more than one 1 MiB chunk and, for S3, a two-part multipart upload
# moto accepts any key pair; these stand for the seller's own, which never leave the seller.
SELLER_S3 = S3Credentials("AKIAPDASHSELLER00001", "pdash-seller-secret-0a1b2c3d4e5f")

Upload = Callable[[Path], Locator]


@pytest.fixture(scope="module")
def backend_proxies(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ProxyProc]]:
    """`open` (the world's "proxy"): fetches ipfs and s3 from 127.0.0.1 only; `strict` (the
    world's "proxy2"): fetches only s3, from public addresses only."""
    base = tmp_path_factory.mktemp("backend-proxies")
    policies: dict[str, tuple[str, dict[str, object]]] = {
        "open": ("proxy", {"fetch_types": ["ipfs", "s3"], "fetch_allow_internal": True, "fetch_hosts": ["127.0.0.1"]}),
        "strict": ("proxy2", {"fetch_types": ["s3"], "fetch_allow_internal": False, "fetch_hosts": []}),
    }
    procs = {name: ProxyProc(name, base / name, chain, chain.world.accounts[account], policy)
             for name, (account, policy) in policies.items()}  # fmt: skip
    try:
        start_all(procs.values())
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture
def seller_ipfs(ipfs_daemon: JsIpfsDaemon) -> IpfsStorage:
    """The seller's own IPFS node: add + pin; the locator names its API on 127.0.0.1."""
    return IpfsStorage(ipfs_daemon.api)


@pytest.fixture
def seller_s3(moto: MotoS3) -> S3Storage:
    """The seller's own bucket and key pair, 5 MiB parts (S3's smallest)."""
    return S3Storage(S3Settings(S3_BUCKET, moto.endpoint, prefix="proxy-trades/"), SELLER_S3, part_size=5 << 20)


def uploaded_trade(chain: Chain, proxy: ProxyProc, storage_type: str, upload: Upload) -> Trade:
    """A placed order for a file the seller stored with `upload`; confirmed once the locator exists."""
    trade = make_trade(chain, proxy.address, size=SIZE, storage_type=storage_type, confirm=False)
    trade.locator = upload(trade.ciphertext)
    assert trade.locator.type == storage_type
    chain.world.seller.confirm(trade.order_id)
    return trade


def claims(chain: Chain, trade: Trade) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The order's ProxyFetched claimants and ProxyDelivered (claimant, deliverHash) on chain."""
    escrow = chain.world.escrow
    found = {"id": trade.order_id}
    fetched = escrow.contract.events.ProxyFetched().get_logs(argument_filters=found, from_block=escrow.deployment.block)
    delivered = escrow.contract.events.ProxyDelivered().get_logs(argument_filters=found,
                                                                 from_block=escrow.deployment.block)  # fmt: skip
    return ([e["args"]["proxy"] for e in fetched],
            [(e["args"]["proxy"], bytes(e["args"]["deliverHash"])) for e in delivered])  # fmt: skip


def fetched_copy(proxy: ProxyProc, trade: Trade) -> list[Path]:
    """The proxy's copy of the order's ciphertext, and any temporary file of a fetch into it."""
    orders = proxy.home / "proxy" / "server_root" / "orders"
    return sorted(orders.glob(f"{trade.order_id}.bin")) + sorted(orders.glob(f".{trade.order_id}.bin.*"))


def trade_through(chain: Chain, proxy: ProxyProc, trade: Trade, tmp_path: Path) -> None:
    """Run the trade to the buyer's confirmation; check the proxy's copy, the buyer's file and the claims."""
    cipher = finish_trade(chain, proxy, trade, tmp_path)  # buyer decrypts and compares to the plaintext
    assert sha256_file(cipher) == trade.terms.data_hash.hex()
    (copy,) = fetched_copy(proxy, trade)
    assert sha256_file(copy) == trade.terms.data_hash.hex()
    assert claims(chain, trade) == ([proxy.address], [(proxy.address, trade.terms.data_hash)])
    assert chain.world.escrow.status(trade.order_id).state is OrderState.FINISHED


def test_trade_with_ipfs_storage(
    chain: Chain, backend_proxies: dict[str, ProxyProc], seller_ipfs: IpfsStorage, tmp_path: Path
) -> None:
    """The seller adds and pins on its IPFS node; the proxy checks the pin, then cats the CID."""
    proxy = backend_proxies["open"]
    trade = uploaded_trade(chain, proxy, "ipfs", seller_ipfs.upload)
    assert trade.locator.params["api"] == seller_ipfs.api
    assert trade.locator.params["size"] == trade.ciphertext.stat().st_size
    trade_through(chain, proxy, trade, tmp_path)


def test_trade_with_s3_storage_by_presigned_url(
    chain: Chain, backend_proxies: dict[str, ProxyProc], seller_s3: S3Storage, tmp_path: Path
) -> None:
    """The seller uploads to its bucket and hands over a presigned GET URL; the proxy has no S3
    credentials at all, so the URL is the only way it can have fetched the object."""
    proxy = backend_proxies["open"]
    trade = uploaded_trade(chain, proxy, "s3", lambda path: seller_s3.presign(seller_s3.upload(path), expires=600))
    url = str(trade.locator.params["url"])
    assert url.startswith(f"{seller_s3.settings.endpoint}/{S3_BUCKET}/proxy-trades/")  # type: ignore[union-attr]
    assert "X-Amz-Signature=" in url and SELLER_S3.secret_access_key not in trade.locator.to_json()
    trade_through(chain, proxy, trade, tmp_path)


def test_the_operators_policy_refuses_before_fetching(
    chain: Chain,
    backend_proxies: dict[str, ProxyProc],
    seller_ipfs: IpfsStorage,
    seller_s3: S3Storage,
    ipfs_daemon: JsIpfsDaemon,
) -> None:
    """A plugin type the operator did not allow, an internal address, a host off the allow
    list, an S3 locator without a presigned URL: FETCH_REFUSED, and nothing fetched or claimed."""
    open_, strict = backend_proxies["open"], backend_proxies["strict"]
    port = ipfs_daemon.api.rsplit(":", 1)[1]
    by_localhost = IpfsStorage(ipfs_daemon.api, public_api=f"http://localhost:{port}")  # same node, another name
    cases: list[tuple[ProxyProc, str, Upload, str]] = [
        (strict, "ipfs", seller_ipfs.upload, "does not fetch from 'ipfs' storage"),
        (strict, "s3", lambda path: seller_s3.presign(seller_s3.upload(path)), "resolves to an internal address"),
        (open_, "ipfs", by_localhost.upload, "host 'localhost' is not on this proxy's allow list"),
        (open_, "s3", seller_s3.upload, "has no presigned URL"),
    ]
    for proxy, storage_type, upload, reason in cases:
        trade = uploaded_trade(chain, proxy, storage_type, upload)
        with pytest.raises(ProxyRefused) as refused:
            chain.client("seller").send_seller_data(
                proxy.endpoint, trade.order_id, trade.product, trade.locator.to_json(),
                wrapped_key=trade.wrapped_key, buyer_key=trade.terms.buyer_key,
            )  # fmt: skip
        assert refused.value.status == pb.FETCH_REFUSED, str(refused.value)
        assert reason in str(refused.value)
        assert chain.world.escrow.status(trade.order_id).state is OrderState.SELLER_CONFIRMED
        assert claims(chain, trade) == ([], [])
        assert fetched_copy(proxy, trade) == []
    # The same node by the allowed name, through the proxy that refused the other name: fetched.
    trade = uploaded_trade(chain, open_, "ipfs", seller_ipfs.upload)
    chain.client("seller").send_seller_data(open_.endpoint, trade.order_id, trade.product, trade.locator.to_json(),
                                            wrapped_key=trade.wrapped_key, buyer_key=trade.terms.buyer_key)  # fmt: skip
    assert claims(chain, trade) == ([open_.address], [])

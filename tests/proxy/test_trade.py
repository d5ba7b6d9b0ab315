"""Complete file trades through a real proxy process, from placeOrder to the buyer's confirmation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.crypto import aead, ecies
from cpchain.crypto.errors import InvalidArgument
from cpchain.storage.proxy import ProxyStorage
from cpchain.types import OrderState
from tests.proxy.conftest import Chain, ProxyProc, Trade, make_trade


def finish_trade(chain: Chain, proxy: ProxyProc, trade: Trade, tmp_path: Path) -> Path:
    """Seller hands over, buyer fetches the grant, downloads, decrypts, and confirms on chain."""
    world = chain.world
    receipt = chain.client("seller").send_seller_data(
        proxy.endpoint, trade.order_id, trade.product, trade.locator.to_json(),
        wrapped_key=trade.wrapped_key, buyer_key=trade.terms.buyer_key,
    )  # fmt: skip
    assert receipt.data_hash == trade.terms.data_hash.hex()
    assert receipt.size == trade.ciphertext.stat().st_size
    assert world.escrow.status(trade.order_id).state is OrderState.PROXY_FETCHED
    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    assert grant.download_url == proxy.endpoint.file_url(f"/orders/{trade.order_id}")
    seen: list[int] = []
    key = ecies.unwrap_key(trade.buyer_secret, grant.wrapped_key)
    plain = tmp_path / "plain.out"
    with aead.decrypting_to(key, plain) as decryptor:  # decrypts as the bytes arrive
        cipher = buyer.download(
            grant, tmp_path / "download.bin", trade.terms, progress=lambda done, total: seen.append(done),
            sink=decryptor,
        )  # fmt: skip
        assert not decryptor.abandoned  # one uninterrupted pass from the first byte
    assert seen[-1] == trade.ciphertext.stat().st_size
    assert plain.read_bytes() == trade.plaintext.read_bytes()
    delivered = buyer.wait_delivered(grant, trade.terms)
    assert delivered.delivered and delivered.delivered_tx
    assert world.escrow.status(trade.order_id).state is OrderState.PROXY_DELIVERED
    world.buyer.confirm(trade.order_id)
    assert world.escrow.status(trade.order_id).state is OrderState.FINISHED
    return cipher


def test_trade_with_local_storage(chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    finish_trade(chain, proxy, trade, tmp_path)


def test_a_download_resumed_from_an_earlier_attempt_leaves_the_decryptor_behind(
    chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path
) -> None:
    """Bytes already on disk never passed through the decryptor: it is abandoned, and the
    caller decrypts the verified file instead."""
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, size=3 << 20)
    chain.client("seller").send_seller_data(
        proxy.endpoint, trade.order_id, trade.product, trade.locator.to_json(),
        wrapped_key=trade.wrapped_key, buyer_key=trade.terms.buyer_key,
    )  # fmt: skip
    buyer = chain.client("buyer")
    grant = buyer.send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    (tmp_path / "download.bin.part").write_bytes(trade.ciphertext.read_bytes()[: 1 << 20])  # an earlier attempt
    key = ecies.unwrap_key(trade.buyer_secret, grant.wrapped_key)
    with aead.decrypting_to(key, tmp_path / "plain.out") as decryptor:
        cipher = buyer.download(grant, tmp_path / "download.bin", trade.terms, sink=decryptor)
        assert decryptor.abandoned
        with pytest.raises(InvalidArgument, match="abandoned"):
            decryptor.finish()
        decryptor.restart()
        with cipher.open("rb") as src:
            decryptor.write_from(src)
    assert (tmp_path / "plain.out").read_bytes() == trade.plaintext.read_bytes()


def test_trade_with_proxy_storage_on_another_proxy(chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path) -> None:
    """The seller stores the file on proxy2's file server; the order's proxy fetches it from there."""
    store, proxy = proxies["proxy2"], proxies["proxy"]
    seller = chain.world.accounts["seller"]
    plugin = ProxyStorage(endpoint=store.endpoint, account=seller, domain=chain.domain)
    trade = make_trade(chain, proxy.address, locator=None, storage_type="proxy", confirm=False)
    trade.locator = plugin.upload(trade.ciphertext)
    assert trade.locator.type == "proxy"
    chain.world.seller.confirm(trade.order_id)
    finish_trade(chain, proxy, trade, tmp_path)


def test_trade_with_proxy_storage_on_the_same_proxy(
    chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path
) -> None:
    proxy = proxies["proxy"]
    plugin = ProxyStorage(endpoint=proxy.endpoint, account=chain.world.accounts["seller"], domain=chain.domain)
    trade = make_trade(chain, proxy.address, storage_type="proxy", confirm=False)
    trade.locator = plugin.upload(trade.ciphertext)
    chain.world.seller.confirm(trade.order_id)
    finish_trade(chain, proxy, trade, tmp_path)

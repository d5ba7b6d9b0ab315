"""Stream orders on chain: binding (proxyFetched), retries, and access ending with the order.

This module moves anvil's clock, so it has its own chain and stream server.
"""

from __future__ import annotations

import time

import pytest

from cpchain.chain.connection import time_travel
from cpchain.proxy.streams.client import StreamRefusedError
from cpchain.proxy.streams.service import ORDER_CACHE_SECONDS
from cpchain.types import OrderState
from tests.streams.conftest import StreamProc, open_channel, records, sell
from tests.streams.test_live import publish


def test_binding_is_checked_idempotent_and_claims_fetched(server: StreamProc) -> None:
    channel, key = open_channel(server)
    other, _ = open_channel(server)
    sale = sell(server, channel, key, bind=False)
    seller, buyer = server.client("seller"), server.client("buyer")
    escrow = server.chain.world.escrow
    with pytest.raises(StreamRefusedError) as info:  # the order's data hash commits to `channel`, not `other`
        seller.bind_order(other, sale.order_id, sale.product, key, sale.terms.buyer_key)
    assert info.value.status == 403
    with pytest.raises(StreamRefusedError) as info:  # only the order's seller binds
        buyer.bind_order(channel, sale.order_id, sale.product, key, sale.terms.buyer_key)
    assert info.value.code == "forbidden"
    first = seller.bind_order(channel, sale.order_id, sale.product, key, sale.terms.buyer_key)
    assert escrow.status(sale.order_id).state is OrderState.PROXY_FETCHED
    assert first["fetched_tx"] and first["data_hash"] == sale.terms.data_hash.hex()
    assert seller.bind_order(channel, sale.order_id, sale.product, key, sale.terms.buyer_key) == first  # a retry


def test_access_ends_when_the_order_expires_or_is_refunded(server: StreamProc) -> None:
    channel, key = open_channel(server)
    world = server.chain.world
    sale = sell(server, channel, key, time_allowed=600)  # bound, never delivered
    publish(server, channel, key, records(3))
    buyer = server.client("buyer")
    assert len(buyer.page(channel, sale.order_id, 0, wait=0)[0]) == 3  # the buyer may read (and it delivers)
    late = sell(server, channel, key, time_allowed=600)
    unbound = sell(server, channel, key, time_allowed=600, bind=False)
    time_travel(world.w3, 700)
    with pytest.raises(StreamRefusedError) as info:  # proxyFetched but the deadline passed: refundable
        list(buyer.subscribe(channel, late.order_id, key))
    assert (info.value.status, info.value.code) == (403, "order_expired")
    world.buyer.claim_timeout(late.order_id)
    assert world.escrow.status(late.order_id).state is OrderState.WITHDRAWN
    time.sleep(ORDER_CACHE_SECONDS)  # the proxy caches an order's state this long
    with pytest.raises(StreamRefusedError) as info:
        buyer.page(channel, late.order_id, 0)
    assert (info.value.status, info.value.code) == (403, "refunded")
    # the first order was delivered when the buyer read it; the buyer confirms and keeps reading
    assert world.escrow.status(sale.order_id).state is OrderState.PROXY_DELIVERED
    world.buyer.confirm(sale.order_id)
    assert [r.data for r in buyer.read_pages(channel, sale.order_id, key)] == records(3)
    with pytest.raises(StreamRefusedError) as info:  # binding after the deadline is refused
        server.client("seller").bind_order(channel, unbound.order_id, unbound.product, key, unbound.terms.buyer_key)
    assert (info.value.status, info.value.code) == (403, "order_expired")

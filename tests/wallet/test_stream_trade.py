"""A stream trade through the wallet core, on real services: anvil + escrow, market, tracker,
DHT, two proxies whose stream servers use a real tansu broker.

The seller's wallet opens a channel and lists it; the buyer's wallet buys it (the order
names the channel's proxy); both automations run (seller confirm and bind, buyer key
grant); the seller publishes records and the buyer subscribes and gets exactly those
records opened (live and resumed from its saved cursor, over WebSocket and REST); the
subscription is the delivery and the buyer confirms. Bad paths: subscribing before the
order is bound, another account subscribing. Also the stream rules and the database
migration that stream purchases need.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cpchain.crypto import unwrap_key
from cpchain.proxy.streams.client import StreamClient, StreamRefusedError
from cpchain.proxy.streams.wire import StreamLocator, channel_commitment
from cpchain.types import OrderState, OrderTerms, ProductDescription, ProductType
from cpchain.wallet.automation import Automation
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.db import WalletDB
from cpchain.wallet.errors import NotReady, UnknownOrder
from cpchain.wallet.rules import Task, seller_refusal, stream_channel, stream_proxy
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.proxy.conftest import Chain
from tests.streams.conftest import Broker, records
from tests.streams.conftest import broker as broker  # the session's tansu
from tests.wallet.conftest import Services, password, start_services
from tests.wallet.test_cli import Ran, config_for
from tests.wallet.test_cli import cli as cli  # the in-process `pdash` fixture
from tests.wallet.test_live import chain_state, drive

PRICE = 10 * ETHER
PROXY_A, PROXY_B = "0x" + "a" * 40, "0x" + "b" * 40
CHANNEL = "0f" * 16


@pytest.fixture(scope="module")
def services(chain: Chain, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The wallet tests' services with the proxies' stream servers on the tansu broker."""
    with start_services(chain, tmp_path_factory.mktemp("wallet-streams"), kafka_brokers=[broker.address]) as running:
        yield running


# --------------------------------------------------------------------------- pure rules and the database


def stream_product(proxy: str = PROXY_A, channel: str = CHANNEL, **over: object) -> ProductDescription:
    fields: dict[str, object] = dict(
        seller="0x" + "5" * 40, title="a feed", ptype=ProductType.STREAM, description="", price=PRICE, category="",
        tags=(), data_hash=channel_commitment(proxy, channel).hex(), storage_type="stream", size=0, nonce=channel,
    )  # fmt: skip
    fields.update(over)
    return ProductDescription(**fields)  # type: ignore[arg-type]


def test_a_stream_listing_names_its_channel_and_the_order_its_proxy() -> None:
    product = stream_product()
    assert stream_channel(product) == CHANNEL
    assert stream_proxy(product, [PROXY_B, PROXY_A]) == PROXY_A
    assert stream_proxy(product, [PROXY_B]) is None
    assert stream_channel(replace(product, ptype=ProductType.FILE)) is None
    assert stream_channel(replace(product, nonce="")) is None
    terms = OrderTerms(buyer="0x" + "6" * 40, seller=product.seller, proxy=PROXY_B, proxy2=PROXY_B, price=PRICE,
                       fee=PRICE // 100, desc_hash=product.desc_hash(), data_hash=bytes.fromhex(product.data_hash),
                       buyer_key=b"\x01" * 32)  # fmt: skip
    # the seller would deposit for an order no proxy can deliver
    assert "the proxy of the product's channel" in str(seller_refusal(terms, product, product.seller))
    assert seller_refusal(replace(terms, proxy2=PROXY_A), product, product.seller) is None


def test_stream_purchases_migrate_from_version_2(tmp_path: Path) -> None:
    path = tmp_path / "wallet.db"
    WalletDB(path, target_version=2).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO orders (contract, order_id, account, role, market_hash, buyer, seller, proxy, proxy2,"
                     " price, fee, desc_hash, data_hash, buyer_key, state, end_time, updated) VALUES"
                     " ('c', 1, 'a', 'buyer', 'm', 'b', 's', 'p', 'p', '1', '0', 'd', 'h', 'k', 0, 0, 0)")  # fmt: skip
        conn.execute("INSERT INTO purchases (contract, order_id, account, market_hash, decrypted) VALUES"
                     " ('c', 1, 'a', 'm', 1)")  # fmt: skip
    with WalletDB(path) as db:
        assert db.version == 3
        old = db.purchase("c", "a", 1)
        assert old is not None and old.received and not old.is_stream
        assert (old.stream_locator, old.wrapped_key, old.stream_cursor) == ("", b"", "")
        db.ensure_purchase("c", "a", 1, "m")
        db.update_purchase("c", "a", 1, decrypted=0, stream_locator="{}", stream_cursor='{"position": 3, "seq": 2}')
        stream = db.purchase("c", "a", 1)
        assert stream is not None and stream.is_stream and not stream.received  # no key yet
        db.update_purchase("c", "a", 1, wrapped_key=b"\x07" * 92)
        stream = db.purchase("c", "a", 1)
        assert stream is not None and stream.received and stream.wrapped_key == b"\x07" * 92


# --------------------------------------------------------------------------- live


def wait_for(what: str, condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_stream_trade_run_by_both_automations(services: Services, tmp_path: Path) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    seller, buyer = Seller(sctx), Buyer(bctx)
    product = seller.publish_stream(title="Air quality of Hangzhou, every second", price=PRICE, category="iot",
                                    tags=["air"])  # fmt: skip
    assert product.published
    channel_upload = sctx.db.upload(product.upload_id)
    assert channel_upload is not None and channel_upload.storage_type == "stream"
    locator = StreamLocator.from_json(channel_upload.locator)
    host = locator.endpoint.proxy
    assert host in {p.address for p in services.proxies.values()}
    assert channel_upload.data_hash == channel_commitment(host, locator.channel).hex()

    listing = buyer.show(product.market_hash)
    assert listing.product.ptype is ProductType.STREAM and stream_channel(listing.product) == locator.channel
    order = buyer.buy(product.market_hash)
    oid = order.order_id
    assert order.proxy == order.proxy2 == host  # an order names one channel on one proxy
    purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
    assert purchase is not None and purchase.is_stream and not purchase.received

    # Not bound yet: a typed error, nothing asked of the proxy, nothing stored.
    with pytest.raises(NotReady, match="not fetched"):
        buyer.subscribe(oid)
    assert not buyer._purchase(oid).wrapped_key

    sellers, buyers = Automation(sctx), Automation(bctx)

    def key_received() -> bool:
        found = bctx.db.purchase(bctx.contract, bctx.address, oid)
        return bool(found and found.received)

    reports = drive(sellers, buyers, until=key_received)
    done = [d for r in reports for d in r.done if d[0] == oid]
    assert done[:2] == [(oid, Task.SELLER_CONFIRM), (oid, Task.DELIVER)] and (oid, Task.RECEIVE) in done
    assert not [f for r in reports for f in r.failed if f[0] == oid]
    assert chain_state(services, oid) is OrderState.PROXY_FETCHED  # bound; nobody subscribed yet
    seller_view = sctx.db.order(sctx.contract, sctx.address, oid)
    assert seller_view is not None and seller_view.delivered
    received = buyer._purchase(oid)
    seller_key = unwrap_key(sctx.me.encryption_key, channel_upload.wrapped_key)
    assert received.verified and unwrap_key(bctx.me.encryption_key, received.wrapped_key) == seller_key
    assert seller_key not in received.wrapped_key and seller_key not in channel_upload.wrapped_key

    # The seller publishes; the buyer's first subscription is the delivery.
    first = records(5, size=48)
    with seller.stream_publisher(product.market_hash) as publisher:
        assert publisher.publish_many(first) == 4
    got = list(itertools.islice(buyer.subscribe(oid), len(first)))
    assert [r.data for r in got] == first and [r.seq for r in got] == list(range(5))
    wait_for("proxyDelivered", lambda: chain_state(services, oid) is OrderState.PROXY_DELIVERED)

    # Resumed from the saved cursor: nothing twice, then exactly the new records (REST, then WebSocket).
    assert list(buyer.subscribe(oid, rest=True)) == []
    more = records(3, start=5, size=48)
    with seller.stream_publisher(product.market_hash) as publisher:
        publisher.publish_many(more[:2])
    assert [r.data for r in buyer.subscribe(oid, rest=True)] == more[:2]
    with seller.stream_publisher(product.market_hash) as publisher:
        publisher.publish(more[2])
    assert [r.data for r in buyer.subscribe(oid, idle_timeout=1.0)] == more[2:]
    from_start = list(buyer.subscribe(oid, resume=False, rest=True))  # the whole channel again, on request
    assert [r.data for r in from_start] == first + more

    # Someone else: not a party to the order, refused by the wallet and by the proxy.
    with pytest.raises(UnknownOrder):
        Buyer(services.open("other")).subscribe(oid)
    with pytest.raises(UnknownOrder, match="its seller, not its buyer"):
        Buyer(sctx).subscribe(oid)
    intruder = StreamClient(services.chain.world.accounts["other"], bctx.domain, locator.endpoint)
    with pytest.raises(StreamRefusedError) as info:
        intruder.page(locator.channel, oid, 0)
    assert info.value.code == "forbidden"

    assert buyer.confirm(oid).state is OrderState.FINISHED
    sellers.step()
    seller_view = sctx.db.order(sctx.contract, sctx.address, oid)
    assert seller_view is not None and seller_view.state is OrderState.FINISHED
    assert buyers.step().done == [] and sellers.step().done == []
    # A finished purchase stays readable.
    assert [r.data for r in buyer.subscribe(oid, resume=False, rest=True)][-1] == more[2]


def test_pdash_publish_stream(services: Services, cli: Callable[..., Ran]) -> None:
    seller = config_for(services, "seller")
    secret = password("seller")
    proxy2 = services.proxies["proxy2"].address
    ran = cli(seller, "--json", "publish", "--stream", "--title", "Tide gauge", "--price", "3", "--proxy", proxy2,
              secret=secret)  # fmt: skip
    assert ran.code == 0, ran.err
    published = json.loads(ran.out)
    assert published["locator"]["proxy"] == proxy2 and published["upload"]["storage_type"] == "stream"
    listing = services.market.client().product(published["market_hash"])
    assert listing["ptype"] == "stream" and listing["storage_type"] == "stream"
    assert listing["data_hash"] == channel_commitment(proxy2, published["locator"]["channel"]).hex()
    wrong = cli(seller, "publish", "--stream", "data.csv", "--title", "x", "--price", "1", secret=secret)
    assert wrong.code != 0 and wrong.out == "" and len(wrong.err.strip().splitlines()) == 1
    assert "takes no FILE" in wrong.err


def test_pdash_stream_publish_and_subscribe_with_the_wallets_keys(
    services: Services, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    product = Seller(sctx).publish_stream(title="River levels", price=PRICE)
    oid = Buyer(bctx).buy(product.market_hash).order_id
    drive(Automation(sctx), Automation(bctx), until=lambda: Buyer(bctx)._purchase(oid).received)
    seller, buyer = config_for(services, "seller"), config_for(services, "buyer")
    s_pw, b_pw = password("seller"), password("buyer")
    lines = [{"gauge": i, "level_cm": 120 + i} for i in range(12)]
    data = tmp_path / "levels.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))

    ran = cli(seller, "--json", "stream", "publish", product.market_hash, "--file", str(data), secret=s_pw)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["records"] == 12 and json.loads(ran.out)["acked_seq"] == 11

    # The key comes from the order through the wallet; the cursor stays in the wallet.
    ran = cli(buyer, "stream", "subscribe", str(oid), "--rest", secret=b_pw)
    assert ran.code == 0, ran.err
    assert [json.loads(line) for line in ran.out.splitlines()] == lines
    again = cli(buyer, "stream", "subscribe", str(oid), "--rest", secret=b_pw)
    assert again.code == 0 and again.out == ""  # nothing twice
    everything = cli(buyer, "--json", "stream", "subscribe", str(oid), "--rest", "--from-start", secret=b_pw)
    got = [json.loads(line) for line in everything.out.splitlines()]
    assert [g["seq"] for g in got] == list(range(12)) and [json.loads(g["data"]) for g in got] == lines

    # Bad paths: one line each, nothing published or stored.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"ok": 1}\n')
    for config, secret, args, message in [
        (seller, s_pw, ["stream", "publish", product.market_hash, "--file", str(bad)], "line 1 is not JSON"),
        (seller, s_pw, ["stream", "publish", product.market_hash, "--file", str(tmp_path / "none")], "not a file"),
        (buyer, b_pw, ["stream", "subscribe", "999999"], "999999"),
        (seller, s_pw, ["stream", "subscribe", str(oid)], "its seller, not its buyer"),
        (buyer, b_pw, ["stream", "publish", product.market_hash, "--file", str(data)], "not one of this wallet's"),
    ]:
        ran = cli(config, *args, secret=secret)
        assert ran.code != 0 and ran.out == "" and len(ran.err.strip().splitlines()) == 1, (args, ran)
        assert message in ran.err, (args, ran.err)
    ran = cli(buyer, "stream", "subscribe", str(oid), "--rest", secret=b_pw)
    assert ran.code == 0 and ran.out == ""  # nothing of the bad file was published

    ended = cli(seller, "stream", "end", product.market_hash, secret=s_pw)
    assert ended.code == 0, ended.err
    assert "channel ended" in ended.out

"""Publishing and subscribing through a real stream server, tansu and anvil: both protocols,
resumption, every refusal, and the subscriber's detection of tampered, replayed and
reordered records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from cpchain.proxy.streams.client import StreamClient, StreamRefusedError, WsConnection
from cpchain.proxy.streams.records import Cursor, MissingRecords, Record, ReplayedRecord, TamperedRecord, seal
from cpchain.proxy.streams.wire import auth_header, pack_records, position, split_position
from cpchain.types import OrderState
from tests.streams.conftest import StreamProc, open_channel, records, sell


def publish(server: StreamProc, channel: str, key: bytes, items: list[bytes]) -> int:
    with server.client("seller").publisher(channel, key) as publisher:
        last = publisher.publish_many(items)
        publisher.flush()
        assert publisher.acked_seq == last
    return last


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_websocket_publish_and_subscribe_delivers_every_record_and_claims_delivery(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    escrow = server.chain.world.escrow
    assert escrow.status(sale.order_id).state is OrderState.PROXY_FETCHED  # bound: proxyFetched claimed
    assert publish(server, channel, key, records(500)) == 499
    buyer = server.client("buyer")
    access = buyer.order_access(channel, sale.order_id, sale.terms, sale.buyer_secret)
    assert access.stream_key == key
    got = list(buyer.subscribe(channel, sale.order_id, access.stream_key, idle_timeout=1.5))
    assert [r.data for r in got] == records(500)
    assert [r.seq for r in got] == list(range(500))
    assert access.next_position == position(split_position(got[-1].position)[0] + 1, 0)  # the channel's end
    # the first subscription is the delivery: proxyDelivered with the channel commitment
    wait_for(lambda: escrow.status(sale.order_id).state is OrderState.PROXY_DELIVERED)
    logs = escrow.contract.events.ProxyDelivered().get_logs(argument_filters={"id": sale.order_id},
                                                             from_block=escrow.deployment.block)  # fmt: skip
    assert [bytes(log["args"]["deliverHash"]) for log in logs] == [sale.terms.data_hash]
    server.chain.world.buyer.confirm(sale.order_id)
    again = list(buyer.subscribe(channel, sale.order_id, key, Cursor(got[495].position, 495), idle_timeout=1.0))
    assert [r.data for r in again] == records(5, 495)  # a finished sale stays readable


def test_rest_publish_and_pages_and_both_protocols_mix(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    seller = server.client("seller")
    assert seller.publish_status(channel)["next_seq"] == 0
    first = [seal(key, channel, seq, d) for seq, d in enumerate(records(50))]
    answer = seller.publish_rest(channel, first)
    assert answer["acked_seq"] == 49 and answer["position"] == position(0, 49)  # one chunk, Kafka offset 0
    assert seller.publish_batch(channel, first) == 50  # a retry whose answer was lost: done, not written twice
    publish(server, channel, key, records(50, 50))  # WebSocket continues the REST sequence
    with pytest.raises(StreamRefusedError) as info:  # a gap in the sequence is refused
        seller.publish_rest(channel, [seal(key, channel, 200, b"x")])
    assert info.value.status == 409 and info.value.details["expected_seq"] == 100
    buyer = server.client("buyer")
    pages = list(buyer.read_pages(channel, sale.order_id, key, limit=30))
    assert [r.data for r in pages] == records(100)
    items, next_position, ended = buyer.page(channel, sale.order_id, pages[95].position, limit=10)
    assert [p for p, _ in items] == [r.position for r in pages[95:]] and not ended
    assert buyer.page(channel, sale.order_id, next_position)[0] == []
    ws = list(buyer.subscribe(channel, sale.order_id, key, idle_timeout=1.0))
    assert [r.data for r in ws] == records(100)


def test_a_live_subscriber_gets_records_as_they_are_published(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(10))
    got: list[Record] = []
    subscriber = threading.Thread(target=lambda: got.extend(
        server.client("buyer").subscribe(channel, sale.order_id, key, live=True, idle_timeout=3.0)))  # fmt: skip
    subscriber.start()
    time.sleep(1.0)
    with server.client("seller").publisher(channel, key) as publisher:
        for i in range(20):
            publisher.publish(records(1, 10 + i)[0])
            time.sleep(0.02)
    subscriber.join(timeout=30)
    assert [r.data for r in got] == records(20, 10)  # from the live end, not the history


def test_resume_from_a_cursor_delivers_every_record_once(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(300))
    buyer = server.client("buyer")
    cursor = Cursor(0, 0)
    seen: list[Record] = []
    for record in buyer.subscribe(channel, sale.order_id, key, cursor):
        seen.append(record)
        if len(seen) == 120:
            break  # the connection is dropped mid-stream, inside a chunk
    assert cursor == Cursor(seen[-1].position + 1, 120)
    publish(server, channel, key, records(200, 300))
    seen += buyer.subscribe(channel, sale.order_id, key, cursor, idle_timeout=1.5)
    assert [r.data for r in seen] == records(500)
    rest_cursor = Cursor(seen[450].position, 450)
    tail = [r.data for r in buyer.read_pages(channel, sale.order_id, key, rest_cursor, limit=7)]
    assert tail == records(50, 450) and rest_cursor.seq == 500


def refusal(call: Callable[[], object]) -> StreamRefusedError:
    with pytest.raises(StreamRefusedError) as info:
        call()
    return info.value


def test_publishing_needs_the_sellers_token_for_the_channel(server: StreamProc) -> None:
    channel, key = open_channel(server)
    other, _ = open_channel(server)
    seller, buyer = server.client("seller"), server.client("buyer")
    path = f"/v1/channels/{channel}/publish"
    assert refusal(lambda: WsConnection(server.endpoint, path, {})).status == 401
    forged = {"Authorization": auth_header(seller._publish_token(other))}
    assert refusal(lambda: WsConnection(server.endpoint, path, forged)).status == 403
    not_seller = {"Authorization": auth_header(buyer._publish_token(channel))}
    assert refusal(lambda: WsConnection(server.endpoint, path, not_seller)).code == "forbidden"
    body = b'{"records": ["AAAAAAAAAAA="]}'
    no_token = refusal(lambda: seller.request("POST", f"/v1/channels/{channel}/records", body))
    assert (no_token.status, no_token.code) == (401, "unauthenticated")
    wrong = refusal(lambda: seller.request("POST", f"/v1/channels/{channel}/records", body,
                                           token=seller._publish_token(other)))  # fmt: skip
    assert (wrong.status, wrong.code) == (403, "forbidden")
    assert refusal(lambda: buyer.publish_rest(channel, [seal(key, channel, 0, b"x")])).status == 403
    assert refusal(lambda: seller.request("POST", f"/v1/channels/{'0' * 32}/records", body,
                                          token=seller._publish_token("0" * 32))).status == 404  # fmt: skip


def test_subscribing_needs_a_paid_order_for_the_channel(server: StreamProc) -> None:
    channel, key = open_channel(server)
    other, _ = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(3))
    buyer, seller = server.client("buyer"), server.client("seller")
    path = f"/v1/channels/{channel}/subscribe"
    assert refusal(lambda: WsConnection(server.endpoint, path, {})).status == 401
    assert refusal(lambda: buyer.request("GET", f"/v1/channels/{channel}/records")).status == 401
    forged = {"Authorization": auth_header(buyer._subscribe_token(other, sale.order_id))}
    assert refusal(lambda: WsConnection(server.endpoint, path, forged)).status == 403  # token for another channel
    assert refusal(lambda: buyer.page(other, sale.order_id, 0)).status == 403  # the order is for another channel
    assert refusal(lambda: seller.page(channel, sale.order_id, 0)).status == 403  # not the order's buyer
    unbound = sell(server, channel, key, buyer="other", bind=False)  # paid, but the seller never bound it
    stranger = server.client("other")
    refused = refusal(lambda: list(stranger.subscribe(channel, unbound.order_id, key)))
    assert (refused.status, refused.code) == (402, "not_paid")
    assert refusal(lambda: stranger.page(channel, unbound.order_id, 0)).code == "not_paid"
    assert refusal(lambda: stranger.page(channel, 10**9, 0)).code == "unknown_order"
    past = sell(server, channel, key, end_date=int(time.time()) - 10)  # the product's period is over
    expired = refusal(lambda: list(buyer.subscribe(channel, past.order_id, key)))
    assert (expired.status, expired.code) == (403, "order_expired")
    assert refusal(lambda: buyer.page(channel, sale.order_id, position(5, 0))).code == "offset_out_of_range"
    # the legitimate buyer still reads
    assert [r.data for r in buyer.read_pages(channel, sale.order_id, key)] == records(3)


def inject(server: StreamProc, channel: str, values: list[bytes]) -> None:
    """Write chunks straight into the channel's topic: what a compromised proxy or broker could do."""
    producer = KafkaProducer(bootstrap_servers=[server.broker.address], acks="all")
    for value in values:
        producer.send(f"pdash-stream-{channel}", value=value, partition=0)
    producer.flush()
    producer.close()


@pytest.mark.parametrize("attack", ["tampered", "garbage", "replayed", "reordered"])
def test_the_subscriber_detects_tampered_replayed_and_reordered_records(server: StreamProc, attack: str) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(5))  # one chunk at Kafka offset 0
    if attack == "tampered":
        record = bytearray(seal(key, channel, 5, b"genuine"))
        record[-3] ^= 0x40
        inject(server, channel, [pack_records([bytes(record)])])
    elif attack == "garbage":
        inject(server, channel, [b"\x00\x00\x00\x09not a chunk"])
    elif attack == "replayed":
        inject(server, channel, [pack_records([seal(key, channel, 2, records(1, 2)[0])])])
    else:
        inject(server, channel, [pack_records([seal(key, channel, 6, b"six"), seal(key, channel, 5, b"five")])])
    expected = {"tampered": TamperedRecord, "garbage": TamperedRecord, "replayed": ReplayedRecord,
                "reordered": MissingRecords}[attack]  # fmt: skip
    buyer: StreamClient = server.client("buyer")
    for reader in (lambda c: buyer.subscribe(channel, sale.order_id, key, c, idle_timeout=5.0),
                   lambda c: buyer.read_pages(channel, sale.order_id, key, c)):  # fmt: skip
        cursor = Cursor(0, 0)
        got: list[bytes] = []
        with pytest.raises(expected) as info:
            for record in reader(cursor):
                got.append(record.data)
        assert got == records(5) and info.value.position == position(1, 0)
        assert cursor == Cursor(position(0, 4) + 1, 5)  # still owed record 5


def test_an_ended_channel_drains_its_subscribers_and_refuses_publishers(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(40))
    seller = server.client("seller")
    assert seller.end_channel(channel)["state"] == "ended"
    assert seller.end_channel(channel)["state"] == "ended"  # idempotent
    got = list(server.client("buyer").subscribe(channel, sale.order_id, key))  # ends by itself
    assert [r.data for r in got] == records(40)
    assert refusal(lambda: seller.publish_rest(channel, [seal(key, channel, 40, b"late")])).status == 410
    items, _, ended = server.client("buyer").page(channel, sale.order_id, got[-1].position + 1)
    assert items == [] and ended


def test_a_live_subscription_ends_with_the_products_period(server: StreamProc) -> None:
    channel, key = open_channel(server)
    end = max(server.chain.world.escrow.now(), int(time.time())) + 4  # the proxy's clock: chain or wall, the later
    sale = sell(server, channel, key, end_date=end)
    publish(server, channel, key, records(2))
    got: list[Record] = []
    with pytest.raises(StreamRefusedError) as info:
        for record in server.client("buyer").subscribe(channel, sale.order_id, key):
            got.append(record)  # then nothing more comes until the server closes the subscription
    assert [r.data for r in got] == records(2)
    assert (info.value.code, info.value.status) == ("order_expired", 403)
    assert time.time() >= end - 1

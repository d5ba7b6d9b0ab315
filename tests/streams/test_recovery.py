"""Robustness: a stream server killed mid-stream loses nothing acknowledged, a stalled subscriber
does not grow the server's memory, and ended channels' topics are deleted after retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient

from cpchain.proxy.streams.client import Publisher, StreamRefusedError
from cpchain.proxy.streams.records import Record
from cpchain.proxy.streams.wire import unpack_delivery
from tests.streams.conftest import Broker, Chain, StreamProc, open_channel, records, sell
from tests.streams.test_live import publish, wait_for

MiB = 1 << 20


def test_a_restart_mid_stream_loses_nothing_acknowledged(server: StreamProc) -> None:
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    total = 3000
    publisher: Publisher = server.client("seller").publisher(channel, key)
    received: list[Record] = []
    failures: list[BaseException] = []

    def publish_all() -> None:
        try:
            for i in range(total):
                publisher.publish(records(1, i)[0])
                time.sleep(0.001)
            publisher.flush()
        except BaseException as exc:
            failures.append(exc)

    def subscribe_all() -> None:
        try:
            buyer = server.client("buyer")
            for record in buyer.subscribe(channel, sale.order_id, key, idle_timeout=8.0):
                received.append(record)
                if len(received) == total:
                    return
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publish_all), threading.Thread(target=subscribe_all)]
    for thread in threads:
        thread.start()
    wait_for(lambda: publisher.acked_seq >= 800 or bool(failures))
    acknowledged = publisher.acked_seq
    server.kill()  # SIGKILL: no clean shutdown
    time.sleep(0.5)
    server.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not failures, failures
    assert 800 <= acknowledged < total - 1
    assert publisher.acked_seq == total - 1
    publisher.close()
    assert [r.seq for r in received] == list(range(total))  # through the restart: once each, in order
    assert [r.data for r in received] == records(total)
    again = list(server.client("buyer").read_pages(channel, sale.order_id, key))
    assert [r.data for r in again] == records(total)


def test_a_stalled_subscriber_does_not_grow_the_servers_memory(server: StreamProc) -> None:
    warm, key = open_channel(server)
    publish(server, warm, key, [b"w" * 1024] * 64 * 1024)  # the publish path's memory, before measuring
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    buyer = server.client("buyer")
    conn = buyer.connect(f"/v1/channels/{channel}/subscribe?from=0", buyer._subscribe_token(channel, sale.order_id))
    try:
        assert isinstance(conn.recv(10), str)  # ready; then this subscriber stops reading
        baseline = server.rss()
        peak = [baseline]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak.append(server.rss())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        count = 64 * 1024  # 64 MiB of 1 KiB records the subscriber is not taking
        publish(server, channel, key, [b"r" * 1024] * count)
        time.sleep(1.0)
        sampling.set()
        sampler.join()
        growth = max(peak) - baseline
        assert growth < 24 * MiB, f"server grew by {growth / MiB:.1f} MiB for a stalled subscriber"
        seen = 0
        while seen < count:  # nothing was dropped: the subscriber gets all of it once it reads
            message = conn.recv(10)
            assert isinstance(message, bytes)
            seen += len(unpack_delivery(message))
        assert seen == count
    finally:
        conn.close()


@pytest.fixture(scope="module")
def short_retention(chain: Chain, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamProc]:
    proc = StreamProc(tmp_path_factory.mktemp("short-retention"), chain, broker, chain.world.accounts["proxy2"],
                      {"retention_seconds": 2, "gc_interval_seconds": 0.5})  # fmt: skip
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_ended_channels_topics_are_deleted_after_retention(short_retention: StreamProc) -> None:
    server = short_retention
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    publish(server, channel, key, records(5))
    admin = KafkaAdminClient(bootstrap_servers=[server.broker.address])
    topic = f"pdash-stream-{channel}"
    try:
        assert topic in admin.list_topics()
        server.client("seller").end_channel(channel)
        assert len(server.client("buyer").page(channel, sale.order_id, 0)[0]) == 5  # readable during retention
        wait_for(lambda: topic not in admin.list_topics(), timeout=15)
    finally:
        admin.close()
    with pytest.raises(StreamRefusedError) as info:
        server.client("buyer").page(channel, sale.order_id, 0)
    assert info.value.status == 404

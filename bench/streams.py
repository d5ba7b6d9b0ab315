#!/usr/bin/env python3
"""Stream relay throughput and latency: publisher -> proxy (WebSocket in, Kafka, WebSocket out) -> subscriber.

Sets up, on 127.0.0.1: the tansu dev broker, anvil with the escrow, the proxy's stream
server process, a channel and a paid, bound order. Then, in the same run:

* direct: N records of 1 KiB produced with kafka-python (acks=all, as the proxy does) by
  one process and consumed by another, straight against the same broker;
* through the proxy: the seller's client (one process) seals and publishes the same number
  of 1 KiB records over WebSocket, the buyer's client (another process) receives and opens
  them over WebSocket, checking every record's sequence and authenticity;
* latency: the seller publishes one record every millisecond (1,000 records/s) for a few
  seconds, each carrying its send time; the buyer's client measures send-to-opened time.

Throughput is records over the time from the first send to the last record received; the
two throughput runs alternate for --rounds rounds and the better of each side counts (the
machines this runs on are shared).
Prints progress, then the figures last, one `name: value unit` per line.
Run: .venv/bin/python bench/streams.py [--quick] [--records N] [--latency-seconds S]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import multiprocessing
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RECORD = 1024
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
STAMP = struct.Struct(">d")


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- child processes (spawned)


def direct_consumer(broker: str, topic: str, count: int, pipe: Connection) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[broker], group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10,
                             max_partition_fetch_bytes=4 << 20, fetch_max_bytes=8 << 20)  # fmt: skip
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    seen = sum(len(batch) for batch in consumer.poll(timeout_ms=100).values())  # may hold the warm-up record
    pipe.send("ready")
    while seen < count:
        for batch in consumer.poll(timeout_ms=1000, max_records=4096).values():
            seen += len(batch)
    pipe.send(time.time())
    consumer.close()


def direct_producer(broker: str, topic: str, records: list[bytes], pipe: Connection) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[broker], acks="all", linger_ms=1, batch_size=1 << 20,
                             max_in_flight_requests_per_connection=1)  # fmt: skip
    producer.send(topic, value=b"warm-up", partition=0).get(timeout=30)
    pipe.send("ready")
    pipe.recv()
    start = time.time()
    for record in records:
        producer.send(topic, value=record, partition=0)
    producer.flush()
    pipe.send(start)
    producer.close()


def _client(spec: dict[str, Any]) -> Any:
    from eth_account import Account

    from cpchain.proxy.protocol import Domain
    from cpchain.proxy.streams.client import StreamClient
    from cpchain.proxy.streams.wire import StreamEndpoint

    return StreamClient(Account.from_key(spec["key"]), Domain(*spec["domain"]), StreamEndpoint(*spec["endpoint"]))


def proxy_subscriber(spec: dict[str, Any], channel: str, order_id: int, key: bytes, count: int, live: bool,
                     pipe: Connection) -> None:  # fmt: skip
    """Receive and open `count` records; report the time of the last one and per-record latencies."""
    from cpchain.proxy.streams.records import Cursor, RecordOpener
    from cpchain.proxy.streams.wire import unpack_delivery

    client = _client(spec)
    gc.freeze()  # everything imported so far is permanent: no long collections while measuring
    conn = client.connect(f"/v1/channels/{channel}/subscribe?from={'live' if live else 0}",
                          client._subscribe_token(channel, order_id))  # fmt: skip
    conn.recv(30)  # ready
    pipe.send("ready")
    opener = RecordOpener(key, channel, Cursor(0, None))
    latencies: list[float] = []
    seen = 0
    while seen < count:
        message = conn.recv(60)
        if not isinstance(message, bytes):
            raise SystemExit(f"unexpected message: {message!r}")
        now = time.time()
        for offset, raw in unpack_delivery(message):
            record = opener.open(offset, raw)
            if live:
                latencies.append(now - STAMP.unpack_from(record.data)[0])
        seen = opener.cursor.seq if opener.cursor.seq is not None else seen
        seen = min(seen, count) if live else seen
    pipe.send((time.time(), latencies))
    conn.close()


def proxy_publisher(spec: dict[str, Any], channel: str, key: bytes, count: int, rate: float,
                    pipe: Connection) -> None:  # fmt: skip
    """Publish `count` records: as fast as possible (rate 0), or paced at `rate` per second with send stamps."""
    client = _client(spec)
    gc.freeze()
    publisher = client.publisher(channel, key, batch_records=256)
    publisher.publish_many([])  # connect
    pipe.send("ready")
    pipe.recv()
    start = time.time()
    if rate <= 0:
        payload = b"p" * RECORD
        publisher.publish_many(payload for _ in range(count))
    else:
        pad = b"l" * (RECORD - STAMP.size)
        for i in range(count):
            target = start + i / rate
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            publisher.publish(STAMP.pack(time.time()) + pad)
    publisher.flush(120)
    pipe.send(start)
    publisher.close()


# ---------------------------------------------------------------- orchestration


def run_pair(first: tuple[Any, tuple[Any, ...]], second: tuple[Any, tuple[Any, ...]]) -> tuple[Any, Any]:
    """Start `first` (the receiving side) and `second` (the sending side), both report when ready;
    then tell the sender to go. Returns (receiver's report, sender's report)."""
    ctx = multiprocessing.get_context("spawn")
    receiver_end, receiver_pipe = ctx.Pipe()
    sender_end, sender_pipe = ctx.Pipe()
    receiver = ctx.Process(target=first[0], args=(*first[1], receiver_pipe))
    sender = ctx.Process(target=second[0], args=(*second[1], sender_pipe))
    receiver.start()
    sender.start()
    try:
        for end in (receiver_end, sender_end):
            if not end.poll(60):
                raise SystemExit("a benchmark process did not get ready")
            end.recv()
        sender_end.send("go")
        for end in (receiver_end, sender_end):
            if not end.poll(300):
                raise SystemExit("a benchmark process did not finish")
        return receiver_end.recv(), sender_end.recv()
    finally:
        for proc in (receiver, sender):
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and a shorter latency run")
    parser.add_argument("--records", type=int, help="records per throughput run (default 100000, quick 20000)")
    parser.add_argument("--latency-seconds", type=float, help="length of the 1,000 records/s run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds; the best of each side counts")
    args = parser.parse_args()
    count = args.records or (20_000 if args.quick else 100_000)
    latency_seconds = args.latency_seconds or (3.0 if args.quick else 10.0)

    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from cpchain.proxy.streams.records import seal

    # The stream tests' harness (broker, chain, server process); imported by name so the type
    # checker, which does not check tests/, does not follow it.
    harness: Any = importlib.import_module("tests.streams.conftest")
    open_channel, sell = harness.open_channel, harness.sell

    with tempfile.TemporaryDirectory(prefix="pdash-bench-streams-") as tmp:
        base = Path(tmp)
        log("starting tansu, anvil with the escrow, and the stream server")
        broker = harness.start_broker(base)
        chain = harness.start_chain(base)
        server: Any = None
        try:
            server = harness.StreamProc(base / "proxy", chain, broker, chain.world.accounts["proxy"]).start()
            channel, key = open_channel(server)
            endpoint = server.endpoint
            spec = {"domain": (chain.domain.chain_id, chain.domain.contract),
                    "endpoint": (endpoint.proxy, endpoint.host, endpoint.ws_port, endpoint.http_port,
                                 endpoint.fingerprint)}  # fmt: skip
            seller = {**spec, "key": chain.world.accounts["seller"].key.hex()}
            buyer = {**spec, "key": chain.world.accounts["buyer"].key.hex()}

            sealed = [seal(key, channel, seq, b"d" * RECORD) for seq in range(count)]
            direct = relayed = 0.0
            for round_ in range(1, args.rounds + 1):  # alternating, the better of each counts (shared machines)
                topic = f"bench-direct-{round_}"
                admin = KafkaAdminClient(bootstrap_servers=[broker.address])
                admin.create_topics([NewTopic(topic, 1, 1)])
                admin.close()
                last, start = run_pair((direct_consumer, (broker.address, topic, count + 1)),
                                       (direct_producer, (broker.address, topic, sealed)))  # fmt: skip
                direct = max(direct, count / (last - start))
                log(f"round {round_}: direct kafka-python {count / (last - start):,.0f} records/s")
                channel, key = open_channel(server)
                sale = sell(server, channel, key)
                (last, _), start = run_pair((proxy_subscriber, (buyer, channel, sale.order_id, key, count, False)),
                                            (proxy_publisher, (seller, channel, key, count, 0.0)))  # fmt: skip
                relayed = max(relayed, count / (last - start))
                log(f"round {round_}: through the proxy {count / (last - start):,.0f} records/s")

            paced = int(latency_seconds * 1000)
            log(f"latency: {paced} records at 1,000 records/s")
            channel2, key2 = open_channel(server)
            sale2 = sell(server, channel2, key2)
            (_, latencies), _ = run_pair((proxy_subscriber, (buyer, channel2, sale2.order_id, key2, paced, True)),
                                         (proxy_publisher, (seller, channel2, key2, paced, 1000.0)))  # fmt: skip
            steady = latencies[min(100, len(latencies) // 10) :]
            p50, p99 = percentile(steady, 0.5) * 1000, percentile(steady, 0.99) * 1000
        finally:
            if server is not None:
                server.stop()
            chain.anvil.stop()
            broker.stop()

    ratio = relayed / direct
    met = ratio >= GOAL_RATIO and p99 < GOAL_P99_MS
    log(f"goal: ratio >= {GOAL_RATIO}, p99 < {GOAL_P99_MS:.0f} ms: {'met' if met else 'NOT met'}")
    print(f"records: {count} count")
    print(f"record size: {RECORD} bytes")
    print(f"direct kafka-python: {direct:.0f} msg/s")
    print(f"through the proxy: {relayed:.0f} msg/s")
    print(f"proxy/direct ratio: {ratio:.2f} x")
    print(f"latency p50 at 1000 rec/s: {p50:.1f} ms")
    print(f"latency p99 at 1000 rec/s: {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kafka through kafka-python, always off the reactor: topics, appends, readers, tail scans.

Owns every Kafka client of the stream relay: one shared producer (acks=all, idempotent,
one request in flight, so a channel's records keep their order), an admin client for
creating and deleting topics, and one consumer per reader, assigned its partition
explicitly (no consumer groups: nothing to join, no offsets stored in Kafka; a reader's
position is the subscriber's). Blocking methods run in a dedicated thread pool through
`run`, never on the reactor thread. Nothing here relies on end offsets or high
watermarks (the dev broker reports them wrong): the end of a topic is found by reading
until nothing more comes. Must not decide who may read or write (cpchain.proxy.streams.rules).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from cpchain.proxy.streams.wire import WireError, record_seq, unpack_records

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
SCAN_FIRST_WAIT = 1.0
SCAN_WAIT = 0.3
SCAN_BATCH = 1000
MAX_IDLE_READERS = 8


class KafkaUnavailable(Exception):
    """The broker did not answer or refused an operation (one line, for the operator)."""


def _unavailable(what: str, exc: BaseException) -> KafkaUnavailable:
    return KafkaUnavailable(f"kafka {what}: {type(exc).__name__}: {exc}")


def forget_stale_partitions(producer: KafkaProducer, topic: str) -> None:
    """Drop the producer's idle per-partition entries of other topics whose leader it no longer knows.

    kafka-python (3.0) keeps an entry per partition it ever wrote to. Once such a topic
    leaves the producer's metadata (another channel's topic took its place, or the topic
    was deleted), each pass of its sender thread finds a partition without a known leader,
    asks for a metadata update and wakes itself at once: a busy loop (some 20,000 passes a
    second) that took most of a core and the interpreter lock from the reactor, so live
    records waited tens to hundreds of milliseconds at every step. Reaches into the
    producer's internals; does nothing if they are not there.
    """
    accumulator = getattr(producer, "_accumulator", None)
    metadata = getattr(producer, "_metadata", None)
    batches = getattr(accumulator, "_batches", None)
    if accumulator is None or metadata is None or not isinstance(batches, dict):
        return
    try:
        for tp in list(batches):
            if tp.topic == topic or metadata.leader_for_partition(tp) not in (None, -1):
                continue
            with accumulator._tp_lock(tp):
                if tp in batches and not batches[tp]:  # nothing waits to be sent there
                    del batches[tp]
    except Exception as exc:  # an optimisation: never fail an append over it
        log.debug("pruning the producer's partitions: %s", exc)


class KafkaReader:
    """One consumer reading one topic's partition 0 from a position (blocking; one thread at a time)."""

    def __init__(self, brokers: Sequence[str], topic: str, offset: int, *, fetch_wait_ms: int, max_fetch_bytes: int,
                 timeout: float) -> None:  # fmt: skip
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=list(brokers),
                client_id="pdash-proxy-stream-reader",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=fetch_wait_ms,
                max_partition_fetch_bytes=max_fetch_bytes,
                fetch_max_bytes=max_fetch_bytes,
                request_timeout_ms=int(timeout * 1000),
                metrics_enabled=False,
            )
        except KafkaError as exc:
            raise _unavailable("consumer", exc) from None
        self.topic = ""
        self.position = 0
        self.assign(topic, offset)

    def assign(self, topic: str, offset: int) -> None:
        tp = TopicPartition(topic, 0)
        if topic != self.topic:
            self.consumer.assign([tp])
            self.topic = topic
        self.consumer.seek(tp, offset)
        self._tp = tp
        self.position = offset

    def read(self, max_records: int, timeout: float, start: int | None = None) -> list[tuple[int, bytes]]:
        """Records from the position (or from `start`, if given) on, possibly none within `timeout` seconds."""
        if start is not None and start != self.position:
            self.assign(self.topic, start)
        try:
            got = self.consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            raise _unavailable("read", exc) from None
        items = [(int(r.offset), bytes(r.value or b"")) for r in got.get(self._tp, ())]
        if items:
            self.position = items[-1][0] + 1
        return items

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception as exc:  # closing must not raise into a cleanup path
            log.debug("closing a reader: %s", exc)


class KafkaBridge:
    """The relay's Kafka clients and the thread pool every blocking call runs in."""

    def __init__(self, reactor: Any, brokers: Sequence[str], *, threads: int, timeout: float, fetch_wait_ms: int,
                 max_fetch_bytes: int) -> None:  # fmt: skip
        self.reactor = reactor
        self.brokers = list(brokers)
        self.timeout = timeout
        self.fetch_wait_ms = fetch_wait_ms
        self.max_fetch_bytes = max_fetch_bytes
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="pdash-stream-kafka")
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._idle: list[KafkaReader] = []

    def start(self) -> None:
        self.pool.start()

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run a blocking call in the Kafka thread pool."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args, **kwargs)

    def stop(self) -> None:
        """Flush and close every client, then stop the pool (blocking; at shutdown)."""
        with self._lock:
            producer, admin, idle = self._producer, self._admin, self._idle
            self._producer, self._admin, self._idle = None, None, []
        for reader in idle:
            reader.close()
        if producer is not None:
            try:
                producer.close(timeout=self.timeout)
            except KafkaError as exc:
                log.warning("closing the producer: %s", exc)
        if admin is not None:
            admin.close()
        self.pool.stop()

    # ------------------------------------------------------------ blocking calls

    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.brokers,
                        client_id="pdash-proxy-stream-producer",
                        acks="all",
                        linger_ms=0,
                        batch_size=1 << 20,
                        max_in_flight_requests_per_connection=1,
                        max_block_ms=int(self.timeout * 1000),
                        request_timeout_ms=int(self.timeout * 1000),
                        delivery_timeout_ms=int(self.timeout * 1000) + 1000,
                        metrics_enabled=False,  # kafka-python's per-request metrics cost CPU the relay needs
                    )
                except KafkaError as exc:
                    raise _unavailable("producer", exc) from None
            return self._producer

    def admin(self) -> KafkaAdminClient:
        with self._lock:
            if self._admin is None:
                try:
                    self._admin = KafkaAdminClient(bootstrap_servers=self.brokers, client_id="pdash-proxy-stream-admin",
                                                   request_timeout_ms=int(self.timeout * 1000))  # fmt: skip
                except KafkaError as exc:
                    raise _unavailable("admin", exc) from None
            return self._admin

    def warm(self, topic: str) -> None:
        """Have the producer fetch the topic's metadata ahead of its first append (best effort)."""
        producer = self.producer()
        try:
            producer.partitions_for(topic)
        except KafkaError as exc:
            raise _unavailable("metadata", exc) from None
        finally:
            forget_stale_partitions(producer, topic)  # the topic it replaced in the metadata, if any

    def create_topic(self, topic: str) -> None:
        """Create a one-partition topic Kafka never expires itself (the relay deletes it); idempotent."""
        try:
            self.admin().create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "-1"})])
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            raise _unavailable("create topic", exc) from None

    def delete_topic(self, topic: str) -> None:
        try:
            self.admin().delete_topics([topic])
        except UnknownTopicOrPartitionError:
            pass
        except KafkaError as exc:
            raise _unavailable("delete topic", exc) from None
        with self._lock:
            producer = self._producer
        if producer is not None:
            forget_stale_partitions(producer, "")

    def append(self, topic: str, messages: Sequence[bytes]) -> Deferred[list[int]]:
        """Write messages in order; fires with their offsets once all replicas acknowledged every one.

        The sends happen in the thread pool; the acknowledgements arrive through the
        producer's callbacks, without holding a thread. On any error some of them may have
        been written: the caller must find the real end of the topic before accepting more
        (`scan_tail`).
        """
        done: Deferred[list[int]] = Deferred()

        def fire(result: list[int] | KafkaUnavailable) -> None:
            if isinstance(result, KafkaUnavailable):
                done.errback(result)
            else:
                done.callback(result)

        def send() -> None:
            try:
                producer = self.producer()
                forget_stale_partitions(producer, topic)
                futures = [producer.send(topic, value=message, partition=0) for message in messages]
            except KafkaUnavailable as exc:
                self.reactor.callFromThread(fire, exc)
                return
            except KafkaError as exc:
                self.reactor.callFromThread(fire, _unavailable("append", exc))
                return
            left = [len(futures)]
            lock = threading.Lock()

            def settled(_: object) -> None:
                with lock:
                    left[0] -= 1
                    if left[0]:
                        return
                forget_stale_partitions(producer, topic)
                failed = next((f.exception for f in futures if f.failed()), None)
                result = _unavailable("append", failed) if failed else [int(f.value.offset) for f in futures]
                self.reactor.callFromThread(fire, result)

            for future in futures:
                future.add_both(settled)

        self.pool.callInThread(send)
        return done

    def reader(self, topic: str, offset: int) -> KafkaReader:
        with self._lock:
            reader = self._idle.pop() if self._idle else None
        if reader is None:
            return KafkaReader(self.brokers, topic, offset, fetch_wait_ms=self.fetch_wait_ms,
                               max_fetch_bytes=self.max_fetch_bytes, timeout=self.timeout)  # fmt: skip
        reader.assign(topic, offset)
        return reader

    def release(self, reader: KafkaReader) -> None:
        """Keep a reader for reuse (a few), or close it."""
        with self._lock:
            if len(self._idle) < MAX_IDLE_READERS:
                self._idle.append(reader)
                return
        reader.close()

    def scan_tail(self, topic: str, offset: int, seq: int) -> tuple[int, int]:
        """The real end of a topic of chunks from a known offset: (next offset, next seq).

        Reads from `offset` until the broker has nothing more, so records written by a
        producer whose acknowledgement was lost (a crash, a timeout) are counted.
        """
        reader = self.reader(topic, offset)
        try:
            empty, wait = 0, SCAN_FIRST_WAIT
            while empty < 2:
                items = reader.read(SCAN_BATCH, wait)
                wait = SCAN_WAIT
                if not items:
                    empty += 1
                    continue
                empty = 0
                for _, chunk in items:
                    try:
                        seq = max(seq, record_seq(unpack_records(chunk, len(chunk))[-1]) + 1)
                    except (WireError, IndexError):
                        log.warning("topic %s holds a message that is not a chunk of records", topic)
                offset = reader.position
            return offset, seq
        finally:
            self.release(reader)

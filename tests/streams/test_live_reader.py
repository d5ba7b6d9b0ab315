"""StreamService.read against LiveChannel.notify on a fake clock and a fake Kafka (no network):
the interleavings of a reader's Kafka reads, its waits and acknowledged appends, step by step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from cpchain.proxy.streams.model import Channel, ChannelState
from cpchain.proxy.streams.service import IDLE_POLL, LiveChannel, RecordReader, StreamService
from cpchain.proxy.streams.wire import SEQ, pack_records, position

CHANNEL = "ab" * 16


class FakeReactor(Clock):
    def getThreadPool(self) -> None:  # noqa: N802 (IReactorThreads)
        return None


class FakeKafka:
    """Each `run` is one blocking call in flight until the test settles it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((fn, args, d))
        return d

    def settle(self, result: list[tuple[int, bytes]]) -> tuple[Any, ...]:
        """Answer the one read in flight; returns its arguments (max_records, timeout, start)."""
        assert len(self.calls) == 1, self.calls
        _, args, d = self.calls.pop()
        d.callback(result)
        return args


class FakeKafkaReader:
    def read(self, max_records: int, timeout: float, start: int | None = None) -> list[tuple[int, bytes]]:
        raise AssertionError("runs through FakeKafka.run only")


def setup(next_offset: int) -> tuple[FakeReactor, FakeKafka, StreamService, LiveChannel, RecordReader]:
    reactor, kafka = FakeReactor(), FakeKafka()
    service = StreamService(reactor=reactor, settings=cast(Any, SimpleNamespace(max_batch_bytes=1 << 20)),
                            gateway=cast(Any, SimpleNamespace(address="0x" + "11" * 20, domain=None)),
                            registry=cast(Any, None), kafka=cast(Any, kafka), endpoint=cast(Any, None))  # fmt: skip
    live = LiveChannel(Channel(id=CHANNEL, seller="0x" + "22" * 20, topic="t", state=ChannelState.OPEN, created_at=0,
                               ended_at=None, retention=60, next_seq=next_offset, next_offset=next_offset,
                               request_nonce=""))  # fmt: skip
    live.verified = True
    service._channels[CHANNEL] = live
    reader = RecordReader(cast(Any, FakeKafkaReader()), position(next_offset, 0), reactor.seconds())
    return reactor, kafka, service, live, reader


def rec(seq: int) -> bytes:
    return SEQ.pack(seq) + b"record %d" % seq


def append(live: LiveChannel, offset: int, seqs: range) -> tuple[int, bytes]:
    """What StreamService._append_loop does once Kafka acknowledged a chunk at `offset`."""
    chunk = (offset, pack_records(rec(s) for s in seqs))
    live.next_offset = offset + 1
    live.notify([chunk])
    return chunk


def read(service: StreamService, live: LiveChannel, reader: RecordReader) -> list[Any]:
    result: list[Any] = []
    Deferred.fromCoroutine(service.read(live, reader, 100, 30.0)).addCallback(result.append)
    return result


def test_a_reader_whose_wait_timed_out_is_not_handed_chunks_while_it_reads_kafka() -> None:
    """Issue 6: a live subscriber got its first record twice (and stopped on the replay)."""
    reactor, kafka, service, live, reader = setup(next_offset=3)
    result = read(service, live, reader)
    assert not kafka.calls  # nothing to read: waiting for a notification
    reactor.advance(IDLE_POLL)  # no notification: the wait times out, the reader polls Kafka itself
    assert kafka.calls and kafka.calls[0][1][2] == 3
    chunk = append(live, 3, range(7, 9))  # acknowledged while that poll is in flight...
    assert reader.pending == 0  # ...is not handed to the reader: it is not waiting
    kafka.settle([chunk])  # the poll got it from Kafka
    assert result == [[(position(3, 0), rec(7)), (position(3, 1), rec(8))]]  # once each
    assert reader.position == position(4, 0) and reader.kafka_next == 4


def test_timed_out_waits_leave_no_waiter_behind() -> None:
    reactor, kafka, service, live, reader = setup(next_offset=0)
    result = read(service, live, reader)
    for _ in range(5):
        reactor.advance(IDLE_POLL)
        assert kafka.settle([]) == (100, 0.05, 0)  # an idle poll finds nothing
    assert len(live._data) == 1 and not result  # only the current wait
    append(live, 0, range(1))
    assert result == [[(position(0, 0), rec(0))]] and not kafka.calls  # handed over, not read back
    assert not live._data


def test_a_record_acknowledged_during_an_empty_poll_is_read_at_once() -> None:
    """The poll started before the append: the reader is behind when it comes back empty."""
    reactor, kafka, service, live, reader = setup(next_offset=5)
    result = read(service, live, reader)
    reactor.advance(IDLE_POLL)
    chunk = append(live, 5, range(5, 6))
    kafka.settle([])  # the broker answered before it had the record
    assert kafka.calls, "must read again at once, not wait for the next idle poll"
    assert kafka.settle([chunk])[2] == 5
    assert result == [[(position(5, 0), rec(5))]]


def test_the_end_is_not_reported_before_records_acknowledged_during_a_poll() -> None:
    reactor, kafka, service, live, reader = setup(next_offset=2)
    result = read(service, live, reader)
    reactor.advance(IDLE_POLL)
    chunk = append(live, 2, range(2, 3))
    live.info = replace(live.info, state=ChannelState.ENDED, ended_at=1)
    kafka.settle([])
    assert result == []  # no answer yet: the end must not come before the record acknowledged meanwhile
    kafka.settle([chunk])
    assert result == [[(position(2, 0), rec(2))]]
    assert read(service, live, reader) == [None]  # now everything was read


def test_a_reader_takes_each_chunk_once() -> None:
    reader = RecordReader(cast(Any, FakeKafkaReader()), position(4, 1), 0.0)  # entered midway through chunk 4
    first, second = (4, pack_records(rec(s) for s in range(3))), (5, pack_records([rec(3)]))
    reader.add([first])
    reader.add([first, second])  # handed over, then read back from Kafka as well
    assert reader.take(10) == [(position(4, 1), rec(1)), (position(4, 2), rec(2)), (position(5, 0), rec(3))]
    assert (reader.position, reader.kafka_next, reader.pending_bytes) == (position(6, 0), 6, 0)

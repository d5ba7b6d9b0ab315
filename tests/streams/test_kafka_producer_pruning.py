"""forget_stale_partitions: the workaround for kafka-python's producer spinning on partitions
of topics it no longer knows a leader for (pure: a stand-in for the producer's internals)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka.structs import TopicPartition

from cpchain.proxy.streams.kafka import forget_stale_partitions


class Accumulator:
    def __init__(self, batches: dict[TopicPartition, deque[Any]]) -> None:
        self._batches = batches
        self.locked: list[TopicPartition] = []

    @contextmanager
    def _tp_lock(self, tp: TopicPartition) -> Iterator[None]:
        self.locked.append(tp)
        with threading.Lock():
            yield


class Metadata:
    def __init__(self, leaders: dict[str, int]) -> None:
        self.leaders = leaders

    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return self.leaders.get(tp.topic)


class Producer:
    def __init__(self, batches: dict[TopicPartition, deque[Any]], leaders: dict[str, int]) -> None:
        self._accumulator = Accumulator(batches)
        self._metadata = Metadata(leaders)


def test_only_idle_partitions_of_other_leaderless_topics_are_forgotten() -> None:
    gone, busy_gone, known, current = (TopicPartition(t, 0) for t in ("gone", "busy-gone", "known", "current"))
    batches: dict[TopicPartition, deque[Any]] = {gone: deque(), busy_gone: deque(["batch"]), known: deque(),
                                                 current: deque()}  # fmt: skip
    producer = Producer(batches, {"known": 1, "busy-gone": -1})  # "gone" and "current": no leader known
    forget_stale_partitions(producer, "current")  # type: ignore[arg-type]
    # idle and leaderless: dropped; records still waiting: kept; a known leader: kept; the topic in use: kept
    assert set(batches) == {busy_gone, known, current}
    assert producer._accumulator.locked == [gone, busy_gone]


def test_a_producer_without_those_internals_is_left_alone() -> None:
    class Other:
        pass

    forget_stale_partitions(Other(), "t")  # type: ignore[arg-type]
    broken = Producer({TopicPartition("x", 0): deque()}, {})
    broken._metadata = None  # type: ignore[assignment]
    forget_stale_partitions(broken, "t")  # type: ignore[arg-type]
    assert list(broken._accumulator._batches) == [TopicPartition("x", 0)]

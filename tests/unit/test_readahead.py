"""read_ahead: every byte once and in order, the source's errors raised after the chunks read
before them, and a consumer that stops early stops the reader."""

from __future__ import annotations

import io
import threading
import time

import pytest

from cpchain.readahead import read_ahead


def test_every_chunk_arrives_once_and_in_order() -> None:
    data = bytes(range(256)) * 4099
    src = io.BytesIO(data)
    got = b"".join(bytes(chunk) for chunk in read_ahead(src.readinto, 1000, depth=3))
    assert got == data


def test_an_empty_source_yields_nothing() -> None:
    assert list(read_ahead(io.BytesIO(b"").readinto, 64)) == []


def test_a_read_error_comes_after_the_chunks_before_it() -> None:
    calls = 0

    def flaky(buffer: memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionResetError("peer went away")
        buffer[:4] = b"abcd"
        return 4

    seen: list[bytes] = []
    with pytest.raises(ConnectionResetError, match="peer went away"):
        for chunk in read_ahead(flaky, 16):
            seen.append(bytes(chunk))
    assert seen == [b"abcd", b"abcd"]


def test_closing_early_stops_the_reader() -> None:
    reads = 0

    def endless(buffer: memoryview) -> int:
        nonlocal reads
        reads += 1
        return len(buffer)

    chunks = read_ahead(endless, 8, depth=2)
    next(chunks)
    chunks.close()
    time.sleep(0.3)  # the reader notices at its next hand-over attempt
    settled = reads
    time.sleep(0.3)
    assert reads == settled and reads <= 2 + 2 + 1  # never more than the buffers could hold
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_a_consumer_error_leaves_no_thread_behind() -> None:
    src = io.BytesIO(b"x" * 10_000)
    with pytest.raises(RuntimeError, match="consumer"):
        for _ in read_ahead(src.readinto, 100):
            raise RuntimeError("consumer failed")
    deadline = time.monotonic() + 2
    while [t for t in threading.enumerate() if t.name == "read-ahead"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)

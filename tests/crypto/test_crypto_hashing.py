"""Tests for cpchain.crypto.hashing: streaming SHA-256 helpers."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest

from cpchain.crypto import HashingReader, HashingWriter, HashMismatch, sha256_file
from cpchain.crypto.hashing import READ_CHUNK


@pytest.mark.parametrize("size", [0, 1, READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 1])
def test_sha256_file(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    seen: list[int] = []
    assert sha256_file(path, progress=seen.append) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
    if size:
        assert seen == sorted(seen) and seen[-1] == size
    else:
        assert seen == []


def test_sha256_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "nope")


class TrickleWriter(io.RawIOBase):
    """Accepts at most 3 bytes per write, like a raw non-blocking stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        chunk = bytes(b[:3])
        self.data += chunk
        return len(chunk)


class NoneWriter:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> None:
        self.data += b


class StuckWriter:
    def write(self, b: bytes) -> int:
        return 0


def test_hashing_writer() -> None:
    out = io.BytesIO()
    w = HashingWriter(out)
    assert w.write(b"hello ") == 6
    assert w.write(bytearray(b"world")) == 5
    w.flush()
    expected = hashlib.sha256(b"hello world")
    assert out.getvalue() == b"hello world"
    assert w.hexdigest() == expected.hexdigest()
    assert w.digest() == expected.digest()
    assert w.bytes_written == 11
    w.verify(expected.hexdigest())
    w.verify("0x" + expected.hexdigest().upper())
    with pytest.raises(HashMismatch):
        w.verify(hashlib.sha256(b"other").hexdigest())


def test_hashing_writer_handles_short_writes() -> None:
    raw = TrickleWriter()
    w = HashingWriter(raw)
    data = os.urandom(100)
    assert w.write(data) == 100
    assert bytes(raw.data) == data
    assert w.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hashing_writer_none_return_and_stuck_stream() -> None:
    inner = NoneWriter()
    w = HashingWriter(inner)
    w.write(b"abc")
    w.flush()  # inner has no flush: must not fail
    assert w.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(OSError):
        HashingWriter(StuckWriter()).write(b"x")


def test_hashing_reader() -> None:
    data = os.urandom(10_000)
    r = HashingReader(io.BytesIO(data))
    assert r.read(10) == data[:10]
    buf = bytearray(90)
    assert r.readinto(buf) == 90 and bytes(buf) == data[10:100]
    assert r.read() == data[100:]
    assert r.read(5) == b""
    assert r.bytes_read == len(data)
    assert r.hexdigest() == hashlib.sha256(data).hexdigest()
    assert r.digest() == hashlib.sha256(data).digest()
    r.verify(hashlib.sha256(data).hexdigest())
    with pytest.raises(HashMismatch):
        r.verify("00" * 32)


def test_hashing_reader_with_copyfileobj() -> None:
    data = os.urandom(300_000)
    r = HashingReader(io.BytesIO(data))
    out = HashingWriter(io.BytesIO())
    shutil.copyfileobj(r, out)
    assert r.hexdigest() == out.hexdigest() == hashlib.sha256(data).hexdigest()

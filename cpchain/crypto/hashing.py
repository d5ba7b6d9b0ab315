"""Streaming SHA-256 helpers.

Owns hashing of files and of byte streams as they pass through (so encrypt,
upload and download code never has to read a file twice or hold it in memory).
Must not touch keys or do any encryption; it never closes the streams it wraps.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Protocol

from .errors import HashMismatch

__all__ = [
    "READ_CHUNK",
    "HashingReader",
    "HashingWriter",
    "ReadableStream",
    "WritableStream",
    "sha256_file",
]

READ_CHUNK = 1 << 20
"""Read size for whole-file hashing: large enough to amortise syscalls, small enough for constant memory."""

ProgressCallback = Callable[[int], None]


class ReadableStream(Protocol):
    """Anything with a binary ``read`` (files, sockets' makefile, :class:`HashingReader`)."""

    def read(self, size: int = -1, /) -> bytes: ...


class WritableStream(Protocol):
    """Anything with a binary ``write`` (files, :class:`HashingWriter`, ``BytesIO``)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...


def sha256_file(path: str | os.PathLike[str], progress: ProgressCallback | None = None) -> str:
    """Return the hex SHA-256 of a file, reading 1 MiB at a time.

    ``progress`` receives the cumulative number of bytes hashed so far, so a UI
    can show a bar for multi-GiB files without a second pass.
    """
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return digest.hexdigest()


def _check_expected(actual_hex: str, expected_hex: str) -> None:
    expected = expected_hex.lower().removeprefix("0x")
    if not hmac.compare_digest(actual_hex, expected):
        raise HashMismatch(f"sha256 mismatch: expected {expected}, got {actual_hex}")


class _Hashing:
    """The digest side shared by the reading and writing wrappers."""

    _hash: hashlib._Hash

    def digest(self) -> bytes:
        """Raw SHA-256 of every byte that passed through so far."""
        return self._hash.digest()

    def hexdigest(self) -> str:
        """Hex SHA-256 of every byte that passed through so far."""
        return self._hash.hexdigest()

    def verify(self, expected_hex: str) -> None:
        """Raise :class:`HashMismatch` unless the digest equals ``expected_hex``."""
        _check_expected(self.hexdigest(), expected_hex)


class HashingWriter(_Hashing):
    """Write-through wrapper that hashes exactly the bytes written to the inner stream.

    Used to compute the ciphertext digest while encrypting, so the digest always
    describes what actually reached the destination.
    """

    def __init__(self, inner: WritableStream) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Write all of ``data`` (looping over short raw writes) and hash it."""
        view = memoryview(data).cast("B")  # no copy: a proxy's fetch passes gigabytes through here
        offset = 0
        while offset < len(view):
            chunk = view[offset:]
            n = self._inner.write(chunk)
            if n is None:  # some streams return None meaning "all written"
                n = len(chunk)
            n = min(n, len(chunk))
            if n <= 0:
                raise OSError("underlying stream accepted no data")
            self._hash.update(chunk[:n])
            offset += n
        self.bytes_written += len(view)
        return len(view)

    def tell(self) -> int:
        """Bytes written through this wrapper, which only ever appends."""
        return self.bytes_written

    def flush(self) -> None:
        """Flush the inner stream if it supports it."""
        flush = getattr(self._inner, "flush", None)
        if callable(flush):
            flush()


class HashingReader(_Hashing):
    """Read-through wrapper that hashes exactly the bytes handed to the caller.

    Used on downloads/uploads so the digest of the transferred bytes is known
    the moment the stream ends, without re-reading the data.
    """

    def __init__(self, inner: ReadableStream) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes (all if negative) and hash them."""
        data = self._inner.read(size)
        if data:
            self._hash.update(data)
            self.bytes_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        """Fill ``buffer`` (for ``shutil.copyfileobj``-style consumers) and hash the bytes."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

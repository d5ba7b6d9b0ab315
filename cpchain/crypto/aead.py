"""Chunked AES-256-GCM file encryption (STREAM construction) and record sealing.

Owns the on-disk/on-wire format of encrypted data files and of sealed stream
records. Must not touch key management (where data keys come from, how they are
wrapped) or any transport; it only transforms byte streams in O(segment) memory.

File format (all integers big-endian)::

    header  = magic b"PDASHv1\\0" (8) || version (1) || segment_size (4) || nonce_prefix (7)
    segment = AES-256-GCM(key, nonce, plaintext_i, aad=header)  -> ciphertext_i || tag (16)
    nonce   = nonce_prefix (7) || counter_i (4) || last_flag (1)

Every segment except the last holds exactly ``segment_size`` plaintext bytes;
the last one (flag 1) holds 0..segment_size bytes (0 only for empty input).
Binding the counter and the last flag into the nonce is what makes reordering,
truncation and extension detectable (Hoang, Reyhanitabar, Rogaway, Vizar 2015).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cpchain.fsutil import StreamingWriter, fsync_dir

from .errors import (
    DecryptionFailed,
    InputTooLarge,
    InvalidArgument,
    InvalidKey,
    MalformedCiphertext,
    TruncatedCiphertext,
)
from .hashing import HashingWriter, ReadableStream, WritableStream

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "VERSION",
    "StreamDecryptor",
    "ciphertext_size",
    "decrypt_file",
    "decrypt_stream",
    "decrypting_to",
    "encrypt_file",
    "encrypt_stream",
    "generate_data_key",
    "open_record",
    "seal_record",
]

MAGIC = b"PDASHv1\x00"
VERSION = 1
KEY_SIZE = 32
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
DEFAULT_SEGMENT_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 16
# Upper bound so a hostile header cannot make the decryptor allocate gigabytes.
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
_MAX_COUNTER = 0xFFFFFFFF
# Reads while decrypting a file: a few default segments, so memory stays O(segment).
_DECRYPT_READ = 4 * DEFAULT_SEGMENT_SIZE
# Plaintext decrypted per write to the destination: bounds the decryptor's buffer whatever
# size of pieces it is fed.
PLAIN_BATCH = 1 << 20

_HEADER = struct.Struct(">8sBI7s")
HEADER_SIZE = _HEADER.size  # 20

_RECORD_NONCE_SIZE = 12
_RECORD_LABEL = b"pdash-record-v1\x00"
_MAX_SEQ = 2**64 - 1

ProgressCallback = Callable[[int], None]


def generate_data_key() -> bytes:
    """Return a fresh random 256-bit data key (one per file, never reused)."""
    return secrets.token_bytes(KEY_SIZE)


def _aes(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise InvalidKey(f"AES-256-GCM key must be {KEY_SIZE} bytes")
    return AESGCM(bytes(key))


def _check_segment_size(segment_size: int) -> None:
    if not isinstance(segment_size, int) or not (MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE):
        raise InvalidArgument(f"segment_size must be an int in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_exact(src: ReadableStream, n: int) -> bytes:
    """Read ``n`` bytes unless EOF comes first (pipes and sockets return short reads)."""
    data = src.read(n)
    if not data or len(data) == n:
        return data
    buf = bytearray(data)
    while len(buf) < n:
        more = src.read(n - len(buf))
        if not more:
            break
        buf += more
    return bytes(buf)


def _write_all(dst: WritableStream | BinaryIO, data: bytes | memoryview) -> None:
    """Write all of ``data``; raw streams may accept only part of it per call."""
    while data:
        n = dst.write(data)
        if n is None or n >= len(data):
            return
        if n <= 0:
            raise OSError("destination stream accepted no data")
        data = data[n:]


def ciphertext_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Exact size of :func:`encrypt_stream` output, e.g. for Content-Length or quotas."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise InvalidArgument("plaintext_size must be >= 0")
    segments = max(1, -(-plaintext_size // segment_size))
    if segments - 1 > _MAX_COUNTER:
        raise InputTooLarge("plaintext needs more than 2**32 segments")
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def encrypt_stream(
    key: bytes,
    src: ReadableStream | BinaryIO,
    dst: WritableStream | BinaryIO,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: ProgressCallback | None = None,
) -> str:
    """Encrypt ``src`` into ``dst`` and return the hex SHA-256 of the ciphertext.

    The digest is computed on the bytes as they are written, so it can be
    published (e.g. on chain) without re-reading the output. Memory use is
    about two segments regardless of input size. ``progress`` receives the
    cumulative number of plaintext bytes encrypted.
    """
    aes = _aes(key)
    _check_segment_size(segment_size)
    header = _HEADER.pack(MAGIC, VERSION, segment_size, secrets.token_bytes(NONCE_PREFIX_SIZE))
    prefix = header[-NONCE_PREFIX_SIZE:]
    out = HashingWriter(dst)
    out.write(header)

    counter = 0
    done = 0
    cur = _read_exact(src, segment_size)
    while True:
        # One segment of read-ahead tells us whether ``cur`` is the last one.
        nxt = _read_exact(src, segment_size) if len(cur) == segment_size else b""
        last = not nxt
        out.write(aes.encrypt(_nonce(prefix, counter, last), cur, header))
        done += len(cur)
        if progress is not None:
            progress(done)
        if last:
            break
        if counter == _MAX_COUNTER:
            raise InputTooLarge("plaintext needs more than 2**32 segments")
        counter += 1
        cur = nxt
    out.flush()
    return out.hexdigest()


def _parse_header(header: bytes) -> tuple[int, bytes]:
    if len(header) < HEADER_SIZE:
        raise MalformedCiphertext("ciphertext too short for a header")
    magic, version, segment_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC:
        raise MalformedCiphertext("not a PDASH encrypted file (bad magic)")
    if version != VERSION:
        raise MalformedCiphertext(f"unsupported format version {version}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise MalformedCiphertext(f"segment size {segment_size} out of range")
    return segment_size, prefix


def _opens(aes: AESGCM, nonce: bytes, data: bytes, aad: bytes) -> bool:
    try:
        aes.decrypt(nonce, data, aad)
    except InvalidTag:
        return False
    return True


class StreamDecryptor:
    """Decrypts a ciphertext pushed to it in pieces of any size, in order, into ``dst``.

    Lets a download decrypt as the bytes arrive instead of reading the file back after.
    A segment is written only once it authenticates; the last full segment is held back
    until :meth:`finish` (or more data) says whether it is the final one. A failure is
    kept, not raised, by :meth:`write` (the caller is usually in the middle of something
    else, like a download whose own checks come first) and raised by :meth:`finish`; after
    a failure or :meth:`abandon` later writes are ignored. ``progress`` receives the
    cumulative number of ciphertext bytes consumed.
    """

    def __init__(self, key: bytes, dst: WritableStream | BinaryIO, progress: ProgressCallback | None = None) -> None:
        self._aes = _aes(key)
        self._dst = dst
        self._progress = progress
        self._reset()

    def _reset(self) -> None:
        self._buffer = bytearray()
        self._plain = bytearray()
        self._header = b""
        self._prefix = b""
        self._sealed_size = 0
        self._counter = 0
        self._consumed = 0
        self._error: DecryptionFailed | None = None
        self.abandoned = False

    @property
    def failed(self) -> bool:
        return self._error is not None

    def abandon(self) -> None:
        """Stop following: the bytes will not all arrive in order (e.g. a resumed download)."""
        self.abandoned = True

    def restart(self, progress: ProgressCallback | None = None) -> None:
        """Forget everything decrypted so far and truncate ``dst`` (seekable) to start over,
        reporting to ``progress`` from now on."""
        seek, truncate = getattr(self._dst, "seek", None), getattr(self._dst, "truncate", None)
        if not (callable(seek) and callable(truncate)):
            raise InvalidArgument("restart needs a seekable, truncatable destination")
        seek(0)
        truncate()
        self._progress = progress
        self._reset()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.abandoned or self._error is not None:
            return
        view = memoryview(data).cast("B")
        try:
            if not self._header:
                missing = HEADER_SIZE - len(self._buffer)
                self._buffer += view[:missing]
                view = view[missing:]
                if len(self._buffer) < HEADER_SIZE:
                    return
                self._header = bytes(self._buffer)
                segment_size, self._prefix = _parse_header(self._header)
                self._sealed_size = segment_size + TAG_SIZE
                self._buffer.clear()
                self._consumed = HEADER_SIZE
            sealed = self._sealed_size
            # A segment is opened only with more bytes after it: then it is certainly not the last.
            if self._buffer:
                missing = sealed - len(self._buffer)
                self._buffer += view[:missing]
                view = view[missing:]
                if not view:
                    return
                with memoryview(self._buffer) as carried:
                    self._open_run(carried, 1)
                self._buffer.clear()
            # Whole segments straight from the caller's buffer (no copy); the rest is carried.
            count = (len(view) - 1) // sealed if view else 0
            if count:
                self._open_run(view[: count * sealed], count)
            self._buffer += view[count * sealed :]
        except DecryptionFailed as exc:
            self._error = exc

    def write_from(self, src: ReadableStream | BinaryIO) -> None:
        """Feed everything ``src`` holds (the fallback when the pieces could not be followed)."""
        while not self.failed and (chunk := src.read(_DECRYPT_READ)):
            self.write(chunk)

    def finish(self) -> None:
        """Decrypt the final segment and flush ``dst``; raise the first failure, if any.

        Raises :class:`MalformedCiphertext` for a bad header, :class:`TruncatedCiphertext`
        if the final segment is missing, and :class:`DecryptionFailed` for a wrong key,
        tampering, reordering or data after the final segment.
        """
        if self.abandoned:
            raise InvalidArgument("the decryptor was abandoned; restart() it and feed the whole ciphertext")
        if self._error is None:
            try:
                if not self._header:
                    raise MalformedCiphertext("ciphertext too short for a header")
                if not self._buffer:
                    raise TruncatedCiphertext("ciphertext has a header but no segments")
                self._open_last(bytes(self._buffer))
                self._buffer.clear()
            except DecryptionFailed as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        flush = getattr(self._dst, "flush", None)
        if callable(flush):
            flush()

    def _open_run(self, sealed: memoryview, count: int) -> None:
        """Open `count` consecutive non-final segments, a batch at a time into one reused
        buffer (at most PLAIN_BATCH bytes, whatever the caller's piece size), writing each batch.

        On a failure the segments before it, all authentic, are written first (as one at a
        time would have), then the failure is raised.
        """
        step = self._sealed_size
        size = step - TAG_SIZE
        batch = min(count, max(1, PLAIN_BATCH // size))
        if len(self._plain) < batch * size:
            self._plain = bytearray(batch * size)
        with memoryview(self._plain) as plain:
            for first in range(0, count, batch):
                n = min(batch, count - first)
                opened = 0
                try:
                    for i in range(n):
                        at = (first + i) * step
                        self._open_into(sealed[at : at + step], plain[i * size : (i + 1) * size])
                        opened += 1
                finally:
                    _write_all(self._dst, plain[: opened * size])
                    self._consumed += opened * step
                    if opened and self._progress is not None:
                        self._progress(self._consumed)

    def _open_into(self, sealed: memoryview, out: memoryview) -> None:
        counter = self._counter
        try:
            self._aes.decrypt_into(_nonce(self._prefix, counter, False), sealed, self._header, out)
        except InvalidTag:
            self._raise_failure(bytes(sealed), counter, last=False)
        if counter == _MAX_COUNTER:
            raise MalformedCiphertext("ciphertext has more than 2**32 segments")
        self._counter = counter + 1

    def _open_last(self, sealed: bytes) -> None:
        try:
            plaintext = self._aes.decrypt(_nonce(self._prefix, self._counter, True), sealed, self._header)
        except InvalidTag:
            self._raise_failure(sealed, self._counter, last=True)
        _write_all(self._dst, plaintext)
        self._consumed += len(sealed)
        if self._progress is not None:
            self._progress(self._consumed)

    def _raise_failure(self, sealed: bytes, counter: int, *, last: bool) -> NoReturn:
        # Diagnose with the opposite flag: only costs time on the failure path.
        if _opens(self._aes, _nonce(self._prefix, counter, not last), sealed, self._header):
            if last:
                raise TruncatedCiphertext(f"stream ends after segment {counter} without a final segment") from None
            raise DecryptionFailed("unexpected data after the final segment") from None
        raise DecryptionFailed(
            f"segment {counter} failed authentication (wrong key, tampered, reordered or truncated data)"
        ) from None


def decrypt_stream(
    key: bytes,
    src: ReadableStream | BinaryIO,
    dst: WritableStream | BinaryIO,
    progress: ProgressCallback | None = None,
) -> None:
    """Decrypt ``src`` into ``dst``, writing each segment only after it authenticates.

    A failure can surface after earlier (authentic) segments were written: the
    stream as a whole is only proven complete when this returns, so on any
    exception the caller MUST discard ``dst`` (use :func:`decrypt_file` for
    that to happen automatically). ``progress`` receives the cumulative number
    of ciphertext bytes consumed, which matches the source file size at the end.
    Errors as :meth:`StreamDecryptor.finish`.
    """
    decryptor = StreamDecryptor(key, dst, progress)
    decryptor.write_from(src)
    decryptor.finish()


@contextlib.contextmanager
def _atomic_output(dst_path: Path) -> Iterator[BinaryIO]:
    """Yield a temp file beside ``dst_path``; rename it into place only on success.

    The temp file is created 0600 (it may hold plaintext) and removed on error,
    so a failed run never leaves a partial or unauthenticated output behind.
    """
    directory = dst_path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst_path.name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            out = StreamingWriter(fh)
            yield cast(BinaryIO, out)
            out.sync()
        os.replace(tmp, dst_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def encrypt_file(
    key: bytes,
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: ProgressCallback | None = None,
) -> str:
    """Encrypt a file to ``dst_path`` atomically; return the ciphertext's hex SHA-256.

    An existing ``dst_path`` is replaced only once the new ciphertext is complete.
    """
    _aes(key)
    _check_segment_size(segment_size)
    dst = Path(dst_path)
    with open(src_path, "rb") as src, _atomic_output(dst) as out:
        return encrypt_stream(key, src, out, segment_size=segment_size, progress=progress)


def decrypt_file(
    key: bytes,
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
) -> None:
    """Decrypt a file to ``dst_path`` (mode 0600), which appears only if every segment authenticates."""
    with open(src_path, "rb") as src, decrypting_to(key, dst_path, progress) as decryptor:
        decryptor.write_from(src)


@contextlib.contextmanager
def decrypting_to(
    key: bytes, dst_path: str | os.PathLike[str], progress: ProgressCallback | None = None
) -> Iterator[StreamDecryptor]:
    """A :class:`StreamDecryptor` into ``dst_path`` (mode 0600) for the caller to feed.

    The file appears only if the block ends normally and every segment authenticates
    (:meth:`StreamDecryptor.finish` runs at the end); otherwise nothing is left behind.
    """
    _aes(key)
    with _atomic_output(Path(dst_path)) as out:
        decryptor = StreamDecryptor(key, out, progress)
        yield decryptor
        decryptor.finish()


# --- record sealing --------------------------------------------------------


def _record_aad(seq: int, channel_id: bytes) -> bytes:
    if not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
        raise InvalidArgument("seq must be an int in [0, 2**64)")
    if not isinstance(channel_id, (bytes, bytearray)) or len(channel_id) > 0xFFFF:
        raise InvalidArgument("channel_id must be bytes of at most 65535 bytes")
    return _RECORD_LABEL + struct.pack(">QH", seq, len(channel_id)) + bytes(channel_id)


def seal_record(key: bytes, seq: int, plaintext: bytes, channel_id: bytes) -> bytes:
    """Encrypt one stream record as ``nonce (12) || ciphertext || tag (16)``.

    ``seq`` and ``channel_id`` are authenticated (not sent), so the receiver
    detects records that are replayed, reordered, dropped or moved between
    channels: it must open them with the sequence number it expects next.
    """
    aes = _aes(key)
    aad = _record_aad(seq, channel_id)
    nonce = secrets.token_bytes(_RECORD_NONCE_SIZE)
    return nonce + aes.encrypt(nonce, plaintext, aad)


def open_record(key: bytes, expected_seq: int, channel_id: bytes, sealed: bytes) -> bytes:
    """Authenticate and decrypt a record produced by :func:`seal_record`.

    Raises :class:`MalformedCiphertext` if too short and :class:`DecryptionFailed`
    for a wrong key, tampering, other channel or a sequence number mismatch.
    """
    aes = _aes(key)
    aad = _record_aad(expected_seq, channel_id)
    if len(sealed) < _RECORD_NONCE_SIZE + TAG_SIZE:
        raise MalformedCiphertext("sealed record is too short")
    try:
        return aes.decrypt(sealed[:_RECORD_NONCE_SIZE], sealed[_RECORD_NONCE_SIZE:], aad)
    except InvalidTag:
        raise DecryptionFailed(
            f"record {expected_seq} failed authentication (wrong key, tampered, replayed or reordered)"
        ) from None

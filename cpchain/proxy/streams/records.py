"""Sealing and opening stream records, and the subscriber's integrity checks.

Owns the record format on top of cpchain.crypto.aead's record sealing (AES-256-GCM under
the stream key; the sequence number and the channel id are authenticated): the sequence
number travels in clear in front of the sealed bytes so the proxy can keep the order of
a channel without reading its contents. A subscriber opens records strictly in sequence:
a record that does not authenticate is tampered with, a lower sequence number than
expected is a replay (or a duplicate), a higher one means records were dropped or
reordered. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpchain.crypto.aead import open_record, seal_record
from cpchain.crypto.errors import DecryptionFailed, MalformedCiphertext
from cpchain.proxy.streams.wire import SEQ, WireError, record_seq


class StreamIntegrityError(Exception):
    """A record a subscriber must not accept; `position` is where it was found."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class TamperedRecord(StreamIntegrityError):
    """The record does not authenticate under the stream key, its sequence number and channel."""


class ReplayedRecord(StreamIntegrityError):
    """A record already delivered (sequence number or position lower than expected)."""


class MissingRecords(StreamIntegrityError):
    """The sequence number skips ahead: records were dropped or reordered."""


def seal(key: bytes, channel_id: str, seq: int, plaintext: bytes) -> bytes:
    """One record as published: seq (u64) || AES-256-GCM sealed plaintext bound to seq and channel."""
    return SEQ.pack(seq) + seal_record(key, seq, plaintext, channel_id.encode())


@dataclass
class Cursor:
    """Where a subscriber stands: the next record's position and sequence number.

    Positions (cpchain.proxy.streams.wire) increase along a channel but are not dense.
    `seq` None accepts the first record's sequence number as the start (a live subscription
    that does not know what came before); saving the cursor and resuming from it delivers
    every later record exactly once.
    """

    position: int = 0
    seq: int | None = 0

    def to_dict(self) -> dict[str, int | None]:
        return {"position": self.position, "seq": self.seq}


@dataclass(frozen=True)
class Record:
    position: int
    seq: int
    data: bytes


class RecordOpener:
    """Opens a channel's records in order, advancing `cursor`; StreamIntegrityError otherwise.

    The cursor only moves past records that were accepted, so after an error it still names
    the next record the subscriber is owed.
    """

    def __init__(self, key: bytes, channel_id: str, cursor: Cursor) -> None:
        self.key = key
        self.channel = channel_id.encode()
        self.cursor = cursor

    def open(self, at: int, raw: bytes) -> Record:
        """The record found at position `at`, opened and checked."""
        if at < self.cursor.position:
            raise ReplayedRecord(f"position {at} was already delivered (next is {self.cursor.position})", at)
        try:
            seq = record_seq(raw)
            data = open_record(self.key, seq, self.channel, raw[SEQ.size :])
        except (WireError, DecryptionFailed, MalformedCiphertext):
            raise TamperedRecord(f"record at position {at} failed authentication (tampered or wrong key)",
                                 at) from None  # fmt: skip
        expected = self.cursor.seq
        if expected is not None and seq < expected:
            raise ReplayedRecord(f"record {seq} at position {at} was already delivered (expected {expected})", at)
        if expected is not None and seq > expected:
            raise MissingRecords(f"record {seq} at position {at} follows record {expected - 1}: "
                                 f"{seq - expected} record(s) missing or reordered", at)  # fmt: skip
        self.cursor.position = at + 1
        self.cursor.seq = seq + 1
        return Record(at, seq, data)

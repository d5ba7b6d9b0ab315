"""StreamDecryptor: a ciphertext pushed in pieces of any size decrypts exactly as the file
would, failures wait for finish() (the caller's own checks come first), and an abandoned
decryptor never pretends to be complete."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpchain.crypto import (
    DecryptionFailed,
    InvalidArgument,
    MalformedCiphertext,
    StreamDecryptor,
    TruncatedCiphertext,
    aead,
    decrypting_to,
    encrypt_stream,
)
from cpchain.crypto.aead import HEADER_SIZE, TAG_SIZE

SEG = 64
KEY = bytes(range(32))


def encrypt(data: bytes, seg: int = SEG) -> bytes:
    out = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(data), out, segment_size=seg)
    return out.getvalue()


def pushed(blob: bytes, cuts: list[int], key: bytes = KEY) -> tuple[StreamDecryptor, io.BytesIO]:
    """Feed `blob` cut at the given offsets; return the decryptor (not finished) and its output."""
    out = io.BytesIO()
    decryptor = StreamDecryptor(key, out)
    start = 0
    for cut in [*sorted(set(cuts)), len(blob)]:
        decryptor.write(memoryview(blob)[start:cut])
        start = cut
    return decryptor, out


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5 * SEG + 3), cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12))
def test_any_cut_decrypts_to_the_plaintext(data: bytes, cuts: list[int]) -> None:
    blob = encrypt(data)
    decryptor, out = pushed(blob, [c for c in cuts if c <= len(blob)])
    decryptor.finish()
    assert out.getvalue() == data


def test_a_whole_number_of_segments_keeps_the_last_one_for_finish() -> None:
    data = bytes(range(256)) * (3 * SEG // 256 + 1)
    data = data[: 3 * SEG]
    blob = encrypt(data)
    seen: list[int] = []
    out = io.BytesIO()
    decryptor = StreamDecryptor(KEY, out, progress=seen.append)
    decryptor.write(blob)
    assert out.getvalue() == data[: 2 * SEG]  # the third may be the final one: held back
    decryptor.finish()
    assert out.getvalue() == data and seen[-1] == len(blob)


@pytest.mark.parametrize("batch", [1 << 20, SEG, 2 * SEG], ids=["one-batch", "batch-of-1", "batch-of-2"])
@pytest.mark.parametrize("cuts", [[HEADER_SIZE + 10, 200], [], [HEADER_SIZE + 2 * (SEG + TAG_SIZE) + 1]])
def test_a_tampered_segment_is_reported_by_finish_and_stops_the_output(
    cuts: list[int], batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the segments come one per piece or several in one (opened in batches of any
    size), the authentic ones before the tampered one are written, and nothing after it."""
    monkeypatch.setattr(aead, "PLAIN_BATCH", batch)
    blob = bytearray(encrypt(b"x" * (6 * SEG)))
    blob[HEADER_SIZE + 2 * (SEG + TAG_SIZE) + 5] ^= 1  # inside the third segment
    decryptor, out = pushed(bytes(blob), cuts)
    assert decryptor.failed
    assert out.getvalue() == b"x" * (2 * SEG)  # only the authentic first two segments
    with pytest.raises(DecryptionFailed, match="segment 2 failed authentication"):
        decryptor.finish()


@pytest.mark.parametrize("batch", [SEG, 3 * SEG])
def test_pieces_larger_than_a_batch_decrypt_in_order(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aead, "PLAIN_BATCH", batch)
    data = bytes(range(256)) * 5  # 20 segments
    seen: list[int] = []
    out = io.BytesIO()
    decryptor = StreamDecryptor(KEY, out, progress=seen.append)
    blob = encrypt(data)
    decryptor.write(blob)
    decryptor.finish()
    assert out.getvalue() == data and seen == sorted(seen) and seen[-1] == len(blob)


@pytest.mark.parametrize(
    ("cut", "error", "message"),
    [
        (HEADER_SIZE - 1, MalformedCiphertext, "too short for a header"),
        (HEADER_SIZE, TruncatedCiphertext, "header but no segments"),
        (HEADER_SIZE + SEG + TAG_SIZE, TruncatedCiphertext, "without a final segment"),
    ],
)
def test_truncated_input_fails_at_finish(cut: int, error: type[Exception], message: str) -> None:
    decryptor, _ = pushed(encrypt(b"y" * (2 * SEG + 1))[:cut], [])
    with pytest.raises(error, match=message):
        decryptor.finish()


def test_data_after_the_final_segment_is_refused() -> None:
    blob = encrypt(b"z" * SEG)  # a full final segment, then more
    decryptor, _ = pushed(blob + blob[HEADER_SIZE:], [])
    with pytest.raises(DecryptionFailed, match="after the final segment"):
        decryptor.finish()


def test_the_wrong_key_fails() -> None:
    decryptor, out = pushed(encrypt(b"q" * 300), [], key=bytes(32))
    with pytest.raises(DecryptionFailed):
        decryptor.finish()
    assert out.getvalue() == b""


def test_an_abandoned_decryptor_restarts_from_the_whole_ciphertext(tmp_path: Path) -> None:
    data = b"0123456789" * 50
    blob = encrypt(data)
    with decrypting_to(KEY, tmp_path / "plain") as decryptor:
        decryptor.write(blob[:150])
        decryptor.abandon()
        decryptor.write(blob[150:])  # ignored
        with pytest.raises(InvalidArgument, match="abandoned"):
            decryptor.finish()
        decryptor.restart()
        decryptor.write_from(io.BytesIO(blob))
    assert (tmp_path / "plain").read_bytes() == data


def test_decrypting_to_leaves_nothing_when_the_ciphertext_fails(tmp_path: Path) -> None:
    blob = bytearray(encrypt(b"w" * 500))
    blob[-1] ^= 1
    with pytest.raises(DecryptionFailed), decrypting_to(KEY, tmp_path / "plain") as decryptor:
        decryptor.write(bytes(blob))
    assert list(tmp_path.iterdir()) == []


def test_restart_needs_a_seekable_destination() -> None:
    class Sink:
        def write(self, data: bytes) -> int:
            return len(data)

    with pytest.raises(InvalidArgument, match="seekable"):
        StreamDecryptor(KEY, Sink()).restart()

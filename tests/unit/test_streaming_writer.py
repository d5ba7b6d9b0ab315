"""StreamingWriter keeps every byte whatever the window, and can start over (a decryptor's restart)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpchain.fsutil import StreamingWriter


@pytest.mark.parametrize("window", [1, 4096, 1 << 20])
def test_every_byte_lands_whatever_the_window(tmp_path: Path, window: int) -> None:
    data = os.urandom(300_001)
    path = tmp_path / "out.bin"
    with path.open("wb") as fh:
        out = StreamingWriter(fh, window=window)
        for start in range(0, len(data), 7_777):
            assert out.write(memoryview(data)[start : start + 7_777]) == len(data[start : start + 7_777])
        assert out.tell() == len(data)
        out.sync()
    assert path.read_bytes() == data


def test_appending_starts_at_the_end_and_restarting_truncates(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"earlier")
    with path.open("ab") as fh:
        out = StreamingWriter(fh, window=2)
        assert out.tell() == 7
        out.write(b" attempt")
    assert path.read_bytes() == b"earlier attempt"
    with path.open("r+b") as fh:
        out = StreamingWriter(fh, window=2)
        out.write(b"abc")
        assert out.seek(0) == 0
        out.truncate()
        out.write(b"xy")
        out.sync()
    assert path.read_bytes() == b"xy"

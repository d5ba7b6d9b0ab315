"""Small file-system helpers shared by components: atomic replacement, durable renames and
writing large files without filling the page cache.

Owns nothing but these primitives; callers decide paths and contents.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast


def fsync_dir(directory: Path) -> None:
    """Persist a rename or new entry in `directory`; best effort where unsupported."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` so readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


_SYNC_FILE_RANGE_WAIT_BEFORE = 1
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_AFTER = 4


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux") or not hasattr(os, "posix_fadvise"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


_sync_file_range = _load_sync_file_range()


class StreamingWriter:
    """Writes a large file once, front to back, without letting it fill the page cache.

    A downloaded or decrypted file of gigabytes is written once and not read again soon;
    left to the page cache it takes that much fresh memory (slow to fault in on a VM,
    evicting what other programs had cached) and the final fsync then waits for all of it.
    Here each window is sent to the disk as soon as it is complete, and the one before it,
    by then written, is dropped from the cache: the disk works alongside the writer and
    memory stays at two windows. A plain write where Linux's sync_file_range is missing.
    """

    def __init__(self, fh: BinaryIO, window: int = 8 << 20) -> None:
        self._fh = fh
        self._window = window
        self._enabled = _sync_file_range is not None
        self._position = self._window_start = fh.tell()
        self._previous: tuple[int, int] | None = None

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        n = self._fh.write(data)
        n = len(data) if n is None else n
        self._position += n
        if self._enabled and self._position - self._window_start >= self._window:
            self._next_window()
        return n

    def _next_window(self) -> None:
        assert _sync_file_range is not None
        self._fh.flush()
        fd = self._fh.fileno()
        start, length = self._window_start, self._position - self._window_start
        _sync_file_range(fd, start, length, _SYNC_FILE_RANGE_WRITE)
        if self._previous is not None:
            before, size = self._previous
            _sync_file_range(
                fd, before, size, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER
            )
            os.posix_fadvise(fd, before, size, os.POSIX_FADV_DONTNEED)
        self._previous = (start, length)
        self._window_start = self._position

    def sync(self) -> None:
        """Make the file durable (fsync) and drop what is left of it from the cache."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._enabled:
            os.posix_fadvise(self._fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = self._window_start = self._fh.seek(offset, whence)
        self._previous = None
        return self._position

    def truncate(self, size: int | None = None) -> int:
        return self._fh.truncate(size)

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

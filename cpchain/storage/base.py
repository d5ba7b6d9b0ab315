"""The storage interface: locators, the fixed plugin registry, and streamed transfers.

Owns the shape every plugin shares; each backend lives in its own module. A locator is
plain JSON data (`{"type": ..., **params}`) validated against its plugin's declared fields
before any use, so a remote party can never name code to import or a field to smuggle.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, cast

from cpchain.crypto.hashing import HashingWriter
from cpchain.fsutil import StreamingWriter
from cpchain.readahead import ReadInto, read_ahead

Progress = Callable[[int], None]
CHUNK = 1024 * 1024
MAX_LOCATOR_BYTES = 4096


class StorageError(Exception):
    """Base of every storage failure; the message is one line for a person."""


class LocatorError(StorageError):
    """A locator that is malformed, of an unknown type, or with bad fields."""


class PolicyRefused(StorageError):
    """The operator's fetch policy forbids this locator (type, host, path or size)."""


class TransferTooLarge(StorageError):
    """The data exceeds the size limit of this transfer."""


class ObjectMissing(StorageError):
    """The locator names nothing that exists at its backend."""


@dataclass(frozen=True)
class Locator:
    """Where an encrypted file lives: a plugin type and that plugin's fields."""

    type: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **self.params}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Locator:
        """Parse and validate against the registry; LocatorError on anything unexpected."""
        if len(text) > MAX_LOCATOR_BYTES:
            raise LocatorError(f"locator longer than {MAX_LOCATOR_BYTES} bytes")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise LocatorError("locator is not valid JSON") from None
        if not isinstance(data, dict):
            raise LocatorError("locator must be a JSON object")
        kind = data.pop("type", None)
        if not isinstance(kind, str):
            raise LocatorError('locator needs a "type"')
        return validate(cls(kind, data))


class Plugin(Protocol):
    """One storage backend. Both directions stream in constant memory."""

    type_name: ClassVar[str]
    fields: ClassVar[dict[str, type]]

    def upload(self, source: Path, progress: Progress | None = None) -> Locator: ...

    def download(
        self, locator: Locator, dest: Path, progress: Progress | None = None, max_bytes: int | None = None
    ) -> str:
        """Fetch into `dest` atomically; return the hex SHA-256 of the bytes written."""
        ...


REGISTRY: dict[str, type[Plugin]] = {}


def register(plugin: type[Plugin]) -> type[Plugin]:
    """Class decorator: add a plugin to the fixed registry (done at import, never by request)."""
    REGISTRY[plugin.type_name] = plugin
    return plugin


def validate(locator: Locator) -> Locator:
    """Check the type is registered and the fields are exactly the plugin's, with their types."""
    plugin = REGISTRY.get(locator.type)
    if plugin is None:
        raise LocatorError(f"unknown storage type {locator.type!r}; known: {', '.join(sorted(REGISTRY))}")
    expected = plugin.fields
    extra = set(locator.params) - set(expected)
    missing = set(expected) - set(locator.params)
    if extra or missing:
        problem = f"unexpected {sorted(extra)}" if extra else f"missing {sorted(missing)}"
        raise LocatorError(f"{locator.type} locator: {problem}")
    for name, kind in expected.items():
        value = locator.params[name]
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise LocatorError(f"{locator.type} locator: field {name!r} must be {kind.__name__}")
    return locator


def copy_stream(src: BinaryIO, dst: BinaryIO, progress: Progress | None = None, max_bytes: int | None = None) -> int:
    """Copy in fixed-size chunks; TransferTooLarge as soon as `max_bytes` is exceeded.

    The next chunk is read (from the network or a cold disk) while this one is written
    and hashed."""
    done = 0
    with contextlib.closing(read_ahead(_reader(src), CHUNK)) as chunks:
        for chunk in chunks:
            done += len(chunk)
            if max_bytes is not None and done > max_bytes:
                raise TransferTooLarge(f"data exceeds the limit of {max_bytes} bytes")
            dst.write(chunk)
            if progress is not None:
                progress(done)
    return done


def _reader(src: BinaryIO) -> ReadInto:
    """`src.readinto`, or the same made of `src.read` for streams without it (botocore's)."""
    readinto = getattr(src, "readinto", None)
    if callable(readinto):
        return cast(ReadInto, readinto)

    def fill(buffer: memoryview) -> int:
        data = src.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    return fill


def write_atomically(dest: Path, fill: Callable[[BinaryIO], object]) -> str:
    """Run `fill` on a temporary file beside `dest` and rename it only if `fill` succeeds,
    so a failed or interrupted transfer never leaves a partial file under the final name.

    Returns the hex SHA-256 of the bytes `fill` wrote, hashed on the way to the disk so a
    caller verifying a download (the proxy's fetch) needs no second pass over the file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            disk = StreamingWriter(fh)
            out = HashingWriter(disk)
            fill(cast(BinaryIO, out))
            disk.sync()
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out.hexdigest()

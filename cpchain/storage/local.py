"""The `local` plugin: a file on this host, for single-host setups and tests.

Uploads copy the encrypted file into the plugin's root, named by its SHA-256 (uploading the
same ciphertext twice stores it once); downloads read
only from inside the configured roots (a locator cannot climb out with `..` or a link).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from cpchain.storage.base import (
    CHUNK,
    Locator,
    ObjectMissing,
    PolicyRefused,
    Progress,
    copy_stream,
    register,
    validate,
    write_atomically,
)


@register
class LocalStorage:
    type_name: ClassVar[str] = "local"
    fields: ClassVar[dict[str, type]] = {"path": str}

    def __init__(self, root: Path, readable_roots: Iterable[Path] = ()) -> None:
        self.root = root.resolve()
        self.readable_roots = [self.root, *(r.resolve() for r in readable_roots)]

    def upload(self, source: Path, progress: Progress | None = None) -> Locator:
        digest = hashlib.sha256()
        with source.open("rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
        name = digest.hexdigest()
        target = self.root / f"{name}.bin"
        if not target.exists():
            with source.open("rb") as src:
                write_atomically(target, lambda dst: copy_stream(src, dst, progress))
        elif progress is not None:
            progress(source.stat().st_size)
        return Locator(self.type_name, {"path": str(target)})

    def resolve(self, locator: Locator) -> Path:
        """The file a locator names, refused unless it lies inside a readable root."""
        validate(locator)
        path = Path(str(locator.params["path"]))
        if not path.is_absolute():
            raise PolicyRefused("local locator path must be absolute")
        real = path.resolve()
        if not any(real.is_relative_to(root) for root in self.readable_roots):
            raise PolicyRefused(f"local path {path} is outside the allowed directories")
        if not real.is_file():
            raise ObjectMissing(f"no file at {path}")
        return real

    def download(
        self, locator: Locator, dest: Path, progress: Progress | None = None, max_bytes: int | None = None
    ) -> str:
        source = self.resolve(locator)
        with source.open("rb") as src:
            return write_atomically(dest, lambda dst: copy_stream(src, dst, progress, max_bytes))

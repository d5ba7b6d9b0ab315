"""Shared test helpers: random files, the round trip every route must pass, and a relay that
cuts connections."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cpchain.crypto import sha256_file
from cpchain.storage import REGISTRY, Locator
from cpchain.storage.base import Plugin
from cpchain.storage.devservers import write_random_file as make_file

MIB = 1 << 20


def leftovers(directory: Path, name: str) -> list[str]:
    """Files in `directory` that are `name` or a temporary file of a download to it."""
    return sorted(p.name for p in directory.iterdir() if p.name == name or p.name.startswith(f".{name}."))


@dataclass
class Route:
    """An uploading plugin, the plugin that fetches, and how the locator travels between them."""

    uploader: Plugin
    fetcher: Plugin
    hand_over: Callable[[Locator], Locator] = lambda locator: locator


def round_trip(route: Route, tmp_path: Path, size: int) -> tuple[float, float]:
    """Upload a random file of `size` bytes and fetch it back; check every byte, the SHA-256 the
    download returns, the progress reports and the locator's JSON. Returns the upload and download seconds."""
    source = tmp_path / "cipher.bin"
    expected = make_file(source, size)
    uploaded: list[int] = []
    started = time.perf_counter()
    locator = route.uploader.upload(source, progress=uploaded.append)
    upload_seconds = time.perf_counter() - started
    assert uploaded == sorted(uploaded) and (uploaded[-1] if uploaded else 0) == size
    handed = Locator.from_json(route.hand_over(locator).to_json())  # what a proxy receives
    assert handed.type == locator.type and set(handed.params) == set(REGISTRY[handed.type].fields)
    downloaded: list[int] = []
    out = tmp_path / "out"
    started = time.perf_counter()
    digest = route.fetcher.download(handed, out / "copy.bin", progress=downloaded.append)
    download_seconds = time.perf_counter() - started
    assert sha256_file(out / "copy.bin") == expected == digest  # hashed on the way to the disk
    assert (downloaded[-1] if downloaded else 0) == size
    assert leftovers(out, "copy.bin") == ["copy.bin"]
    return upload_seconds, download_seconds


class CuttingRelay:
    """A TCP relay to `target` that closes each connection after `cut_after` reply bytes,
    as a server that dies or a network that drops mid-transfer would."""

    def __init__(self, target: tuple[str, int], cut_after: int) -> None:
        self.target = target
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cuts = 0
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._spawn(self._pump_requests, client, upstream)
            self._spawn(self._pump_replies, upstream, client)

    @staticmethod
    def _pump_requests(client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_RDWR)  # the client hung up: end the reply pump too

    def _pump_replies(self, upstream: socket.socket, client: socket.socket) -> None:
        sent = 0
        try:
            while sent < self.cut_after and (data := upstream.recv(65536)):
                part = data[: self.cut_after - sent]
                client.sendall(part)
                sent += len(part)
        except OSError:
            pass
        if sent >= self.cut_after:
            self.cuts += 1
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close does not)
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> CuttingRelay:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

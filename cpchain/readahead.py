"""Reading ahead in a background thread, so waiting for the next chunk overlaps the work on this one.

Owns only the hand-over between one producer thread and its consumer; callers say what to
read (a socket, a file) and what to do with each chunk (hash, decrypt, write). Every step
of such a transfer releases the GIL (socket and file I/O, hashlib on large buffers), so
on two cores a download that hashes and decrypts runs nearly as fast as one that does not.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator

ReadInto = Callable[[memoryview], int]

_END = object()


def read_ahead(read_into: ReadInto, chunk: int, depth: int = 4) -> Generator[memoryview, None, None]:
    """Yield the chunks `read_into` fills, reading up to `depth` chunks ahead in a thread.

    `read_into(buffer)` fills a buffer and returns the byte count, 0 at the end. A yielded
    view is valid until the next one is asked for (the buffers are reused). An exception
    raised by `read_into` is raised here, after the chunks read before it. Closing the
    generator early (or an exception in the consumer) stops the thread at its next read.
    """
    buffers = [bytearray(chunk) for _ in range(depth + 2)]  # filling + queued + the consumer's
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        turn = 0
        try:
            while True:
                view = memoryview(buffers[turn % len(buffers)])
                n = read_into(view)
                if not n:
                    put(_END)
                    return
                if not put(view[:n]):
                    return
                turn += 1
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, memoryview)
            yield item
    finally:
        # Not joined: it may be blocked in a read that only ends when the caller closes the
        # source, after this; it then sees `stop` and exits without touching anything.
        stop.set()

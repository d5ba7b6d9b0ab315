"""Running the wallet core off the GUI thread, with its results and errors back on it.

Owns the only thread pool the pages use: `Worker.run(fn, ..., done=, error=)` calls `fn` on
a pool thread and then `done(result)` or `error(exc)` on the GUI thread (a queued Qt
signal). Errors without their own handler go to `failed` as one line: a WalletError's own
message, or "unexpected error: ..." (logged with its traceback) for anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from PyQt5.QtCore import QObject, pyqtSignal, pyqtSlot

from cpchain.wallet.errors import WalletError

__all__ = ["Worker", "describe"]

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """One line for the window: the wallet's own message, else the exception's type and text."""
    if isinstance(exc, WalletError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected error: {type(exc).__name__}" + (f": {text}" if text else "")


class _Call:
    __slots__ = ("done", "error", "what")

    def __init__(self, what: str, done: Callable[[Any], None] | None,
                 error: Callable[[BaseException], None] | None) -> None:  # fmt: skip
        self.what = what
        self.done = done
        self.error = error


class Worker(QObject):
    """Core calls on a pool of threads; callbacks on the thread that owns the Worker (the GUI's)."""

    failed = pyqtSignal(str)
    """An error no caller handled, as one line."""
    busy = pyqtSignal(int)
    """How many calls are running or queued (after each change)."""
    _finished = pyqtSignal(object, object, bool)

    def __init__(self, parent: QObject | None = None, *, threads: int = 4) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wallet-core")
        self._finished.connect(self._deliver)  # emitted from pool threads: queued to the GUI thread
        self.pending = 0
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None] | None = None,
            error: Callable[[BaseException], None] | None = None, **kwargs: Any) -> None:  # fmt: skip
        """Call `fn(*args, **kwargs)` on a pool thread; `done(result)` or `error(exc)` follow on the GUI thread."""
        if self._closed:
            return
        call = _Call(getattr(fn, "__qualname__", repr(fn)), done, error)
        self.pending += 1
        self.busy.emit(self.pending)

        def task() -> None:
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:  # every failure goes back to the window
                if not isinstance(exc, WalletError):
                    log.exception("%s failed", call.what)
                self._emit(call, exc, False)
            else:
                self._emit(call, value, True)

        self._pool.submit(task)

    def _emit(self, call: _Call, value: Any, ok: bool) -> None:
        with suppress(RuntimeError):  # the Worker was deleted while the call ran (window closed)
            self._finished.emit(call, value, ok)

    @pyqtSlot(object, object, bool)
    def _deliver(self, call: _Call, value: Any, ok: bool) -> None:
        self.pending -= 1
        self.busy.emit(self.pending)
        try:
            if ok:
                if call.done is not None:
                    call.done(value)
            elif call.error is not None:
                call.error(value)
            else:
                self.failed.emit(describe(value))
        except Exception as exc:
            log.exception("handling the result of %s failed", call.what)
            self.failed.emit(describe(exc))

    def shutdown(self, wait: bool = True) -> None:
        """No new calls; with `wait`, return once the running ones have finished."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

"""Transfer progress from core threads to the GUI thread, at a rate the window can draw.

The core reports progress from whichever thread does the work (a Worker pool thread, the
automation thread) once per buffer read: thousands of calls for a large file. `throttled`
passes on the first and last report of each phase and at most one every `interval`
seconds in between; `ProgressRelay` turns those calls into a queued Qt signal, so the
slots run on the GUI thread. Must not hold widgets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress

from PyQt5.QtCore import QObject, pyqtSignal

__all__ = ["ProgressRelay", "throttled"]

OrderProgress = Callable[[int, str, int, int], None]
"""(order id, phase, bytes done, bytes in all)."""


def throttled(report: OrderProgress, interval: float = 0.05) -> OrderProgress:
    """`report`, called at most every `interval` s per order (a phase's first and last calls always)."""
    last: dict[int, tuple[str, float]] = {}
    guard = threading.Lock()

    def call(order_id: int, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        with guard:
            previous = last.get(order_id)
            if previous is not None and previous[0] == phase and done < total and now - previous[1] < interval:
                return
            last[order_id] = (phase, now)
        report(order_id, phase, done, total)

    return call


class ProgressRelay(QObject):
    """`callback(order_id)` for the core; `progress` fires on the thread owning the relay."""

    progress = pyqtSignal(int, str, int, int)

    def __init__(self, parent: QObject | None = None, *, interval: float = 0.05) -> None:
        super().__init__(parent)
        self._report = throttled(self._emit, interval)

    def _emit(self, order_id: int, phase: str, done: int, total: int) -> None:
        with suppress(RuntimeError):  # the relay was deleted while a transfer ran (window closed)
            self.progress.emit(order_id, phase, done, total)

    def callback(self, order_id: int) -> Callable[[str, int, int], None]:
        """A cpchain.wallet.context.Progress for one order's receive."""
        return lambda phase, done, total: self._report(order_id, phase, done, total)

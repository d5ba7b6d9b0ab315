"""The wallet's pages; each takes the main window (session, worker, banner, navigation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PyQt5.QtWidgets import QWidget

if TYPE_CHECKING:
    from cpchain.wallet.qt.window import MainWindow

__all__ = ["Page"]


class Page(QWidget):
    """A page of the main window. `activate()` runs each time it is shown."""

    title = ""
    needs_wallet = True

    def __init__(self, ui: MainWindow) -> None:
        super().__init__()
        self.ui = ui
        self.session = ui.session
        self.worker = ui.worker

    def activate(self) -> None:
        """Called when the page is shown (and when the session changes while it is shown)."""

    def run(self, fn: Callable[..., Any], *args: Any, done: Callable[[Any], None] | None = None,
            error: Callable[[BaseException], None] | None = None, **kwargs: Any) -> None:  # fmt: skip
        """A core call off the GUI thread (unhandled errors go to the window's banner)."""
        self.worker.run(fn, *args, done=done, error=error, **kwargs)

"""`bin/wallet`: start the desktop wallet.

Start-up: the Qt application; a qasync event loop on it made the asyncio loop; Twisted's
asyncio reactor installed on that loop (so Twisted, kademlia and asyncio code all run on
the Qt loop); the window built once the reactor runs; `reactor.run()` until the last window
closes or SIGINT/SIGTERM arrives. (Driving the loop with run_until_complete instead leaves
Twisted's resolver waiting.) Blocking core calls run on the window's Worker threads.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

from cpchain.config import Config, ConfigError, load_config
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.qt.session import Session
from cpchain.wallet.qt.window import MainWindow
from cpchain.wallet.qt.worker import Worker

__all__ = ["build_window", "main"]

log = logging.getLogger("cpchain.wallet.qt")


def build_window(config: Config, *, store: AccountStore | None = None, automate: bool = True) -> MainWindow:
    """The main window on a new Session and Worker (what `main` shows, and what tests build)."""
    worker = Worker()
    session = Session(config, store, automate=automate)
    window = MainWindow(session, worker)
    worker.setParent(window)
    session.setParent(window)
    return window


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wallet", description="The PDash desktop wallet.")
    parser.add_argument("--config", type=Path, help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain)")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS", help="close the window after SECONDS")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    started = time.monotonic()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        sys.exit(f"wallet: {exc}")

    import qasync

    app = QApplication(sys.argv[:1])
    app.setApplicationName("PDash wallet")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(eventloop=loop)  # type: ignore[no-untyped-call]
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    windows: list[MainWindow] = []

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    def start() -> None:
        window = build_window(config)
        windows.append(window)
        window.show()
        log.info("window shown after %.2f s", time.monotonic() - started)
        if args.quit_after is not None:
            QTimer.singleShot(int(args.quit_after * 1000), window.close_window)

    app.setQuitOnLastWindowClosed(False)
    app.lastWindowClosed.connect(stop)
    reactor.callWhenRunning(start)
    reactor.run()
    for window in windows:
        window.session.shutdown(timeout=10)
        window.worker.shutdown(wait=True)
    log.info("wallet closed")

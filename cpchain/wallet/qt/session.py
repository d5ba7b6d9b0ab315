"""The wallet the window works on: the account store, and the unlocked wallet if there is one.

Owns unlocking (open_wallet, on a worker thread: the keystore KDF takes a while), locking,
the core objects built on an unlocked wallet (Buyer, Seller, Funds) and the background
automation that confirms, delivers and receives while the wallet is unlocked. Tells the
window about changes through `changed`. Must not hold widgets.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from PyQt5.QtCore import QObject, pyqtSignal

from cpchain.config import Config
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.automation import Automation, StepReport
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext, open_wallet
from cpchain.wallet.errors import WalletError
from cpchain.wallet.funds import Funds
from cpchain.wallet.qt.progress import throttled
from cpchain.wallet.seller import Seller

__all__ = ["Opened", "Session"]

log = logging.getLogger(__name__)


@dataclass
class Opened:
    """An unlocked wallet and the core objects that act for it."""

    ctx: WalletContext
    buyer: Buyer
    seller: Seller
    funds: Funds

    @property
    def address(self) -> str:
        return self.ctx.address


class Session(QObject):
    """The account store and at most one unlocked wallet."""

    changed = pyqtSignal()
    """Unlocked, locked, or the accounts changed."""
    automation_report = pyqtSignal(object)
    """A StepReport of the background automation, on the GUI thread."""
    receive_progress = pyqtSignal(int, str, int, int)
    """(order id, phase, bytes done, bytes in all) of a delivery the automation receives."""

    def __init__(self, config: Config, store: AccountStore | None = None, *, automate: bool = True,
                 automation_interval: float = 2.0, proxy_timeout: float | None = None,
                 parent: QObject | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.config = config
        self.store = store or AccountStore(config.path("account.keystore_dir"))
        self.automate = automate
        self.automation_interval = automation_interval
        self.proxy_timeout = proxy_timeout
        self.wallet: Opened | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ worker thread

    def open(self, password: str, address: str | None = None) -> Opened:
        """Unlock and connect (blocking: call it through the Worker, then `attach` the result)."""
        ctx = open_wallet(self.config, password, address, accounts=self.store, proxy_timeout=self.proxy_timeout)
        try:
            return Opened(ctx, Buyer(ctx), Seller(ctx), Funds(ctx))
        except BaseException:
            ctx.close()
            raise

    # ------------------------------------------------------------------ GUI thread

    def attach(self, opened: Opened) -> None:
        """Make `opened` the session's wallet (locking any other first) and start its automation."""
        self.lock(notify=False)
        self.wallet = opened
        if self.automate:
            stop = threading.Event()
            auto = Automation(opened.ctx, progress=throttled(self.receive_progress.emit))

            def run() -> None:
                try:
                    auto.run(stop, self.automation_interval, self._report)
                finally:
                    _close(opened)

            self._stop = stop
            self._thread = threading.Thread(target=run, name="wallet-automation", daemon=True)
            self._thread.start()
        self.changed.emit()

    def _report(self, report: StepReport) -> None:
        if report.done or report.failed:
            self.automation_report.emit(report)

    def lock(self, *, notify: bool = True) -> None:
        """Forget the unlocked wallet; its automation stops after its current step and closes
        the wallet's database (the GUI thread never waits for it)."""
        if self._stop is not None:
            self._stop.set()
        elif self.wallet is not None:
            _close(self.wallet)
        self._stop = None
        self._thread = None
        self.wallet = None
        if notify:
            self.changed.emit()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Lock, and wait (up to `timeout` s) for the automation to finish its step."""
        thread = self._thread
        self.lock(notify=False)
        if thread is not None:
            thread.join(timeout)

    def require(self) -> Opened:
        if self.wallet is None:
            raise WalletError("the wallet is locked: unlock an account first")
        return self.wallet


def _close(opened: Opened) -> None:
    try:
        opened.ctx.close()
    except Exception as exc:
        log.warning("closing the wallet: %s", exc)

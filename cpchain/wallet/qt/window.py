"""The main window: header (account, lock, activity), message banner, navigation and pages.

Owns which pages are reachable (only the account page while the wallet is locked), moving
between them, and turning the automation's reports into notices. Pages do the rest.
"""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from cpchain.wallet.automation import StepReport
from cpchain.wallet.qt.notifications import OrderFeed
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.session import Session
from cpchain.wallet.qt.widgets import Banner
from cpchain.wallet.qt.worker import Worker
from cpchain.wallet.rules import Task

__all__ = ["MainWindow"]

TASK_NOTICES = {
    Task.SELLER_CONFIRM: "accepted (deposit paid)",
    Task.DELIVER: "delivered to the proxy",
    Task.RECEIVE: "received, verified and decrypted",
    Task.BUYER_CONFIRM: "delivery confirmed",
    Task.CLAIM_TIMEOUT: "timeout claimed",
    Task.IGNORE: "not accepted (the order does not match the product)",
}


class MainWindow(QMainWindow):
    def __init__(self, session: Session, worker: Worker) -> None:
        super().__init__()
        from cpchain.wallet.qt.pages.accounts import AccountsPage
        from cpchain.wallet.qt.pages.home import HomePage
        from cpchain.wallet.qt.pages.market import MarketPage
        from cpchain.wallet.qt.pages.mydata import MyDataPage
        from cpchain.wallet.qt.pages.orders import OrdersPage
        from cpchain.wallet.qt.pages.product import ProductPage
        from cpchain.wallet.qt.pages.publish import PublishPage
        from cpchain.wallet.qt.pages.purchases import PurchasesPage
        from cpchain.wallet.qt.pages.settings import SettingsPage
        from cpchain.wallet.qt.pages.wallet import WalletPage

        self.session = session
        self.worker = worker
        self.setWindowTitle("PDash wallet")
        self.resize(1100, 760)

        central = QWidget()
        outer = QVBoxLayout(central)
        header = QHBoxLayout()
        self.title_label = QLabel("<b>PDash</b>")
        self.account_label = QLabel()
        self.account_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy_label = QLabel("Working…")
        self.busy_label.hide()
        self.lock_button = QPushButton("Lock")
        self.lock_button.clicked.connect(self.session.lock)
        header.addWidget(self.title_label)
        header.addSpacing(16)
        header.addWidget(self.account_label, 1)
        header.addWidget(self.busy_label)
        header.addWidget(self.lock_button)
        outer.addLayout(header)
        self.banner = Banner()
        outer.addWidget(self.banner)
        self.feed = OrderFeed(self)  # the account's orders, kept live, and notifications
        header.insertWidget(header.indexOf(self.lock_button), self.feed.button)
        outer.addWidget(self.feed.panel)

        body = QHBoxLayout()
        self.nav = QListWidget()
        self.nav.setFixedWidth(170)
        self.stack = QStackedWidget()
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)

        self.accounts = AccountsPage(self)
        self.wallet = WalletPage(self)
        self.market = MarketPage(self)
        self.product = ProductPage(self)
        self.home = HomePage(self)
        self.publish = PublishPage(self)
        self.mydata = MyDataPage(self)
        self.settings = SettingsPage(self)
        self.purchases = PurchasesPage(self)
        self.orders = OrdersPage(self)
        self.pages: list[Page] = [self.accounts, self.home, self.wallet, self.market, self.product, self.publish,
                                  self.mydata, self.purchases, self.orders, self.settings]  # fmt: skip
        self._items: dict[Page, QListWidgetItem] = {}
        for page in self.pages:
            self.stack.addWidget(page)
            if page is not self.product:
                item = QListWidgetItem(page.title)
                self.nav.addItem(item)
                self._items[page] = item
        self.nav.currentItemChanged.connect(self._nav_changed)

        worker.failed.connect(self.banner.error)
        worker.busy.connect(lambda n: self.busy_label.setVisible(n > 0))
        session.changed.connect(self._session_changed)
        session.automation_report.connect(self._automation_report)
        self._session_changed()

    # ------------------------------------------------------------------ navigation

    def current_page(self) -> Page:
        page = self.stack.currentWidget()
        assert isinstance(page, Page)
        return page

    def show_page(self, page: Page) -> None:
        if page.needs_wallet and self.session.wallet is None:
            page = self.accounts
        item = self._items.get(page)
        if item is not None and self.nav.currentItem() is not item:
            self.nav.setCurrentItem(item)  # comes back here through _nav_changed
            return
        self.stack.setCurrentWidget(page)
        page.activate()

    def show_product(self, market_hash: str) -> None:
        self.product.load(market_hash)
        self.stack.setCurrentWidget(self.product)

    def _nav_changed(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        for page, candidate in self._items.items():
            if candidate is item:
                self.stack.setCurrentWidget(page)
                page.activate()

    # ------------------------------------------------------------------ state

    def _session_changed(self) -> None:
        opened = self.session.wallet
        for page, item in self._items.items():
            item.setHidden(page.needs_wallet and opened is None)
        self.lock_button.setVisible(opened is not None)
        if opened is None:
            self.account_label.setText("Locked: unlock, create or import an account")
            self.show_page(self.accounts)
        else:
            self.account_label.setText(f"Account {opened.address}")
            if self.current_page() is self.accounts:
                self.show_page(self.wallet)
            else:
                self.current_page().activate()

    def _automation_report(self, report: StepReport) -> None:
        done = [f"order {order_id}: {TASK_NOTICES.get(task, str(task))}" for order_id, task in report.done]
        failed = [f"order {order_id}: {error}" for order_id, _task, error in report.failed]
        if failed:
            self.banner.error("; ".join(failed))
        elif done:
            notice = "; ".join(done)
            self.banner.info(notice[:1].upper() + notice[1:])
        self.current_page().activate()

    def close_window(self) -> None:
        self.close()

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 - Qt's name
        self.session.shutdown(timeout=5)
        self.worker.shutdown(wait=False)
        super().closeEvent(event)

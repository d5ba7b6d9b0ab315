"""Account page: unlock an account, create one (password rules), back it up, import one.

A backup holds the keystore and the account's encryption key together (both encrypted
with the account's password); without the encryption key, data bought earlier cannot be
opened again, which is why the page offers the backup right after creating an account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cpchain.crypto.keystore import BACKUP_TYPE
from cpchain.wallet.accounts import AccountInfo
from cpchain.wallet.errors import AccountError
from cpchain.wallet.qt.pages import Page
from cpchain.wallet.qt.session import Opened
from cpchain.wallet.qt.widgets import heading

__all__ = ["MIN_PASSWORD", "AccountsPage", "password_problems"]

MIN_PASSWORD = 10


def password_problems(password: str, repeat: str) -> list[str]:
    """What a new password still lacks (empty when it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"at least {MIN_PASSWORD} characters")
    if not any(c.isalpha() for c in password) or not any(not c.isalpha() for c in password):
        problems.append("letters and at least one digit or symbol")
    if password.strip() != password:
        problems.append("no spaces at the start or end")
    if password != repeat:
        problems.append("both entries the same")
    return problems


def _password_field() -> QLineEdit:
    field = QLineEdit()
    field.setEchoMode(QLineEdit.EchoMode.Password)
    return field


def _path_row(field: QLineEdit, browse: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(field, 1)
    layout.addWidget(browse)
    return row


class AccountsPage(Page):
    title = "Account"
    needs_wallet = False

    def __init__(self, ui: Any) -> None:
        super().__init__(ui)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Account"))
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        layout.addWidget(self.state_label)

        # -- unlock
        unlock = QGroupBox("Unlock an account")
        form = QFormLayout(unlock)
        self.account_combo = QComboBox()
        self.unlock_password = _password_field()
        self.unlock_button = QPushButton("Unlock")
        self.unlock_button.clicked.connect(self.unlock)
        self.unlock_password.returnPressed.connect(self.unlock)
        form.addRow("Account", self.account_combo)
        form.addRow("Password", self.unlock_password)
        form.addRow("", self.unlock_button)
        layout.addWidget(unlock)

        # -- create
        create = QGroupBox("Create a new account")
        form = QFormLayout(create)
        self.new_password = _password_field()
        self.new_repeat = _password_field()
        self.rules_label = QLabel()
        self.rules_label.setWordWrap(True)
        self.create_button = QPushButton("Create account")
        self.create_button.clicked.connect(self.create_account)
        self.new_password.textChanged.connect(self._check_rules)
        self.new_repeat.textChanged.connect(self._check_rules)
        form.addRow("Password", self.new_password)
        form.addRow("Repeat", self.new_repeat)
        form.addRow("", self.rules_label)
        form.addRow("", self.create_button)
        layout.addWidget(create)

        # -- backup
        backup = QGroupBox("Back up the selected account: keystore and encryption key in one file")
        form = QFormLayout(backup)
        self.backup_path = QLineEdit()
        self.backup_browse = browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_backup)
        self.backup_button = QPushButton("Save backup")
        self.backup_button.clicked.connect(self.save_backup)
        self.backup_label = QLabel()
        self.backup_label.setWordWrap(True)
        form.addRow("Backup file", _path_row(self.backup_path, browse))
        form.addRow("", self.backup_button)
        form.addRow("", self.backup_label)
        layout.addWidget(backup)

        # -- import
        imported = QGroupBox("Import an account (a wallet backup or an Ethereum keystore file)")
        form = QFormLayout(imported)
        self.import_path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_import)
        self.import_password = _password_field()
        self.import_button = QPushButton("Import")
        self.import_button.clicked.connect(self.import_account)
        form.addRow("File", _path_row(self.import_path, browse))
        form.addRow("Password", self.import_password)
        form.addRow("", self.import_button)
        layout.addWidget(imported)
        layout.addStretch(1)

        self.account_combo.currentIndexChanged.connect(self._account_selected)
        self._check_rules()

    # ------------------------------------------------------------------ showing

    def activate(self) -> None:
        self.run(self._accounts, done=self._show_accounts)

    def _accounts(self) -> tuple[list[AccountInfo], str | None]:
        store = self.session.store
        try:
            current: str | None = store.current().address
        except AccountError:
            current = None
        return store.list(), current

    def _show_accounts(self, found: tuple[list[AccountInfo], str | None]) -> None:
        accounts, current = found
        opened = self.session.wallet
        selected = opened.address if opened is not None else current
        self.account_combo.blockSignals(True)
        self.account_combo.clear()
        for info in accounts:
            self.account_combo.addItem(info.address + ("  (current)" if info.address == current else ""), info.address)
        index = self.account_combo.findData(selected)
        self.account_combo.setCurrentIndex(max(index, 0))
        self.account_combo.blockSignals(False)
        self._account_selected()
        has = bool(accounts)
        self.unlock_button.setEnabled(has)
        self.unlock_password.setEnabled(has)
        self.backup_button.setEnabled(has)
        self.backup_browse.setEnabled(has)
        self.backup_path.setEnabled(has)
        if opened is not None:
            self.state_label.setText(f"Unlocked: {opened.address}. Lock it from the header when you leave.")
        elif has:
            self.state_label.setText(f"{len(accounts)} account(s) in this wallet; unlock one to use it.")
        else:
            self.state_label.setText("No account yet: create one, or import a backup or keystore file.")

    def _account_selected(self) -> None:
        address = self.account_combo.currentData()
        if address and not self.backup_path.isModified():
            self.backup_path.setText(str(Path.home() / f"pdash-backup-{address}.json"))

    def _check_rules(self) -> None:
        problems = password_problems(self.new_password.text(), self.new_repeat.text())
        if problems:
            self.rules_label.setText("The password needs: " + "; ".join(problems) + ".")
        else:
            self.rules_label.setText("Password accepted. It encrypts the keys on this computer; it cannot be reset.")
        self.create_button.setEnabled(not problems)

    # ------------------------------------------------------------------ actions

    def unlock(self) -> None:
        address = self.account_combo.currentData()
        if not address:
            return
        password = self.unlock_password.text()
        self.unlock_button.setEnabled(False)
        self.state_label.setText(f"Unlocking {address}…")

        def opened(result: Opened) -> None:
            self.unlock_password.clear()
            self.unlock_button.setEnabled(True)
            self.session.attach(result)

        def failed(exc: BaseException) -> None:
            self.unlock_button.setEnabled(True)
            self.state_label.setText(f"{address} is still locked.")
            self.ui.banner.error(f"Unlock failed: {exc}")

        self.run(self._switch_and_open, address, password, done=opened, error=failed)

    def _switch_and_open(self, address: str, password: str) -> Opened:
        opened = self.session.open(password, address)
        self.session.store.switch(address)
        return opened

    def create_account(self) -> None:
        password = self.new_password.text()
        if password_problems(password, self.new_repeat.text()):
            return
        self.create_button.setEnabled(False)
        self.state_label.setText("Generating the account's keys…")

        def created(info: AccountInfo) -> None:
            self.new_password.clear()
            self.new_repeat.clear()
            self.backup_path.setModified(False)
            self.ui.banner.info(f"Account {info.address} created. Back it up now: without the backup, "
                                "a lost computer means lost coins and purchases.")  # fmt: skip
            self.backup_label.setText("Not backed up yet.")
            self.activate()
            self.account_combo.setCurrentIndex(max(self.account_combo.findData(info.address), 0))

        def failed(exc: BaseException) -> None:
            self._check_rules()
            self.ui.banner.error(f"Creating the account failed: {exc}")

        self.run(self.session.store.create, password, done=created, error=failed)

    def save_backup(self) -> None:
        address = self.account_combo.currentData()
        dest = self.backup_path.text().strip()
        if not address or not dest:
            self.ui.banner.error("Choose the account and a file for the backup.")
            return

        def saved(_backup: object) -> None:
            self.backup_label.setText(f"Backed up to {dest}. Keep it apart from this computer; it needs your password.")
            self.ui.banner.info(f"Backup of {address} saved.")

        self.run(self.session.store.export_backup, address, Path(dest), done=saved)

    def import_account(self) -> None:
        source = self.import_path.text().strip()
        password = self.import_password.text()
        if not source:
            self.ui.banner.error("Choose the file to import.")
            return

        def imported(info: AccountInfo) -> None:
            self.import_password.clear()
            self.ui.banner.info(f"Account {info.address} imported; unlock it to use it.")
            self.activate()

        self.run(self._import, Path(source), password, done=imported,
                 error=lambda exc: self.ui.banner.error(f"Import failed: {exc}"))  # fmt: skip

    def _import(self, source: Path, password: str) -> AccountInfo:
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise AccountError(f"cannot read {source}: {exc.strerror}") from None
        except ValueError:
            raise AccountError(f"{source} is not a backup or keystore file (not JSON)") from None
        if isinstance(document, dict) and document.get("type") == BACKUP_TYPE:
            return self.session.store.import_backup(document, password)
        return self.session.store.import_keystore(document, password)

    def _browse_backup(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the backup", self.backup_path.text(), "JSON (*.json)")
        if path:
            self.backup_path.setText(path)
            self.backup_path.setModified(True)

    def _browse_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Backup or keystore file", str(Path.home()))
        if path:
            self.import_path.setText(path)

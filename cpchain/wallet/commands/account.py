"""`pdash account create|import|list|export|switch`: the wallet's keystores (no chain needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cpchain.crypto import read_password_file
from cpchain.wallet.accounts import AccountInfo
from cpchain.wallet.commands.base import CliError, Parser, Result, Session, add_command, table
from cpchain.wallet.errors import NoCurrentAccount


def _info(info: AccountInfo, current: str | None = None) -> dict[str, object]:
    key = info.encryption_public_key
    return {"address": info.address, "keystore": str(info.keystore_path),
            "encryption_public_key": key.hex() if key else None, "current": info.address == current}  # fmt: skip


def create(s: Session, args: argparse.Namespace) -> Result:
    info = s.accounts.create(s.password(new=True))
    selected = s.accounts.current().address
    return Result(_info(info, selected), f"created account {info.address}"
                  + (" (selected)" if selected == info.address else ""))  # fmt: skip


def import_(s: Session, args: argparse.Namespace) -> Result:
    store = s.accounts
    if args.key_file:
        key = read_password_file(args.key_file).strip()  # a secret: refused unless mode 0600
        info = store.import_private_key(key, s.password(new=True))
    elif args.keystore:
        info = store.import_keystore(Path(args.keystore), s.password())
    else:
        info = store.import_backup(Path(args.backup), s.password())
    selected = store.current().address
    return Result(_info(info, selected), f"imported account {info.address}"
                  + (" (selected)" if selected == info.address else ""))  # fmt: skip


def list_(s: Session, args: argparse.Namespace) -> Result:
    store = s.accounts
    try:
        selected: str | None = store.current().address
    except NoCurrentAccount:
        selected = None
    infos = [_info(i, selected) for i in store.list()]
    rows = [("*" if i["current"] else "", i["address"], i["keystore"]) for i in infos]
    return Result({"accounts": infos, "current": selected}, table(["", "ADDRESS", "KEYSTORE"], rows))


def export(s: Session, args: argparse.Namespace) -> Result:
    store = s.accounts
    address = args.address or s.address()
    if args.keystore_only:
        if args.out:
            raise CliError("--keystore-only prints the keystore; it cannot be combined with --out")
        document = store.export_keystore(address)
        return Result(document, json.dumps(document, indent=1))
    if args.out:
        store.export_backup(address, Path(args.out))
        info = store.get(address)
        return Result({"address": info.address, "backup": str(args.out)},
                      f"wrote the backup of {info.address} to {args.out} (encrypted by its password)")  # fmt: skip
    document = store.export_backup(address)
    return Result(document, json.dumps(document, indent=1))


def switch(s: Session, args: argparse.Namespace) -> Result:
    info = s.accounts.switch(args.address)
    return Result(_info(info, info.address), f"selected account {info.address}")


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("account", help="create, import, list, export and select accounts",
                           description="The wallet's accounts (keystores in [account] keystore_dir).")  # fmt: skip
    accounts = group.add_subparsers(dest="account_command", required=True, metavar="ACTION")
    add_command(accounts, "create", create, "a new account (password: --password-file, $PDASH_PASSWORD or a prompt)",
                [common])  # fmt: skip
    p = add_command(accounts, "import", import_, "import a private key, a v3 keystore or a pdash backup", [common])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--key-file", help="a file (mode 0600) holding the private key in hex")
    source.add_argument("--keystore", help="a v3 keystore file (its own password)")
    source.add_argument("--backup", help="a backup from `pdash account export` (with its encryption key)")
    add_command(accounts, "list", list_, "the accounts; * marks the selected one", [common])
    p = add_command(accounts, "export", export, "the account's backup (keystore and encryption key, encrypted)",
                    [common])  # fmt: skip
    p.add_argument("address", nargs="?", help="default: --account, else the selected account")
    p.add_argument("--out", help="write the backup to this new file (mode 0600) instead of stdout")
    p.add_argument("--keystore-only", action="store_true", help="print the v3 keystore alone (for other wallets)")
    p = add_command(accounts, "switch", switch, "select the account the other commands act as", [common])
    p.add_argument("address")

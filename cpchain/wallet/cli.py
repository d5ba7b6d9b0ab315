"""`pdash`: the PDash command line, a front end of the headless wallet core.

Owns the command tree and its global options only: each command lives in
cpchain.wallet.commands.<topic> and runs through cpchain.wallet.commands.base.execute (open
the wallet on demand, print the result for a person or as JSON, one error line). `pdash
stream --keystore ...` is handed to the stream client (cpchain.proxy.streams.client) unchanged.

Global options (before or after the command): --config PATH (else
$CPCHAIN_HOME_CONFIG_PATH), --account ADDRESS, --password-file PATH (mode 0600; else
$PDASH_PASSWORD, the config's [account] password_file, or a prompt on a terminal), --json,
--progress/--no-progress, -v.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cpchain.wallet.commands import account, funds, market, proxies, run, stream, trade
from cpchain.wallet.commands.base import EXIT_ERROR, PASSWORD_ENV, Parser, execute

__all__ = ["build_parser", "main", "parse"]

TOPICS = (account, funds, market, trade, proxies, run, stream)


def _common() -> argparse.ArgumentParser:
    """Options every command takes; SUPPRESS keeps a later position from resetting an earlier one."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $CPCHAIN_HOME_CONFIG_PATH, else ~/.cpchain/cpchain.toml)",
    )
    common.add_argument("--account", default=argparse.SUPPRESS, help="act as this account (default: the selected one)")
    common.add_argument(
        "--password-file",
        default=argparse.SUPPRESS,
        help=f"file (mode 0600) holding the password (else ${PASSWORD_ENV}, or a prompt)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document on stdout"
    )
    progress = common.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log the wallet's work on stderr (-vv: debug)",
    )
    return common  # fmt: skip


DEFAULTS = {"config": None, "account": None, "password_file": None, "json": False, "progress": None, "verbose": 0}


def build_parser() -> Parser:
    parser = Parser(prog="pdash", description="The PDash command line: accounts, trades and the wallet's automation.",
                    parents=[_common()])  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    common = _common()  # other Action objects than the top level's, so neither position resets the other
    for topic in TOPICS:
        topic.register(sub, common)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key, value in DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def _logging(verbose: int, command: str) -> None:
    """The wallet's log on stderr: -v, or INFO for `run`; otherwise errors only (one error line)."""
    root = logging.getLogger()
    if root.handlers:  # embedded (tests, another front end): leave its logging alone
        return
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose or command == "run" else logging.CRITICAL
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `pdash stream --keystore ...`: the stream client's own mode, for scripts without a wallet.
    if argv[:1] == ["stream"] and any(a == "--keystore" or a.startswith("--keystore=") for a in argv):
        from cpchain.proxy.streams import client

        try:
            client.main(argv[1:], prog="pdash stream")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_ERROR
        return 0
    try:
        args = parse(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    _logging(args.verbose, args.command)
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())

"""What every `pdash` command shares: the session, passwords, progress bars, output and errors.

Owns the one path a command runs through (`execute`): the session loads the config, reads
the password and opens the wallet lazily, only when the command asks for them; the
command's `Result` is printed for a person or as one JSON document (`--json`); every
expected failure (WalletError, config and password problems, bad input) becomes one line
on stderr, `pdash: error: ...`, with a non-zero exit code, and never a traceback. The
commands themselves live beside this module and must not print or catch errors on their own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from cpchain.config import Config, ConfigError, load_config
from cpchain.crypto import read_password_file
from cpchain.crypto.errors import CryptoError
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.context import WalletContext, open_wallet
from cpchain.wallet.errors import WalletError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PASSWORD_ENV",
    "CliError",
    "Handler",
    "Parser",
    "Result",
    "Session",
    "add_command",
    "execute",
    "format_cpc",
    "parse_amount",
    "table",
]

PASSWORD_ENV = "PDASH_PASSWORD"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
WEI_PER_CPC = 10**18

log = logging.getLogger(__name__)


class CliError(Exception):
    """A failure the command line itself detects (bad input, no password...); one line."""


# A market hash is 43 characters of URL-safe base64 and may begin with "-" (1 in 64); no
# option of pdash has that shape, so such a word is always an argument, never an option.
_MARKET_HASH_WORD = re.compile(r"-[A-Za-z0-9_-]{42}")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr: `pdash: error: ...`, exit 2, and
    that takes a market hash beginning with "-" as the argument it is."""

    def _parse_optional(self, arg_string: str) -> Any:
        if _MARKET_HASH_WORD.fullmatch(arg_string):
            return None  # argparse's "a positional argument"
        return super()._parse_optional(arg_string)

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("pdash").strip()
        sys.stderr.write(f"pdash: error: {where + ': ' if where else ''}{_one_line(message)}\n")
        sys.exit(EXIT_USAGE)


@dataclass
class Result:
    """What a command answers: a JSON-able document and the same for a person."""

    data: Any
    text: str = ""
    printed: bool = False  # the command wrote its output as it went (records of a stream): nothing more


Handler = Callable[["Session", argparse.Namespace], Result]


def add_command(sub: argparse._SubParsersAction[Parser], name: str, handler: Handler, help: str,
                parents: Sequence[argparse.ArgumentParser] = ()) -> Parser:  # fmt: skip
    """A subcommand whose parsed arguments run `handler` through `execute`."""
    inherited: list[Any] = list(parents)
    parser: Parser = sub.add_parser(name, help=help, description=help, parents=inherited)
    parser.set_defaults(handler=handler)
    return parser


# ---------------------------------------------------------------------- the session


class Session:
    """The config, accounts, password and wallet of one command, each made on first use."""

    def __init__(self, args: argparse.Namespace, *, stdin_tty: bool | None = None) -> None:
        self.args = args
        self._config: Config | None = None
        self._wallet: WalletContext | None = None
        self._bars = Bars(_progress_wanted(args.progress))
        self._stdin_tty = sys.stdin.isatty() if stdin_tty is None else stdin_tty

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.args.config) if self.args.config else load_config()
        return self._config

    @property
    def accounts(self) -> AccountStore:
        return AccountStore(self.config.path("account.keystore_dir"))

    def address(self) -> str:
        """The account the command acts as: --account, else the selected one."""
        if self.args.account:
            return self.accounts.get(self.args.account).address
        return self.accounts.current().address

    def password(self, *, new: bool = False) -> str:
        """--password-file (0600), else $PDASH_PASSWORD, else the config's
        `account.password_file`, else a prompt on a terminal; never a plain argument."""
        if self.args.password_file:
            return read_password_file(self.args.password_file)
        env = os.environ.get(PASSWORD_ENV)
        if env:
            return env
        if not new and self.config.get("account.password_file"):
            return read_password_file(self.config.path("account.password_file"))
        if not self._stdin_tty:
            raise CliError(f"no password: give --password-file, set {PASSWORD_ENV}, or run in a terminal")
        if not new:
            return getpass.getpass("Password: ")
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Repeat it: "):
            raise CliError("the passwords differ")
        return first

    @property
    def wallet(self) -> WalletContext:
        """The unlocked wallet (the account from --account, else the selected one)."""
        if self._wallet is None:
            self._wallet = open_wallet(self.config, self.password(), self.args.account or None)
        return self._wallet

    def progress(self) -> Bars:
        return self._bars

    def close(self) -> None:
        self._bars.close()
        if self._wallet is not None:
            self._wallet.close()
            self._wallet = None


def _progress_wanted(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


class Bars:
    """A cpchain.wallet.context.Progress showing one tqdm bar per phase on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._phase = ""
        self._bar: Any = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self._phase or self._bar is None:
            self.close()
            from tqdm import tqdm

            self._phase = phase
            self._bar = tqdm(total=total, desc=f"{phase:<8}", unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=True, dynamic_ncols=True)  # fmt: skip
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = ""


# ---------------------------------------------------------------------- running


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause: reported in one line, not as a bug."""
    from cpchain.chain.errors import ChainError
    from cpchain.proxy.streams.client import StreamError

    return (WalletError, CliError, ConfigError, CryptoError, ChainError, StreamError, OSError)


def execute(args: argparse.Namespace, *, out: Any = None, err: Any = None) -> int:
    """Run the parsed command: its result on stdout, or one error line on stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    session = Session(args)
    try:
        result: Result = args.handler(session, args)
    except KeyboardInterrupt:
        session.close()
        err.write("pdash: error: interrupted\n")
        return EXIT_INTERRUPTED
    except expected_errors() as exc:
        session.close()
        err.write(f"pdash: error: {_describe(exc)}\n")
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, the traceback only on request
        session.close()
        if os.environ.get("CPCHAIN_DEBUG"):
            raise
        log.debug("unexpected failure", exc_info=True)
        err.write(f"pdash: error: unexpected {type(exc).__name__}: {_describe(exc)} (CPCHAIN_DEBUG=1 for details)\n")
        return EXIT_ERROR
    session.close()
    if result.printed:
        pass
    elif args.json:
        out.write(json.dumps(result.data, indent=1, sort_keys=True, default=str) + "\n")
    elif result.text:
        out.write(result.text.rstrip("\n") + "\n")
    out.flush()
    return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return _one_line(f"{where}{exc.strerror}")
    return _one_line(str(exc) or type(exc).__name__)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------- formatting


def parse_amount(text: str) -> int:
    """Wei from "1.5" (CPC), "1.5cpc" or "1500wei"."""
    raw = text.strip().lower()
    unit = WEI_PER_CPC
    if raw.endswith("wei"):
        raw, unit = raw[:-3].strip(), 1
    elif raw.endswith("cpc"):
        raw = raw[:-3].strip()
    try:
        value = Decimal(raw) * unit
    except InvalidOperation:
        raise CliError(f"not an amount: {text!r} (CPC, or wei with the suffix 'wei')") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise CliError(f"not an amount: {text!r} (a non-negative number, at most 18 decimals)")
    return int(value)


def format_cpc(wei: int) -> str:
    """1500000000000000000 -> "1.5 CPC"."""
    whole, frac = divmod(int(wei), WEI_PER_CPC)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") + " CPC"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns; "(none)" for no rows."""
    body = [[str(c) for c in row] for row in rows]
    if not body:
        return "(none)"
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)

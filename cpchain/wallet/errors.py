"""Typed wallet errors, and the translation of the building blocks' errors into them.

Owns the exception hierarchy of the wallet core: every failure a front end (CLI, Qt) must
react to has its own class with a one-line message that never contains a secret, and
`translated()` maps the market, proxy, chain, storage and crypto errors at the boundary,
so front ends catch `WalletError` only. Must not do any I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests

from cpchain.chain.errors import ChainError, ContractRevert, NodeUnreachable
from cpchain.crypto.errors import CryptoError
from cpchain.crypto.errors import WrongPassword as CryptoWrongPassword
from cpchain.market.client import MarketError
from cpchain.proxy.client import (
    BadReply,
    DownloadCorrupt,
    DownloadFailed,
    NoProxyAvailable,
    ProxyClientError,
    ProxyRefused,
    ProxyUnreachable,
)
from cpchain.proxy.streams.client import StreamDisconnected, StreamError, StreamRefusedError
from cpchain.proxy.streams.records import StreamIntegrityError
from cpchain.storage.base import StorageError

__all__ = [
    "AccountError",
    "AccountExists",
    "BadInput",
    "ChainUnavailable",
    "DataCorrupt",
    "DatabaseError",
    "DatabaseTooNew",
    "ForbiddenAction",
    "InsufficientFunds",
    "InvalidListing",
    "MarketRefused",
    "MarketUnavailable",
    "NoCurrentAccount",
    "NoProxy",
    "NotReady",
    "ProxyFailed",
    "ProxyUnavailable",
    "StorageFailed",
    "TransactionError",
    "UnknownAccount",
    "UnknownOrder",
    "UnknownProduct",
    "UnknownUpload",
    "WalletClosed",
    "WalletError",
    "WrongPassword",
    "translated",
]


class WalletError(Exception):
    """Base of every wallet failure; str() is one line for a person."""


class BadInput(WalletError):
    """What the user typed is not valid here (an address, an amount); nothing was sent."""


# --- accounts -------------------------------------------------------------------------


class AccountError(WalletError):
    """Base of account-store failures."""


class WrongPassword(AccountError):
    """The password does not open the account's keystore or its encryption key."""


class UnknownAccount(AccountError):
    """No account with this address in the wallet."""


class AccountExists(AccountError):
    """The account is already in the wallet (import refused, nothing changed)."""


class NoCurrentAccount(AccountError):
    """No account is selected (create or import one, or switch to one)."""


# --- local records --------------------------------------------------------------------


class DatabaseError(WalletError):
    """The wallet database cannot be opened or migrated."""


class DatabaseTooNew(DatabaseError):
    """The database was written by a newer wallet (its schema version is unknown here)."""


class WalletClosed(DatabaseError):
    """The wallet was locked or closed while this ran (a background read outliving the
    wallet it began on): nothing was read or written."""


class UnknownUpload(WalletError):
    """No upload with this id belongs to the account."""


class UnknownOrder(WalletError):
    """The order does not exist on chain, or the account is not a party to it."""


# --- market ---------------------------------------------------------------------------


class MarketUnavailable(WalletError):
    """The market does not answer."""


class MarketRefused(WalletError):
    """The market answered with a refusal (`status` is its HTTP status)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class UnknownProduct(MarketRefused):
    """No visible product with this market hash."""


class InvalidListing(WalletError):
    """A listing whose signature, seller or hashes do not check out (never bought)."""


# --- chain ----------------------------------------------------------------------------


class ChainUnavailable(WalletError):
    """The chain node does not answer."""


class ForbiddenAction(WalletError):
    """The order's lifecycle forbids this action for this account now (no transaction sent)."""

    def __init__(self, action: str, reason: str, order_id: int | None = None) -> None:
        where = f" on order {order_id}" if order_id is not None else ""
        super().__init__(f"{action}{where} refused: {reason}")
        self.action = action
        self.reason = reason
        self.order_id = order_id


class NotReady(WalletError):
    """The order is not yet (or no longer) in a state where this step makes sense."""


class TransactionError(WalletError):
    """A transaction could not be sent, failed on chain, or was not mined in time."""


class InsufficientFunds(TransactionError):
    """The account cannot pay the transaction's value and gas."""


# --- proxies and data -----------------------------------------------------------------


class ProxyUnavailable(WalletError):
    """The order's proxy (or the tracker) cannot be reached."""


class NoProxy(ProxyUnavailable):
    """No live proxy with a bonded deposit is available for a new order."""


class ProxyFailed(WalletError):
    """The proxy refused the request or answered with something invalid."""


class DataCorrupt(WalletError):
    """Downloaded data does not match the order's data hash, or does not decrypt."""


class StorageFailed(WalletError):
    """The storage backend failed (upload or local file problem)."""


@contextmanager
def translated(what: str = "") -> Iterator[None]:
    """Re-raise the building blocks' errors as WalletErrors, prefixed with `what`."""
    prefix = f"{what}: " if what else ""

    def said(exc: Exception) -> str:
        text = str(exc)
        return text if not prefix or text.startswith(prefix) else prefix + text

    try:
        yield
    except WalletError:
        raise
    except MarketError as exc:
        if exc.status == 0:
            raise MarketUnavailable(said(exc)) from exc
        if exc.status == 404:
            raise UnknownProduct(said(exc), exc.status) from exc
        raise MarketRefused(said(exc), exc.status) from exc
    except NoProxyAvailable as exc:
        raise NoProxy(said(exc)) from exc
    except ProxyUnreachable as exc:
        raise ProxyUnavailable(said(exc)) from exc
    except DownloadCorrupt as exc:
        raise DataCorrupt(said(exc)) from exc
    except DownloadFailed as exc:
        raise ProxyUnavailable(said(exc)) from exc
    except (ProxyRefused, BadReply, ProxyClientError) as exc:
        raise ProxyFailed(said(exc)) from exc
    except StreamRefusedError as exc:
        if exc.code == "not_paid":  # the order is not (yet) bound to its channel
            raise NotReady(said(exc)) from exc
        raise ProxyFailed(said(exc)) from exc
    except StreamDisconnected as exc:
        raise ProxyUnavailable(said(exc)) from exc
    except StreamIntegrityError as exc:
        raise DataCorrupt(said(exc)) from exc
    except StreamError as exc:
        raise ProxyFailed(said(exc)) from exc
    except NodeUnreachable as exc:
        raise ChainUnavailable(said(exc)) from exc
    except ContractRevert as exc:
        raise ForbiddenAction(exc.function or what or "transaction", exc.reason) from exc
    except ChainError as exc:
        if "insufficient funds" in str(exc).lower():
            raise InsufficientFunds(said(exc)) from exc
        raise TransactionError(said(exc)) from exc
    except CryptoWrongPassword as exc:
        raise WrongPassword(f"{prefix}wrong password") from exc
    except CryptoError as exc:
        raise DataCorrupt(said(exc)) from exc
    except StorageError as exc:
        raise StorageFailed(said(exc)) from exc
    except (requests.RequestException, ConnectionError) as exc:
        # The market and proxy clients translate their own transport errors, so a bare
        # one comes from web3 talking to the chain node.
        raise ChainUnavailable(f"{prefix}chain node unreachable ({type(exc).__name__})") from exc

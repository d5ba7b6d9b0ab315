"""Typed chain errors: every failure a chain client can raise, with a one-line message."""

from __future__ import annotations


class ChainError(Exception):
    """Base of every chain-layer failure."""


class NodeUnreachable(ChainError):
    """The RPC endpoint does not answer."""


class InvalidAddress(ChainError):
    """A string that is not a valid (checksummed or lowercase) Ethereum address."""


class ContractRevert(ChainError):
    """The contract refused a call; `reason` is the contract's own reason string."""

    def __init__(self, reason: str, function: str = "") -> None:
        self.reason = reason
        self.function = function
        super().__init__(f"{function}: {reason}" if function else reason)


class TransactionFailed(ChainError):
    """A transaction was mined but failed, or was not mined in time."""


class ContractNotDeployed(ChainError):
    """No registrar entry, or no code at the registered address on this chain."""


class UnknownOrder(ChainError):
    """No OrderPlaced event exists for this order id."""


class InvalidArgument(ChainError):
    """A malformed argument (wrong hash length, negative amount...) caught before sending."""

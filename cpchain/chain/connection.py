"""Connecting to a chain by mode, and the dev-chain controls tests and tools need.

Owns provider selection; must not hold keys (signing is done by callers' local accounts).
Modes: `test` (in-process eth-tester chain), `local` (a node at chain.local_provider_addr),
`remote` (chain.remote_provider_addr).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.middleware import ExtraDataToPOAMiddleware

from cpchain.chain.errors import ChainError, InvalidAddress, NodeUnreachable
from cpchain.config import Config


def connect(config: Config) -> Web3:
    """A Web3 for the configured mode; fails fast with NodeUnreachable if it does not answer."""
    mode = config.get("chain.mode")
    if mode == "test":
        return shared_in_process_chain()
    url = config.require("chain.local_provider_addr" if mode == "local" else "chain.remote_provider_addr")
    return connect_url(url)


def connect_url(url: str, timeout: float = 10.0) -> Web3:
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
    # geth --dev (clique era) and some remote chains put extra data in the header.
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    try:
        _ = w3.eth.chain_id
    except Exception as exc:  # requests raises a zoo of connection errors
        raise NodeUnreachable(f"chain node at {url} is not answering ({type(exc).__name__})") from None
    return w3


def in_process_chain() -> Web3:
    """A fresh in-process chain (eth-tester on py-evm) with funded dev accounts."""
    return Web3(EthereumTesterProvider())


@lru_cache(maxsize=1)
def shared_in_process_chain() -> Web3:
    """The process's one in-process chain: every `connect` in test mode sees the same state."""
    return in_process_chain()


def is_in_process(w3: Web3) -> bool:
    return isinstance(w3.provider, EthereumTesterProvider)


def dev_bank(w3: Web3) -> LocalAccount:
    """The in-process chain's first funded account (its key is public: dev use only)."""
    if not is_in_process(w3):
        raise ChainError("dev_bank is only defined for the in-process chain")
    key = _tester(w3).backend.account_keys[0]
    return cast(LocalAccount, Account.from_key(key.to_bytes()))


def checksum(address: str) -> ChecksumAddress:
    """A checksummed address, or InvalidAddress with a clear message."""
    if not isinstance(address, str) or not Web3.is_address(address):
        raise InvalidAddress(f"not an address: {address!r}")
    if address != address.lower() and not Web3.is_checksum_address(address):
        raise InvalidAddress(f"bad address checksum: {address}")
    return Web3.to_checksum_address(address)


# ---------------------------------------------------------------- dev-chain time and snapshots


def time_travel(w3: Web3, seconds: int) -> None:
    """Move the chain's clock forward by `seconds` and mine a block at the new time."""
    if is_in_process(w3):
        # eth-tester's pending block already follows the wall clock; travel from whichever
        # is later, or it refuses to go "backwards".
        now = max(int(w3.eth.get_block(b)["timestamp"]) for b in ("latest", "pending"))
        _tester(w3).time_travel(now + seconds)
        return
    _rpc(w3, "evm_increaseTime", [seconds])
    _rpc(w3, "evm_mine", [])


def snapshot(w3: Web3) -> Any:
    if is_in_process(w3):
        return _tester(w3).take_snapshot()
    return _rpc(w3, "evm_snapshot", [])


def revert(w3: Web3, snapshot_id: Any) -> None:
    if is_in_process(w3):
        _tester(w3).revert_to_snapshot(snapshot_id)
        return
    if not _rpc(w3, "evm_revert", [snapshot_id]):
        raise ChainError(f"snapshot {snapshot_id} could not be restored")


def _tester(w3: Web3) -> Any:
    """The eth-tester instance behind an in-process Web3."""
    return cast(EthereumTesterProvider, w3.provider).ethereum_tester


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise ChainError(f"{method}: {response['error']}")
    return response["result"]

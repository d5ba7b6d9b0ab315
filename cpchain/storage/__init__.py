"""Storage plugins (local today; proxy, IPFS, S3 with their issue): stream encrypted files
to and from backends, described by validated JSON locators.

Owns locators, the fixed plugin registry, transfer code and the fetching side's policy;
must not decide who may fetch which order's data (the proxy checks the order first).
"""

from cpchain.storage.base import (
    REGISTRY,
    Locator,
    LocatorError,
    ObjectMissing,
    PolicyRefused,
    StorageError,
    TransferTooLarge,
    validate,
)
from cpchain.storage.local import LocalStorage
from cpchain.storage.policy import FetchPolicy

__all__ = [
    "REGISTRY",
    "FetchPolicy",
    "LocalStorage",
    "Locator",
    "LocatorError",
    "ObjectMissing",
    "PolicyRefused",
    "StorageError",
    "TransferTooLarge",
    "validate",
]

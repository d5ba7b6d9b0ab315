"""Storage plugins: stream encrypted files to and from backends, described by validated
JSON locators: `local` (a path on this host), `proxy` (a relay proxy's file server), `ipfs`
(the IPFS HTTP RPC API), `s3` (any S3-compatible endpoint). Importing this package
registers them in the fixed REGISTRY; `settings` builds the wallet's plugins from its
config and keeps their secrets sealed; `httpfetch` is the policy-checked HTTP path for
URLs a remote party named.

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
from cpchain.storage.ipfs import IpfsStorage
from cpchain.storage.local import LocalStorage
from cpchain.storage.policy import FetchPolicy
from cpchain.storage.proxy import ProxyStorage
from cpchain.storage.s3 import S3Credentials, S3Settings, S3Storage

__all__ = [
    "REGISTRY",
    "FetchPolicy",
    "IpfsStorage",
    "LocalStorage",
    "Locator",
    "LocatorError",
    "ObjectMissing",
    "PolicyRefused",
    "ProxyStorage",
    "S3Credentials",
    "S3Settings",
    "S3Storage",
    "StorageError",
    "TransferTooLarge",
    "validate",
]

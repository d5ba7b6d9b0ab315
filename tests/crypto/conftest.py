"""Shared fixtures for the cpchain.crypto tests (fast KDF settings only)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.crypto import KeystoreAccount, create_account

PASSWORD = "correct horse battery staple"
# Cheapest scrypt cost the sealed-secret format accepts quickly: tests only.
TEST_SCRYPT_N = 2**8


class FakeClock:
    """Deterministic clock so expiry tests never sleep."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(scope="session")
def fast_account() -> KeystoreAccount:
    return create_account(PASSWORD, fast_kdf=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def password() -> str:
    return PASSWORD


@pytest.fixture(scope="session")
def scrypt_n() -> int:
    return TEST_SCRYPT_N


@pytest.fixture(scope="session")
def signer() -> LocalAccount:
    acct: LocalAccount = Account.from_key(b"\x11" * 32)
    return acct


@pytest.fixture(scope="session")
def other_signer() -> LocalAccount:
    acct: LocalAccount = Account.from_key(b"\x22" * 32)
    return acct

"""Escrow contract tests: every test here ends with the contract solvent (before the revert)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chain.conftest import World
from tests.chain.escrow.test_escrow_lifecycle import assert_solvent


@pytest.fixture(autouse=True)
def _solvent_after_each_test(world: World) -> Iterator[None]:
    yield
    assert_solvent(world)

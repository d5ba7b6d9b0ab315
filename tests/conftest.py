"""Test-wide settings: an isolated CPCHAIN_HOME so no test reads or writes ~/.cpchain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cpchain-home")
    monkeypatch.setenv("CPCHAIN_HOME", str(home))
    monkeypatch.delenv("CPCHAIN_HOME_CONFIG_PATH", raising=False)
    yield home

"""The database-backend suite once more on MariaDB FULLTEXT. Django's settings are per
process, so it runs as a child pytest with PDASH_SEARCH_TEST_DB=mariadb."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.market.conftest import require_mariadb
from tests.market.search.conftest import DB_ENV, HERE, TEST_DB

ROOT = HERE.parents[2]


@pytest.mark.mariadb
@pytest.mark.skipif(TEST_DB == "mariadb", reason="this is the MariaDB run itself")
def test_the_search_suite_passes_on_mariadb() -> None:
    require_mariadb()
    env = {k: v for k, v in os.environ.items() if k != "CPCHAIN_HOME_CONFIG_PATH"}
    env[DB_ENV] = "mariadb"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-q", "-rA", "-p", "no:cacheprovider", "-m", "mariadb"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    passed = re.findall(r"^PASSED tests/market/search/(test_\w+)\.py::", result.stdout, re.MULTILINE)
    # The whole database-backend suite ran there, not just a corner of it.
    assert {"test_backends", "test_index_updates", "test_hostile"} <= set(passed), report
    assert passed.count("test_backends") >= 50, report

"""The search backend suite runs in-process: one market home per test session, with Django
configured from its cpchain.toml before django.setup().

The database is SQLite unless PDASH_SEARCH_TEST_DB=mariadb, then a fresh MariaDB database on
127.0.0.1:3306 (dropped at the end). Django settings are per process, so the MariaDB half runs
as a child pytest (test_mariadb.py). The Elasticsearch backend talks to osmem-server (an
in-memory server of the OpenSearch REST API) over real HTTP. API calls go through the typed
MarketClient, whose requests session is routed into Django in-process (no sockets).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.market.client import MarketClient
from tests.chain.conftest import free_port
from tests.market.conftest import mariadb_connect, require_mariadb

HERE = Path(__file__).resolve().parent
DB_ENV = "PDASH_SEARCH_TEST_DB"
TEST_DB = os.environ.get(DB_ENV, "sqlite")
# The Elasticsearch backend does not depend on the database: it runs in the SQLite session only.
BACKENDS = ["db"] if TEST_DB == "mariadb" else ["db", "es"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            # elasticsearch-py 7.13 calls urllib3's deprecated getheaders() on every response.
            item.add_marker(pytest.mark.filterwarnings("ignore:HTTPResponse.getheaders:DeprecationWarning"))
            if TEST_DB == "mariadb":
                item.add_marker(pytest.mark.mariadb)


# -- Django in this process --------------------------------------------------------------------
@pytest.fixture(scope="session")
def market_django(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """Django configured and migrated; yields the database vendor ("sqlite" or "mysql")."""
    import django
    from django.apps import apps

    blocker = request.getfixturevalue("django_db_blocker")  # pytest-django blocks the DB once configured
    unblock = blocker.unblock() if blocker is not None else contextlib.nullcontext()
    if apps.ready:  # another suite in this process configured Django first: use its database
        from django.core.management import call_command
        from django.db import connection

        with unblock:  # migrated here too: that suite's own tests may not run in this process
            call_command("migrate", interactive=False, verbosity=0)
            call_command("createcachetable", verbosity=0)
            yield connection.vendor
        return
    home = tmp_path_factory.mktemp("search-market")
    database = ""
    if TEST_DB == "mariadb":
        require_mariadb()
        database = f"pdash_search_{secrets.token_hex(4)}"
        conn = mariadb_connect()
        conn.cursor().execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        conn.close()
    (home / "cpchain.toml").write_text(
        "[market]\n"
        'login_rate = "100000/min"\n'
        "[market.mysql]\n"
        f"enabled = {'true' if database else 'false'}\n"
        f'database = "{database}"\n'
        "[logging]\n"
        'level = "WARNING"\n'
    )
    (home / "market" / "static").mkdir(parents=True)  # whitenoise warns about a missing one
    with pytest.MonkeyPatch.context() as env:  # settings read the config at import
        env.setenv("CPCHAIN_HOME", str(home))
        env.setenv("CPCHAIN_HOME_CONFIG_PATH", str(home / "cpchain.toml"))
        env.setenv("DJANGO_SETTINGS_MODULE", "cpchain.market.settings")
        django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    try:
        with unblock:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("createcachetable", verbosity=0)
            yield connection.vendor
    finally:
        connections.close_all()
        if database:
            conn = mariadb_connect()
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
            conn.close()


@pytest.fixture(scope="session")
def vendor(market_django: str) -> str:
    return market_django


def wipe_market() -> None:
    """No products, accounts or login state left from an earlier test."""
    from django.core.cache import cache

    from cpchain.market.account.models import AuthToken, LoginNonce, WalletUser
    from cpchain.market.product.models import Product

    Product.objects.filter(superseded_by__isnull=False).update(superseded_by=None)
    Product.objects.all().delete()
    AuthToken.objects.all().delete()
    LoginNonce.objects.all().delete()
    WalletUser.objects.all().delete()
    cache.clear()


# -- the API, in-process -----------------------------------------------------------------------
class InProcess(requests.adapters.BaseAdapter):
    """A requests transport into the Django app of this process (WSGI, no sockets)."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        from django.test import Client

        url = urlsplit(str(request.url))
        skip = {"content-type", "content-length", "host"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        reply = Client().generic(
            str(request.method),
            url.path + (f"?{url.query}" if url.query else ""),
            data=body,
            content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        response = requests.Response()
        response.status_code = reply.status_code
        response._content = reply.content
        response.headers = requests.structures.CaseInsensitiveDict(reply.items())
        response.encoding = "utf-8"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None


def api() -> MarketClient:
    session = requests.Session()
    session.mount("http://testserver", InProcess())
    return MarketClient("http://testserver", session=session)


def seller() -> tuple[LocalAccount, MarketClient]:
    """A fresh account, logged in through the signed-nonce flow."""
    account = Account.create()
    client = api()
    client.login(account)
    return account, client


# -- Elasticsearch: osmem-server over HTTP -----------------------------------------------------
@pytest.fixture(scope="session")
def osmem_url() -> Iterator[str]:
    from osmem_server import OsmemError, resolve_binary

    try:
        binary = resolve_binary()
    except OsmemError as exc:
        pytest.skip(f"osmem-server is not installed: {exc}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"osmem-server did not start on {url}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def active_backend(kind: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Make `kind` ("db" or "es", on a fresh index) the market's search backend meanwhile."""
    from django.conf import settings
    from django.test.utils import override_settings

    from cpchain.market.search import get_backend

    pdash = dict(settings.PDASH)
    if kind == "es":
        pdash.update(ES_HOSTS=[request.getfixturevalue("osmem_url")], ES_INDEX=f"pdash-test-{secrets.token_hex(4)}")
    else:
        pdash.update(ES_HOSTS=[])
    get_backend.cache_clear()
    with override_settings(PDASH=pdash):
        try:
            yield get_backend()
        finally:
            get_backend.cache_clear()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, market_django: str) -> Iterator[Any]:
    """Each search backend in turn, active, over an empty market."""
    wipe_market()
    with active_backend(request.param, request) as active:
        yield active

"""In-process Django for the chain indexer and records API tests, and the chains to index.

The market's settings are built from a cpchain.toml when Django starts, so this module
writes one (SQLite in a temporary directory) and sets Django up when it is imported, before
the test modules (which import models at module level) are collected; the session fixture
migrates. Every test that uses the database starts with empty market tables: the chain
fixtures revert the chain after each test, so what was indexed from it must go as well.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import django
import pytest
from django.apps import apps

from cpchain.chain.artifact import load_artifact
from cpchain.chain.events import ChainEvent
from cpchain.types import ProductDescription
from tests.chain.conftest import anvil, world, worlds  # noqa: F401  (fixtures used by the tests here)


def _setup_django() -> Path:
    """Start Django on a fresh market home (unless something already did); returns the home."""
    home = Path(tempfile.mkdtemp(prefix="pdash-records-"))
    atexit.register(shutil.rmtree, home, True)
    if apps.ready:
        return home
    (home / "market" / "static").mkdir(parents=True)  # what collectstatic would create
    config = home / "cpchain.toml"
    config.write_text(f'[core]\nrc_dir = "{home}"\nmode = "market"\n[market]\nlogin_rate = "100000/min"\n')
    saved = {name: os.environ.get(name) for name in ("CPCHAIN_HOME_CONFIG_PATH", "DJANGO_SETTINGS_MODULE")}
    os.environ["CPCHAIN_HOME_CONFIG_PATH"] = str(config)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cpchain.market.settings"
    try:
        django.setup()  # loads the settings, and with them the config, now
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return home


MARKET_HOME = _setup_django()


@pytest.fixture(scope="session")
def market_django(django_db_blocker: Any) -> Iterator[Path]:
    """The market database, migrated; returns the market's home directory.

    These tests use the database directly, not pytest-django's test databases; lift its
    database block (set when Django is configured as pytest starts) for the session.
    """
    from django.core.management import call_command

    with django_db_blocker.unblock() if django_db_blocker is not None else contextlib.nullcontext():
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        yield MARKET_HOME


@pytest.fixture
def market_db(market_django: Path) -> Iterator[None]:
    """Empty market tables for this test."""
    from django.core.cache import cache

    from cpchain.market.account.models import AuthToken, LoginNonce, WalletUser
    from cpchain.market.product.models import Product, ProductTag
    from cpchain.market.proxy.models import ProxyNode
    from cpchain.market.records.models import ChainOrder, Record, SyncState

    for model in (Record, ChainOrder, SyncState, ProxyNode, ProductTag, Product, AuthToken, LoginNonce, WalletUser):
        model.objects.all().delete()
    cache.clear()
    yield


def listed_product(seller: str, **over: Any) -> Any:
    """A product the market lists, as a signed publication would store it."""
    from cpchain.market.account.models import WalletUser
    from cpchain.market.product.models import Product

    fields: dict[str, Any] = {
        "seller": seller,
        "title": "Hourly weather of Shanghai",
        "ptype": "file",
        "description": "Temperature, humidity and wind, one row per hour.",
        "price": 10 * 10**18,
        "category": "climate",
        "tags": ["weather"],
        "data_hash": "da" * 32,
        "storage_type": "proxy",
        "size": 4096,
        "nonce": secrets.token_hex(16),
        **over,
    }
    desc = ProductDescription.from_dict(fields)
    user, _ = WalletUser.objects.get_or_create(address=seller)
    return Product.objects.create(
        market_hash=desc.market_hash(),
        desc_hash=desc.desc_hash().hex(),
        seller=user,
        seller_address=seller,
        title=desc.title,
        description=desc.description,
        ptype=str(desc.ptype),
        price=desc.price,
        category=desc.category,
        tags_text=", ".join(desc.tags),
        data_hash=desc.data_hash,
        storage_type=desc.storage_type,
        size=desc.size,
        canonical=desc.canonical().decode(),
        signature="0x" + "00" * 65,
    )


# ---------------------------------------------------------------- synthetic events (no chain)

_log_positions = itertools.count(1)
ARG_TYPES: dict[str, dict[str, str]] = {}


def arg_types() -> dict[str, dict[str, str]]:
    from cpchain.market.records.rules import arg_types as from_abi

    if not ARG_TYPES:
        ARG_TYPES.update(from_abi(load_artifact().abi))
    return ARG_TYPES


def chain_event(name: str, block: int, **args: Any) -> ChainEvent:
    """An event as EventFollower would deliver it, in a transaction of its own."""
    position = next(_log_positions)
    return ChainEvent(
        name=name,
        args=args,
        block_number=block,
        block_hash="0x" + secrets.token_hex(32),
        tx_hash="0x" + secrets.token_hex(32),
        log_index=position % 7,
    )


def store(event: ChainEvent, sender: str, fee: int = 21_000 * 10**9) -> bool:
    """Index a synthetic event as the indexer would, with a made-up block time and receipt."""
    from cpchain.market.records.indexer import TxInfo, store_event

    when = datetime.fromtimestamp(1_700_000_000 + event.block_number * 12, tz=UTC)
    return store_event(event, when, TxInfo(sender=sender, fee=fee), arg_types())

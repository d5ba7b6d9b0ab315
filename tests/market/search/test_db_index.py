"""The database backend's own structures: price buckets (SQLite), the relevance window (SQLite),
every product found by its words, filters and sorts (both databases) before and after a hide, a
show and a bulk rebuild (on SQLite the FTS5 index the triggers keep passes its integrity
check), and no result kept from a write that was rolled back (both databases)."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from cpchain.market.search import SearchQuery
from tests.market.conftest import product
from tests.market.search.conftest import active_backend, seller, wipe_market


@pytest.fixture
def db_backend(market_django: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    wipe_market()
    with active_backend("db", request) as backend:
        yield backend
    wipe_market()


def ids(backend: Any, **params: Any) -> tuple[int, list[int]]:
    result = backend.search(SearchQuery(**{"limit": 100, "sort": "newest", **params}))
    return result.total, result.ids


# -- price buckets ---------------------------------------------------------------------------------
def test_price_buckets_cover_a_range_exactly(market_django: str) -> None:
    """Listed prices are below 2**128; the bounds may be anything the API accepts."""
    from cpchain.market.search import db

    rng = random.Random(2018)
    prices = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 10**18 - 1, 10**18, 10**18 + 1, 10**19, 2**63, 2**64 + 1]
    prices += [2**128 - 1] + [rng.randrange(1, min(2**128, 10 ** rng.randint(1, 39))) for _ in range(400)]
    bounds: list[Decimal | None] = [None, Decimal(0), Decimal("0.5"), Decimal(1), Decimal(10), Decimal("10.5")]
    bounds += [Decimal(10**18), Decimal(10**19), Decimal(2**64), Decimal(2**128)]
    bounds += [Decimal(rng.randrange(1, 10 ** rng.randint(1, 39))) for _ in range(60)]
    for low, high in [(rng.choice(bounds), rng.choice(bounds)) for _ in range(400)] + [(p, p) for p in bounds[1:]]:
        prices_filter = db.price_filter(SearchQuery(min_price=low, max_price=high))
        if low is None and high is None:
            assert prices_filter is None
            continue
        assert prices_filter is not None
        assert len(prices_filter.buckets) <= 80 and len(prices_filter.partial) <= 2 * 39
        buckets = set(prices_filter.buckets)
        for price in prices:
            in_buckets = not buckets.isdisjoint(db.price_buckets(price))
            cut = any(
                first <= price <= last and ((low is not None and price < low) or (high is not None and price > high))
                for first, last in prices_filter.partial
            )
            wanted = (low is None or price >= low) and (high is None or price <= high)
            assert (in_buckets and not cut) == wanted, (price, low, high)


# -- the relevance window ----------------------------------------------------------------------------
ZEBRAS = [  # oldest first; every listing has as many words and facet tokens as every other
    ("A", "Zebra herd map", "seen at the dawn", "zebra"),  # the word in the title and the tags
    ("B", "Plain herd map", "a zebra at dawn", "herd"),  # in the description only
    ("C", "Plain herd map", "a zebra at dawn", "herd"),
    ("D", "Plain herd map", "a zebra at dawn", "herd"),
    ("E", "Zebra herd map", "seen at the dawn", "herd"),  # in the title
    ("F", "Plain herd map", "a zebra at dawn", "herd"),
]


def test_relevance_ranks_the_newest_window_then_the_older_matches_newest_first(
    db_backend: Any, market_django: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if market_django != "sqlite":
        pytest.skip("InnoDB FULLTEXT ranks every match by its MATCH score: no relevance window")
    from cpchain.market.product.models import Product
    from cpchain.market.search import db

    account, client = seller()
    pk = {}
    for key, title, description, tag in ZEBRAS:
        desc = product(account.address, title=title, description=description, tags=[tag], category="wildlife")
        pk[key] = Product.objects.get(market_hash=client.publish(account, desc)["market_hash"]).pk
    order = {pk[k]: k for k in pk}

    def ranked(**params: Any) -> list[str]:
        total, found = ids(db_backend, keyword="zebra", sort="relevance", **params)
        assert total == 6
        return [order[i] for i in found]

    # Every match in the window: the strongest first, ties newest first.
    assert ranked() == ["A", "E", "F", "D", "C", "B"]
    # A window of the 3 newest: ranked among themselves, then the older 3 newest first, so the
    # strongest match, the oldest, comes last.
    monkeypatch.setattr(db, "RELEVANCE_WINDOW", 3)
    whole = ranked()
    assert whole == ["E", "F", "D", "C", "B", "A"]
    for size in (1, 2, 4):  # pages are stable and disjoint, also across the window's edge
        pages = [ranked(offset=offset, limit=size) for offset in range(0, 6, size)]
        assert [key for page in pages for key in page] == whole
    assert ranked(offset=6, limit=2) == []
    assert ranked(category="wildlife", limit=3) == ["E", "F", "D"]  # with a facet: the same window
    # A stream among them: the window is of the matches (files), ranked without it.
    stream = product(
        account.address, title="Zebra herd map", description="seen at the dawn", tags=["zebra"], ptype="stream"
    )
    order[Product.objects.get(market_hash=client.publish(account, stream)["market_hash"]).pk] = "S"
    assert ranked(ptype="file") == ["E", "F", "D", "C", "B", "A"]
    assert ranked(ptype="file", offset=2, limit=2) == ["D", "C"]


# -- every product found, before and after a bulk rebuild ------------------------------------------
PLACES = [1, 2, 63, 64, 65, 127, 511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097]


def make(pk: int, owner: Any, **over: Any) -> Any:
    """A product row with its tag rows (MySQL filters tags on those)."""
    from cpchain.market.product.models import Product, ProductTag

    fields: dict[str, Any] = {
        "id": pk,
        "market_hash": secrets.token_hex(16),
        "desc_hash": secrets.token_hex(32),
        "seller": owner,
        "seller_address": owner.address,
        "title": f"Place mark{pk} survey",
        "description": "Counts along the river",
        "ptype": "file",
        "price": Decimal(10**18 + pk),
        "category": "rivers",
        "tags_text": "water, survey",
        "data_hash": secrets.token_hex(32),
        "storage_type": "ipfs",
        "canonical": "{}",
        "signature": "0x" + "00" * 65,
    }
    fields.update(over)
    made = Product.objects.create(**fields)
    for position, tag in enumerate(fields["tags_text"].split(", ")):
        ProductTag.objects.create(product=made, tag=tag, position=position)
    return made


def integrity_check() -> None:
    """SQLite: FTS5 checks its index against its content (the visible products); raises if they
    differ. MySQL: nothing to check (InnoDB keeps its FULLTEXT index itself)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO product_fts(product_fts, rank) VALUES ('integrity-check', 1)")


def test_every_product_is_found_before_and_after_a_rebuild(db_backend: Any) -> None:
    from cpchain.market.account.models import WalletUser
    from cpchain.market.product.models import Product, Visibility
    from cpchain.market.search import db

    owner = WalletUser.objects.create(address="0x" + secrets.token_hex(20), username="owner")
    other = WalletUser.objects.create(address="0x" + secrets.token_hex(20), username="other")
    for pk in PLACES:
        make(pk, owner)
    make(
        5000,
        other,
        title="Café Zürich naïve 天气 straße",
        description="",
        ptype="stream",
        price=Decimal(9),
        tags_text="café",
    )
    make(
        5001,
        other,
        title="Odd type listing",
        description="",
        tags_text="odd",
        ptype="dataset",
        price=Decimal(2**64 + 1),
        category="",
    )
    every = sorted([*PLACES, 5000, 5001], reverse=True)

    def check() -> None:
        assert ids(db_backend) == (len(every), every)
        for pk in PLACES:
            assert ids(db_backend, keyword=f"MARK{pk}") == (1, [pk])
            assert ids(db_backend, keyword=f"mark{pk} survey", category="rivers", sellers=(owner.address,)) == (1, [pk])
            price = Decimal(10**18 + pk)
            assert ids(db_backend, keyword="survey", min_price=price, max_price=price) == (1, [pk])
        assert ids(db_backend, keyword="rive") == (0, [])  # words are whole
        assert ids(db_backend, keyword="river counts", max_price=Decimal(10**18 + 64)) == (4, [64, 63, 2, 1])
        assert ids(db_backend, keyword="along", min_price=Decimal(10**18 + 4096)) == (2, [4097, 4096])
        assert ids(db_backend, keyword="cafe zurich") == (1, [5000])
        assert ids(db_backend, keyword="NAIVE 天气") == (1, [5000])
        assert ids(db_backend, tags=("café",)) == (1, [5000])
        assert ids(db_backend, ptype="stream") == (1, [5000])
        assert ids(db_backend, ptype="dataset") == (1, [5001])
        assert ids(db_backend, ptype="file") == (len(PLACES), sorted(PLACES, reverse=True))
        assert ids(db_backend, min_price=Decimal(2**64)) == (1, [5001])
        assert ids(db_backend, max_price=Decimal(9)) == (1, [5000])
        assert ids(db_backend, keyword="survey", sort="price", limit=3)[1] == [1, 2, 63]
        assert ids(db_backend, keyword="survey", sort="-price", limit=3)[1] == [4097, 4096, 4095]

    check()
    hidden = [63, 512, 4096]
    Product.objects.filter(pk__in=hidden).update(status=Visibility.HIDDEN)
    for pk in hidden:
        assert ids(db_backend, keyword=f"mark{pk}") == (0, [])
    integrity_check()
    Product.objects.filter(pk__in=hidden).update(status=Visibility.VISIBLE)
    integrity_check()
    check()
    Product.objects.filter(pk__in=hidden).update(status=Visibility.HIDDEN)
    db.rebuild_fulltext(connection)
    integrity_check()
    for pk in hidden:
        assert ids(db_backend, keyword=f"mark{pk}") == (0, [])
    Product.objects.filter(pk__in=hidden).update(status=Visibility.VISIBLE)
    integrity_check()
    check()


def test_a_rolled_back_write_leaves_no_trace_in_the_results(db_backend: Any) -> None:
    from cpchain.market.product.models import Product, Visibility

    account, client = seller()
    made = client.publish(account, product(account.address, title="Quokka census"))["market_hash"]
    pk = Product.objects.get(market_hash=made).pk
    assert ids(db_backend, keyword="quokka") == (1, [pk])
    with pytest.raises(RuntimeError), transaction.atomic():
        Product.objects.filter(pk=pk).update(status=Visibility.HIDDEN)
        assert ids(db_backend, keyword="quokka") == (0, [])  # the transaction sees its own write
        raise RuntimeError("roll back")
    assert ids(db_backend, keyword="quokka") == (1, [pk])


def test_the_exact_price_migration_rewrites_every_price_and_the_index(db_backend: Any) -> None:
    """SQLite: a market from before Product.price became a WeiField held prices beyond 2**63
    as doubles. Migrating forwards rewrites each price from its signed listing, exactly, and
    rebuilds the full-text structures, whose price buckets read the new form."""
    if connection.vendor != "sqlite":
        pytest.skip("on MySQL/MariaDB the column stays DECIMAL(40, 0)")
    import json

    from django.db.migrations.executor import MigrationExecutor

    from cpchain.market.account.models import WalletUser
    from cpchain.market.product.models import Product

    owner = WalletUser.objects.create(address="0x" + secrets.token_hex(20), username="owner")
    prices = {1: 2**64 + 1, 2: 2**64 + 2, 3: 7, 4: 10**18}
    for pk, price in prices.items():
        make(pk, owner, price=Decimal(price), canonical=json.dumps({"price": price}))
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("product")
    executor = MigrationExecutor(connection)
    executor.migrate([("product", "0003_search_index")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, typeof(price) FROM product_product ORDER BY id")
        assert dict(cursor.fetchall()) == {1: "real", 2: "real", 3: "integer", 4: "integer"}  # the old defect
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)
    assert {p.pk: int(p.price) for p in Product.objects.all()} == prices
    integrity_check()
    assert ids(db_backend, sort="price") == (4, [3, 4, 1, 2])
    assert ids(db_backend, keyword="survey", min_price=Decimal(2**64 + 2)) == (1, [2])
    assert ids(db_backend, keyword="survey", min_price=Decimal(8), max_price=Decimal(2**64 + 1)) == (2, [4, 1])

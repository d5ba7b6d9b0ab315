"""Every write through the API updates the search index before the request returns: publish,
hide, show, update (a new signed version supersedes the old), delete; and the reindex command
rebuilds an index that drifted."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from cpchain.market.search import SearchQuery
from tests.market.conftest import product
from tests.market.search.conftest import seller


def found(backend: Any, **params: Any) -> list[str]:
    """Market hashes of the matches, checking the total agrees with them."""
    from cpchain.market.product.models import Product

    result = backend.search(SearchQuery(limit=100, **params))
    hashes = dict(Product.objects.filter(pk__in=result.ids).values_list("pk", "market_hash"))
    assert result.total == len(result.ids)
    return [hashes[pk] for pk in result.ids]


def assert_index_matches_visible_products(backend: Any) -> None:
    """The index holds exactly the visible products (FTS5 checks itself against its view)."""
    from cpchain.market.product.models import Product, Visibility

    visible = set(Product.objects.filter(status=Visibility.VISIBLE).values_list("market_hash", flat=True))
    if backend.name == "elasticsearch":
        from elasticsearch import helpers

        docs = {hit["_id"] for hit in helpers.scan(backend.client, {"_source": False}, index=backend.alias)}
        assert docs == visible
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # raises "database disk image is malformed" on any drift
            cursor.execute("INSERT INTO product_fts(product_fts, rank) VALUES ('integrity-check', 1)")
    assert set(found(backend)) == visible


def test_publish_hide_show_update_delete_keep_the_index_current(backend: Any) -> None:
    account, client = seller()
    first = client.publish(account, product(account.address, title="Glacier melt rates", category="climate"))
    mh = first["market_hash"]
    assert found(backend, keyword="glacier") == [mh]
    assert found(backend, keyword="glacier", category="climate") == [mh]
    assert_index_matches_visible_products(backend)

    client.post(f"/product/v1/products/{mh}/hide/")
    assert found(backend, keyword="glacier") == []
    assert_index_matches_visible_products(backend)
    client.post(f"/product/v1/products/{mh}/show/")
    assert found(backend, keyword="glacier") == [mh]

    # A new version in another category: the old one is superseded and gone from the index.
    second = client.replace(
        account, mh, product(account.address, title="Glacier retreat maps", category="geology", tags=["ice"])
    )["market_hash"]
    assert found(backend, keyword="glacier") == [second]
    assert found(backend, keyword="melt") == []
    assert found(backend, category="climate") == []
    assert found(backend, category="geology", tags=("ice",)) == [second]
    assert_index_matches_visible_products(backend)

    # Replacing a hidden listing keeps the new version hidden until it is shown.
    client.post(f"/product/v1/products/{second}/hide/")
    third = client.replace(account, second, product(account.address, title="Glacier retreat atlas"))["market_hash"]
    assert found(backend, keyword="glacier") == []
    client.post(f"/product/v1/products/{third}/show/")
    assert found(backend, keyword="atlas") == [third]

    client.request("DELETE", f"/product/v1/products/{third}/")
    assert found(backend, keyword="glacier") == []
    assert found(backend) == []
    assert_index_matches_visible_products(backend)


def test_sales_and_ratings_written_elsewhere_are_searchable_once_indexed(backend: Any) -> None:
    from cpchain.market.product.models import Product

    account, client = seller()
    made = [client.publish(account, product(account.address, title=f"Tide gauge {n}"))["market_hash"] for n in (1, 2)]
    assert found(backend, keyword="tide", sort="sales") == made[::-1]  # no sales yet: newest first
    Product.objects.filter(market_hash=made[0]).update(sales=5, rating_count=2, rating_sum=9, rating_avg=4.5)
    backend.index(Product.objects.get(market_hash=made[0]))  # what the indexer and reviews call
    assert found(backend, keyword="tide", sort="sales") == made
    assert found(backend, keyword="tide", sort="rating") == made


def test_reindex_command_repairs_a_drifted_index(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from cpchain.market.product.models import Product, Visibility

    account, client = seller()
    made = [
        client.publish(account, product(account.address, title=f"Moss survey {n}"))["market_hash"] for n in range(3)
    ]
    if backend.name == "elasticsearch":  # drift: a lost document and a stray one
        backend.client.delete(index=backend.alias, id=made[0], refresh=True)
        backend.client.index(index=backend.alias, id="stray", body={"pk": 999, "status": "visible"}, refresh=True)
        before = set(backend.client.indices.get_alias(name=backend.alias))
    elif connection.vendor == "sqlite":  # drift: a later migration rebuilt the table and dropped the triggers
        with connection.cursor() as cursor:
            for trigger in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER product_fts_{trigger}")
        Product.objects.filter(market_hash=made[1]).update(status=Visibility.HIDDEN)
        assert made[1] in found(backend, keyword="moss")  # stale
    else:  # MySQL: a rebuild (needed after changing innodb_ft_min_token_size) must keep working
        Product.objects.filter(market_hash=made[1]).update(status=Visibility.HIDDEN)

    call_command("reindex")
    visible = len(made) - (0 if backend.name == "elasticsearch" else 1)
    assert (
        f"reindex: {visible} visible products indexed by the {backend.name} search backend" in capsys.readouterr().out
    )
    expected = made if backend.name == "elasticsearch" else [made[0], made[2]]
    assert sorted(found(backend, keyword="moss")) == sorted(expected)
    assert_index_matches_visible_products(backend)
    if backend.name == "elasticsearch":
        assert set(backend.client.indices.get_alias(name=backend.alias)).isdisjoint(before)  # a fresh index
        assert not backend.client.indices.exists(index=sorted(before))
    # Writes after the rebuild are indexed again (triggers restored on SQLite).
    fourth = client.publish(account, product(account.address, title="Moss survey 4"))["market_hash"]
    client.post(f"/product/v1/products/{made[2]}/hide/")
    assert sorted(found(backend, keyword="moss")) == sorted([*expected[:-1], fourth])
    assert_index_matches_visible_products(backend)


def test_migrate_restores_what_a_table_rebuild_dropped(backend: Any) -> None:
    """The product app's post_migrate hook runs ensure_fulltext: a no-op normally, a repair
    after SQLite rebuilt the product table (and so dropped its triggers) in some migration."""
    from django.core.management import call_command

    from cpchain.market.product.models import Product, Visibility
    from cpchain.market.search.db import ensure_fulltext

    if backend.name != "db":
        pytest.skip("database full-text structures")
    assert ensure_fulltext(connection) is False
    account, client = seller()
    made = client.publish(account, product(account.address, title="Peat depth"))["market_hash"]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER product_fts_update")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE product_product DROP INDEX product_fulltext, FORCE")
    Product.objects.filter(market_hash=made).update(status=Visibility.HIDDEN)
    call_command("migrate", verbosity=0)  # nothing to migrate; the hook repairs
    assert ensure_fulltext(connection) is False
    assert found(backend, keyword="peat") == []
    Product.objects.filter(market_hash=made).update(status=Visibility.VISIBLE)
    assert found(backend, keyword="peat") == [made]
    assert_index_matches_visible_products(backend)

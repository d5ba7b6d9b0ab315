"""What is particular to the Elasticsearch backend, against osmem-server over HTTP: the
explicit mapping, document ids, the result window, an unreachable cluster (SearchError, and a
503 with a JSON error from the API, never a 500), and a concrete index in the alias's place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cpchain.market.client import MarketError
from cpchain.market.search import SearchError, SearchQuery
from tests.chain.conftest import free_port
from tests.market.conftest import product
from tests.market.search.conftest import TEST_DB, active_backend, api, seller, wipe_market

pytestmark = pytest.mark.skipif(TEST_DB != "sqlite", reason="the Elasticsearch backend runs in the SQLite session")


@pytest.fixture
def es(request: pytest.FixtureRequest, market_django: str) -> Iterator[Any]:
    wipe_market()
    with active_backend("es", request) as backend:
        yield backend


def test_the_index_has_the_explicit_strict_mapping_and_market_hash_ids(es: Any) -> None:
    account, client = seller()
    made = client.publish(account, product(account.address, title="Pollen counts", price=3 * 2**64, tags=["a b"]))
    (index,) = es.client.indices.get_alias(name=es.alias)  # the alias points at one concrete index
    mapping = es.client.indices.get_mapping(index=es.alias)[index]["mappings"]
    assert mapping["dynamic"] == "strict"
    fields = mapping["properties"]
    assert {name: fields[name]["type"] for name in ("tags", "category", "seller", "ptype", "price_key", "status")} == {
        name: "keyword" for name in ("tags", "category", "seller", "ptype", "price_key", "status")
    }
    assert (fields["price"]["type"], fields["created"]["type"], fields["sales"]["type"]) == (
        "double",
        "date",
        "integer",
    )
    assert fields["tags"]["fields"]["text"]["type"] == "text"
    doc = es.client.get(index=es.alias, id=made["market_hash"])["_source"]
    assert doc["price_key"] == f"{3 * 2**64:040d}" and doc["tags"] == ["a b"] and doc["status"] == "visible"


def test_an_unreachable_cluster_is_a_search_error_and_a_503(es: Any) -> None:
    from cpchain.market.search.es import ElasticsearchBackend

    down = ElasticsearchBackend([f"http://127.0.0.1:{free_port()}"], "pdash-down", timeout=2)
    for call in (lambda: down.search(SearchQuery(keyword="x")), lambda: down.reindex([])):
        with pytest.raises(SearchError) as failed:
            call()
        assert str(failed.value) == "search service unreachable"  # one line, no host or credentials
    es.client = down.client  # the market's own backend loses its cluster
    with pytest.raises(MarketError) as refused:
        api().search(keyword="pollen")
    assert (refused.value.status, refused.value.code) == (503, "search_unavailable")


def test_pages_past_the_result_window_give_the_total_without_error(es: Any) -> None:
    account, client = seller()
    client.publish(account, product(account.address, title="Lichen map"))
    assert es.search(SearchQuery(keyword="lichen", offset=10_000)).total == 1
    assert es.search(SearchQuery(keyword="lichen", offset=9_999, limit=20)).ids == []


def test_reindex_replaces_a_concrete_index_of_the_alias_name(es: Any) -> None:
    from cpchain.market.product.models import Product

    es.client.indices.create(index=es.alias, body={})  # e.g. auto-created by an old writer
    account, client = seller()
    made = client.publish(account, product(account.address, title="Fern atlas"))
    assert es.reindex(Product.objects.all()) == 1
    assert es.client.indices.exists_alias(name=es.alias)
    assert es.search(SearchQuery(keyword="fern")).ids == [Product.objects.get(market_hash=made["market_hash"]).pk]

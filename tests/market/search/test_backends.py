"""The same search suite for every backend: SQLite FTS5 (or MariaDB FULLTEXT in the MariaDB
run) and Elasticsearch. A catalog is published through the real API (signed listings), some
listings hidden, deleted or replaced, sales and ratings set as the chain indexer and reviews
would; every answer is compared with a plain-Python reading of the same rules."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from cpchain.market.search import SearchQuery
from tests.market.conftest import product
from tests.market.search.conftest import BACKENDS, active_backend, api, seller, wipe_market

BIG = 2**64  # wei amounts above 2**63 overflow a long and lose precision as doubles


@dataclass(frozen=True)
class Spec:
    key: str
    title: str
    description: str
    tags: tuple[str, ...]
    category: str
    ptype: str
    price: int
    seller: int
    sales: int = 0
    rating: tuple[float, int] = (0.0, 0)  # average, count
    fate: str = "visible"  # or hidden, deleted, replaced (by the spec that follows it)


SPECS = [
    Spec("berlin", "Hourly weather Berlin", "Temperature and wind readings", ("weather", "germany"), "climate",
         "file", 5 * 10**18, 0, sales=12, rating=(4.5, 2)),
    Spec("paris", "Daily weather Paris", "Rain gauges across the city", ("weather", "france"), "climate",
         "stream", 10**18, 0, sales=3, rating=(3.0, 1)),
    Spec("ticks", "Stock ticks", "Trades and quotes from Berlin, not weather data", ("finance",), "finance",
         "stream", 3 * 10**20, 1, sales=40, rating=(4.0, 5)),
    Spec("crops", "Crop yields", "Weather impact on the harvest: weather, weather", ("agriculture", "weather"),
         "agriculture", "file", 2 * 10**18, 1),
    Spec("traffic", "Berlin traffic counts", "Cars per hour on main roads", ("transport", "germany"), "transport",
         "file", 7 * 10**17, 2, sales=25, rating=(5.0, 1)),
    Spec("cafe", "Café Über prices", "Coffee prices in Zürich", ("food",), "food", "file", 9, 2, sales=1,
         rating=(2.0, 3)),
    Spec("solar", "Solar output", "solar solar solar installations", ("energy",), "energy", "stream",
         4 * 10**18, 0, sales=7, rating=(4.5, 4)),
    Spec("panels", "Rooftop panels", "A solar panel survey", ("energy", "survey"), "energy", "file", 4 * 10**18, 1,
         sales=7, rating=(4.5, 4)),
    Spec("big", "Bulk sensor archive", "Ten years of sensor frames", ("sensors",), "science", "file", BIG + 1, 2),
    Spec("bigger", "Bulk sensor mirror", "Ten years of sensor frames, mirrored", ("sensors",), "science", "file",
         3 * BIG, 0),
    Spec("hidden", "Hidden weather station", "Hidden readings", ("weather", "hiddenonly"), "climate", "file",
         10**18, 0, fate="hidden"),
    Spec("deleted", "Deleted weather station", "Deleted readings", ("weather", "deletedonly"), "climate", "file",
         10**18, 1, fate="deleted"),
    Spec("old", "Old weather station", "Superseded readings", ("weather", "oldonly"), "climate", "file", 10**18, 2,
         fate="replaced"),
    Spec("renewed", "Renewed weather station", "Current readings", ("weather",), "climate", "file", 10**18, 2),
]  # fmt: skip
VISIBLE = [s for s in SPECS if s.fate == "visible"]


def words(text: str) -> set[str]:
    """Words as every backend sees them: letters-and-digits runs, case and accents folded."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return set(re.findall(r"[^\W_]+", plain.lower()))


@dataclass
class Catalog:
    backend: Any
    sellers: list[str]
    pk: dict[str, int] = field(default_factory=dict)
    market_hash: dict[str, str] = field(default_factory=dict)

    def search(self, **params: Any) -> tuple[int, list[str]]:
        """(total, keys of the page) from the backend under test."""
        result = self.backend.search(SearchQuery(**params))
        key_of = {pk: key for key, pk in self.pk.items()}
        return result.total, [key_of.get(pk, f"unknown pk {pk}") for pk in result.ids]

    def expected(self, sort: str = "newest", **filters: Any) -> list[str]:
        """The keys the rules select, in `sort` order (relevance: newest, compare as sets)."""
        wanted = words(filters.get("keyword", ""))
        hits = [
            s
            for s in VISIBLE
            if wanted <= words(f"{s.title} {s.description} {' '.join(s.tags)}")
            and filters.get("category", s.category) == s.category
            and filters.get("ptype", s.ptype) == s.ptype
            and (not filters.get("tags") or set(filters["tags"]) & set(s.tags))
            and (not filters.get("sellers") or self.sellers[s.seller] in filters["sellers"])
            and filters.get("min_price", 0) <= s.price <= filters.get("max_price", 2**128)
        ]
        hits.sort(key=lambda s: -self.pk[s.key])  # newest first, the tie-break of every sort
        keys: dict[str, Any] = {
            "price": lambda s: s.price,
            "-price": lambda s: -s.price,
            "sales": lambda s: -s.sales,
            "rating": lambda s: (-s.rating[0], -s.rating[1]),
        }
        if sort in keys:
            hits.sort(key=keys[sort])  # stable: ties stay newest first
        return [s.key for s in hits]


def build_catalog(backend: Any) -> Catalog:
    from cpchain.market.product.models import Product

    accounts = [seller() for _ in range(3)]
    catalog = Catalog(backend, [account.address for account, _ in accounts])
    replaced = ""
    for spec in SPECS:
        account, client = accounts[spec.seller]
        desc = product(account.address, title=spec.title, description=spec.description, tags=list(spec.tags),
                       category=spec.category, ptype=spec.ptype, price=spec.price)  # fmt: skip
        if replaced:
            published = client.replace(account, catalog.market_hash[replaced], desc)
            replaced = ""
        else:
            published = client.publish(account, desc)
        catalog.market_hash[spec.key] = published["market_hash"]
        row = Product.objects.get(market_hash=published["market_hash"])
        catalog.pk[spec.key] = row.pk
        if spec.sales or spec.rating[1]:  # what the chain indexer and reviews write, then index
            average, count = spec.rating
            Product.objects.filter(pk=row.pk).update(
                sales=spec.sales, rating_avg=average, rating_count=count, rating_sum=round(average * count)
            )
            backend.index(row)
        if spec.fate == "hidden":
            client.post(f"/product/v1/products/{published['market_hash']}/hide/")
        elif spec.fate == "deleted":
            client.request("DELETE", f"/product/v1/products/{published['market_hash']}/")
        elif spec.fate == "replaced":
            replaced = spec.key
    return catalog


@pytest.fixture(scope="module", params=BACKENDS)
def catalog(request: pytest.FixtureRequest, market_django: str) -> Iterator[Catalog]:
    wipe_market()
    with active_backend(request.param, request) as backend:
        yield build_catalog(backend)
    wipe_market()


def test_the_catalog_is_what_the_api_says(catalog: Catalog) -> None:
    assert api().product(catalog.market_hash["old"])["status"] == "superseded"
    assert api().product(catalog.market_hash["renewed"])["price"] == str(10**18)
    assert catalog.search(sort="newest", limit=50) == (len(VISIBLE), catalog.expected())


@pytest.mark.parametrize(
    "keyword",
    ["weather", "WEATHER", "berlin", "weather berlin", "berlin weather", "germany", "cafe", "café", "UBER",
     "zurich", "solar", "panel", "panels", "sensor frames", "nosuchword", "weather nosuchword"],
)  # fmt: skip
def test_keyword_needs_every_word_in_title_description_or_tags(catalog: Catalog, keyword: str) -> None:
    total, keys = catalog.search(keyword=keyword, sort="newest", limit=50)
    assert keys == catalog.expected(keyword=keyword)
    assert total == len(keys)


def test_keyword_words_are_whole_words(catalog: Catalog) -> None:
    assert catalog.search(keyword="weath")[0] == 0
    assert catalog.search(keyword="panel")[1] == ["panels"]  # "panels" in the title is another word


FILTERS: list[dict[str, Any]] = [
    {"category": "climate"},
    {"category": "energy"},
    {"category": "nosuch"},
    {"ptype": "stream"},
    {"ptype": "file"},
    {"tags": ("germany",)},
    {"tags": ("france", "finance")},
    {"tags": ("nosuch",)},
    {"sellers": 1},
    {"sellers": (0, 2)},
    {"min_price": 10**18},
    {"max_price": 10**18},
    {"min_price": 10**18, "max_price": 4 * 10**18},
    {"min_price": 10},
]


def resolve(catalog: Catalog, filters: dict[str, Any]) -> dict[str, Any]:
    """Seller indexes to addresses, prices to Decimals, as the view builds a SearchQuery."""
    out = dict(filters)
    if "sellers" in out:
        indexes = out["sellers"] if isinstance(out["sellers"], tuple) else (out["sellers"],)
        out["sellers"] = tuple(catalog.sellers[i] for i in indexes)
    return out


def as_query(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: Decimal(v) if k.endswith("_price") else v for k, v in filters.items()}


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_each_filter_alone(catalog: Catalog, filters: dict[str, Any]) -> None:
    filters = resolve(catalog, filters)
    total, keys = catalog.search(sort="newest", limit=50, **as_query(filters))
    assert keys == catalog.expected(**filters)
    assert total == len(keys)


COMBINED: list[dict[str, Any]] = [
    {"keyword": "weather", "category": "climate"},
    {"keyword": "weather", "ptype": "file", "tags": ("weather",)},
    {"keyword": "berlin", "sellers": (0, 1), "max_price": 10**19},
    {"category": "energy", "ptype": "file", "min_price": 10**18},
    {"keyword": "weather", "tags": ("germany", "agriculture"), "sellers": (0, 1), "ptype": "file"},
    {"keyword": "sensor", "category": "science", "min_price": BIG},
]


@pytest.mark.parametrize("filters", COMBINED, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_filters_combined(catalog: Catalog, filters: dict[str, Any]) -> None:
    filters = resolve(catalog, filters)
    total, keys = catalog.search(sort="newest", limit=50, **as_query(filters))
    assert keys == catalog.expected(**filters)
    assert total == len(keys) > 0  # each combination is chosen to match something
    assert catalog.search(keyword="solar", category="climate") == (0, [])


@pytest.mark.parametrize("sort", ["newest", "price", "-price", "sales", "rating"])
@pytest.mark.parametrize("filters", [{}, {"keyword": "weather"}, {"category": "energy"}, {"min_price": 10**18}])
def test_each_sort(catalog: Catalog, sort: str, filters: dict[str, Any]) -> None:
    assert catalog.search(sort=sort, limit=50, **as_query(filters))[1] == catalog.expected(sort, **filters)


def test_relevance_without_keyword_is_newest(catalog: Catalog) -> None:
    assert catalog.search(sort="relevance", limit=50)[1] == catalog.expected()
    assert catalog.search(sort="relevance", keyword="((", limit=50)[1] == catalog.expected()


def test_relevance_ranks_more_occurrences_first(catalog: Catalog) -> None:
    total, keys = catalog.search(keyword="solar", sort="relevance")
    assert (total, keys) == (2, ["solar", "panels"])  # four times against once
    total, keys = catalog.search(keyword="weather", sort="relevance", limit=50)
    assert total == len(keys) == 5 and set(keys) == set(catalog.expected(keyword="weather"))


def test_relevance_weights_the_title_above_the_description(catalog: Catalog, vendor: str) -> None:
    if vendor == "mysql" and catalog.backend.name == "db":
        pytest.skip("InnoDB ranks by term frequency over all indexed columns; it has no column weights")
    assert catalog.search(keyword="berlin", sort="relevance")[1][-1] == "ticks"  # Berlin only in its description


@pytest.mark.parametrize("sort", ["relevance", "newest", "price", "-price", "sales", "rating"])
def test_pages_cover_the_results_once_with_the_total(catalog: Catalog, sort: str) -> None:
    whole_total, whole = catalog.search(sort=sort, keyword="weather", limit=50)
    pages = [catalog.search(sort=sort, keyword="weather", offset=offset, limit=2) for offset in range(0, 6, 2)]
    assert [total for total, _ in pages] == [whole_total] * 3
    assert [key for _, page in pages for key in page] == whole
    assert [len(page) for _, page in pages] == [2, 2, 1]
    assert catalog.search(sort=sort, keyword="weather", offset=40, limit=2) == (whole_total, [])


def test_hidden_deleted_and_superseded_are_never_found(catalog: Catalog) -> None:
    gone = {"hidden", "deleted", "old"}
    for keyword in ("hiddenonly", "deletedonly", "oldonly", "station", "readings"):
        total, keys = catalog.search(keyword=keyword, limit=50)
        assert not gone & set(keys) and total == len(keys)
    assert catalog.search(keyword="station")[1] == ["renewed"]
    for filters in ({}, {"category": "climate"}, {"tags": ("weather",)}, {"sellers": tuple(catalog.sellers)}):
        for sort in ("newest", "price", "sales", "rating", "relevance"):
            total, keys = catalog.search(sort=sort, limit=50, **filters)
            assert not gone & set(keys) and total == len(keys)


def test_prices_above_2_63_filter_and_sort_exactly(catalog: Catalog) -> None:
    """Two listings one wei apart above 2**64: a double cannot tell them apart."""
    account, client = seller()
    made = [
        client.publish(account, product(account.address, title=f"Edge lot {n}", tags=["edgelot"], price=BIG + n))
        for n in (1, 2)
    ]
    try:
        from cpchain.market.product.models import Product

        cheap, dear = (Product.objects.get(market_hash=p["market_hash"]).pk for p in made)

        def ids(**params: Any) -> list[int]:
            return list(catalog.backend.search(SearchQuery(keyword="edge lot", **params)).ids)

        assert ids(sort="price") == [cheap, dear]
        assert ids(sort="-price") == [dear, cheap]
        assert ids(min_price=Decimal(BIG + 2)) == [dear]
        assert ids(max_price=Decimal(BIG + 1)) == [cheap]
        # Bounds between two whole amounts of wei (the API takes any number).
        assert ids(min_price=Decimal(BIG + 1) + Decimal("0.5")) == [dear]
        assert ids(max_price=Decimal(BIG + 2) - Decimal("0.5")) == [cheap]
        assert ids(min_price=Decimal(BIG + 1) + Decimal("0.25"), max_price=Decimal(BIG + 1) + Decimal("0.75")) == []
        assert api().product(made[1]["market_hash"])["price"] == str(BIG + 2)
    finally:
        for p in made:
            client.request("DELETE", f"/product/v1/products/{p['market_hash']}/")
    assert catalog.search(keyword="edge lot") == (0, [])


PLAN_FILTERS: list[dict[str, Any]] = [
    {"keyword": "weather"},
    {"category": "energy", "min_price": 10**18},
    {"keyword": "sensor", "min_price": BIG},
    {"tags": ("germany", "weather"), "max_price": 10**19},
    {"ptype": "file"},
    {"keyword": "weather", "ptype": "file"},
    {"keyword": "sensor frames", "ptype": "file", "max_price": 3 * BIG},
]


def assert_every_sort_matches(catalog: Catalog, filters: dict[str, Any], offsets: tuple[int, ...]) -> None:
    """Each sort's pages at `offsets` and its total, and relevance's set of results, are the
    catalog's expected answers (whichever query plan the backend was forced to use)."""
    for sort in ("newest", "price", "-price", "sales", "rating"):
        want = catalog.expected(sort, **filters)
        for offset in offsets:
            assert catalog.search(sort=sort, offset=offset, limit=2, **as_query(filters)) == (
                len(want),
                want[offset : offset + 2],
            ), (filters, sort, offset)
    relevance = catalog.search(sort="relevance", limit=50, **as_query(filters))
    assert (relevance[0], set(relevance[1])) == (len(want), set(want))


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["walk-indexes", "join-matches"])
def test_both_sqlite_plans_give_the_same_answers(
    catalog: Catalog, vendor: str, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many matches SQLite reads product indexes in sort order, with few it joins the
    matches; the catalog is small, so force each plan in turn."""
    if vendor != "sqlite" or catalog.backend.name != "db":
        pytest.skip("a choice of the SQLite database backend")
    from cpchain.market.search import db

    monkeypatch.setattr(db, "WALK_MIN_MATCHES", threshold)
    for filters in PLAN_FILTERS:
        assert_every_sort_matches(catalog, filters, offsets=(0, 2))


MYSQL_PLAN_FILTERS: list[dict[str, Any]] = [
    {"keyword": "weather", "category": "climate"},
    {"keyword": "weather", "ptype": "file", "tags": ("weather",)},
    {"keyword": "weather", "tags": ("germany", "france")},
    {"keyword": "berlin", "sellers": (0, 1), "max_price": 10**19},
    {"keyword": "sensor", "min_price": BIG},
    {"keyword": "weather readings", "sellers": (2,)},
    {"keyword": "solar", "category": "climate"},
]


@pytest.mark.parametrize("threshold", [-1, 10**12], ids=["fulltext-first", "filter-first"])
def test_both_mysql_plans_give_the_same_answers(
    catalog: Catalog, vendor: str, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a selective filter MySQL reads the filter's rows and looks their relevance up, else
    it reads the full-text matches' rows; the catalog is small, so force each plan in turn. Every
    sort, pages inside and past the end, totals and relevance scores must be the same."""
    if vendor != "mysql" or catalog.backend.name != "db":
        pytest.skip("a choice of the MySQL database backend")
    from cpchain.market.search import db

    monkeypatch.setattr(db, "FILTER_FIRST_ROWS", threshold)
    for filters in MYSQL_PLAN_FILTERS:
        assert_every_sort_matches(catalog, resolve(catalog, filters), offsets=(0, 2, 40))
    total, keys = catalog.search(keyword="solar", sort="relevance", sellers=tuple(catalog.sellers))
    assert (total, keys) == (2, ["solar", "panels"])  # the scores order the page in both plans


def test_mysql_pages_past_the_end_keep_the_total(catalog: Catalog, vendor: str) -> None:
    """Near the start a page is read with the rows before it, further on alone: past the end
    both still report the total, from the same statement or from a count."""
    if vendor != "mysql" or catalog.backend.name != "db":
        pytest.skip("the MySQL database backend's page reads")
    from cpchain.market.search import db

    want = catalog.expected(keyword="weather")
    for offset in (len(want), db.PAGE_PREFIX_ROWS - 1, db.PAGE_PREFIX_ROWS + 5):
        assert catalog.search(keyword="weather", sort="newest", offset=offset, limit=2) == (len(want), [])
    assert catalog.search(keyword="weather", sort="newest", offset=len(want) - 1, limit=2) == (
        len(want),
        want[-1:],
    )

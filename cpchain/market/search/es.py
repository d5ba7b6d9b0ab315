"""Product search in Elasticsearch or OpenSearch, used when `market.es_hosts` is set.

Client: elasticsearch-py 7.13.4, pinned. It is the last release without the "product check"
(7.14 and later refuse any server that does not identify itself as Elasticsearch, so they
cannot talk to OpenSearch), and with typeless requests (no mapping types) it speaks the plain
JSON REST API that Elasticsearch 7 and 8 and OpenSearch 1, 2 and 3 all serve. The 9.x client
sends a compatibility media type that OpenSearch rejects, and opensearch-py follows
OpenSearch only. For an Elasticsearch 8 with security on, give es_hosts as
https://user:password@host:9200 (certificates are verified).

Layout: `es_index` is an alias to one concrete index (`<es_index>-<stamp>`) with an explicit,
strict mapping, so a reindex builds a fresh index and switches the alias atomically. Document
id = market hash. Only visible products are in the index: index() deletes the document of a
hidden, deleted or superseded product. Prices are wei up to 2**128, taken from the signed
listing: `price` (double) for aggregations, `price_key` (the amount zero-padded to 40
digits, a keyword) for exact sorting and range filters beyond 2**63, where doubles round.

Refresh: writes use refresh=wait_for, so a product is searchable when the publish request
returns, without forcing a new segment per write (bursts share one refresh; the cost is up to
one refresh_interval, 1 s by default, of publish latency; osmem-server, which refreshes at
once, measured 4.9 ms per write against 4.4 ms without refresh and 5.2 ms with
refresh=true). Failures raise SearchError with one line that names no host (the views
answer 503 with it).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from elasticsearch import Elasticsearch, helpers
from elasticsearch.exceptions import ConnectionError as EsConnectionError
from elasticsearch.exceptions import ConnectionTimeout, ElasticsearchException, RequestError, TransportError

from cpchain.market.product.models import Product, Visibility
from cpchain.market.product.serializers import split_tags
from cpchain.market.search.base import SearchError, SearchQuery, SearchResult
from cpchain.market.search.db import keyword_terms

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH = "wait_for"
MAX_RESULT_WINDOW = 10_000  # Elasticsearch's default index.max_result_window
PRICE_DIGITS = 40
TEXT_FIELDS = ["title^5", "description", "tags.text^3"]

_FOLDED = {"type": "text", "analyzer": "folded"}
SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,  # 100k listings are small; one shard scores consistently
    "auto_expand_replicas": "0-1",
    "analysis": {
        # Words are runs of letters and digits, case- and accent-insensitive: what FTS5's
        # unicode61 and the database backend's keyword_terms() produce, so the backends agree.
        "char_filter": {"words_only": {"type": "pattern_replace", "pattern": "[^\\p{L}\\p{N}]+", "replacement": " "}},
        "analyzer": {
            "folded": {
                "type": "custom",
                "char_filter": ["words_only"],
                "tokenizer": "whitespace",
                "filter": ["lowercase", "asciifolding"],
            }
        },
    },
}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "pk": {"type": "long"},
        "market_hash": {"type": "keyword"},
        "title": _FOLDED,
        "description": _FOLDED,
        "tags": {"type": "keyword", "fields": {"text": _FOLDED}},
        "category": {"type": "keyword"},
        "seller": {"type": "keyword"},
        "ptype": {"type": "keyword"},
        "price": {"type": "double"},
        "price_key": {"type": "keyword"},
        "created": {"type": "date"},
        "sales": {"type": "integer"},
        "rating": {"type": "float"},
        "rating_count": {"type": "integer"},
        "status": {"type": "keyword"},
    },
}

# Every sort ends with pk desc (ties go to the newer product); "newest" is the highest pk, the
# most recently published, as in the database backend.
_SORTS: dict[str, list[dict[str, str]]] = {
    "newest": [],
    "price": [{"price_key": "asc"}],
    "-price": [{"price_key": "desc"}],
    "sales": [{"sales": "desc"}],
    "rating": [{"rating": "desc"}, {"rating_count": "desc"}],
}


def price_key(wei: Any) -> str:
    return f"{int(wei):0{PRICE_DIGITS}d}"


def signed_price(p: Product) -> int:
    """The price from the signed listing, its source (the column, a WeiField, is exact too and
    serves when the listing cannot be read)."""
    try:
        price = json.loads(p.canonical)["price"]
    except (ValueError, KeyError, TypeError):
        price = None
    return price if isinstance(price, int) and not isinstance(price, bool) else int(p.price)


def document(p: Product) -> dict[str, Any]:
    price = signed_price(p)
    return {
        "pk": p.pk,
        "market_hash": p.market_hash,
        "title": p.title,
        "description": p.description,
        "tags": split_tags(p.tags_text),
        "category": p.category,
        "seller": p.seller_address,
        "ptype": p.ptype,
        "price": float(price),
        "price_key": price_key(price),
        "created": p.created.isoformat(),
        "sales": p.sales,
        "rating": p.rating_avg,
        "rating_count": p.rating_count,
        "status": Visibility(p.status).label,
    }


def _failure(exc: ElasticsearchException) -> SearchError:
    if isinstance(exc, helpers.BulkIndexError):
        first = exc.errors[0] if exc.errors else {}
        reason = f"bulk indexing failed for {len(exc.errors)} documents (first: {first})"
    elif isinstance(exc, ConnectionTimeout):
        reason = "search service timed out"
    elif isinstance(exc, EsConnectionError):
        reason = "search service unreachable"
    elif isinstance(exc, TransportError):
        reason = f"search service error (HTTP {exc.status_code}: {exc.error})"
    else:
        reason = f"search service error ({type(exc).__name__})"
    log.warning("%s: %s", reason, " ".join(str(exc).split()))
    return SearchError(reason)


class ElasticsearchBackend:
    name = "elasticsearch"

    def __init__(self, hosts: list[str], index: str, *, timeout: float = 5.0) -> None:
        # One quick retry at most: a down cluster must turn into a 503 fast, not hang workers.
        self.client = Elasticsearch(hosts, timeout=timeout, max_retries=1, retry_on_timeout=False)
        self.alias = index
        self._index_ready = False

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ElasticsearchException as exc:
            raise _failure(exc) from None

    # -- index management ----------------------------------------------------------------------
    def _create_index(self, name: str, *, with_alias: bool) -> None:
        body: dict[str, Any] = {"settings": SETTINGS, "mappings": MAPPING}
        if with_alias:
            body["aliases"] = {self.alias: {}}
        try:
            self.client.indices.create(index=name, body=body)
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":  # another worker was first
                raise

    def _ensure_index(self) -> None:
        if self._index_ready:
            return
        if not self._call(self.client.indices.exists, index=self.alias):
            self._call(self._create_index, f"{self.alias}-initial", with_alias=True)
        self._index_ready = True

    def _switch_alias(self, new: str) -> None:
        """Point the alias at `new` in one atomic step and drop the indices it pointed at."""
        indices = self.client.indices
        actions: list[dict[str, Any]] = []
        old: list[str] = []
        if indices.exists_alias(name=self.alias):
            old = list(indices.get_alias(name=self.alias))
            actions += [{"remove": {"index": name, "alias": self.alias}} for name in old]
        elif indices.exists(index=self.alias):
            actions.append({"remove_index": {"index": self.alias}})  # a concrete index of that name
        actions.append({"add": {"index": new, "alias": self.alias}})
        indices.update_aliases(body={"actions": actions})
        for name in old:
            indices.delete(index=name, ignore=[404])
        self._index_ready = True

    # -- writes --------------------------------------------------------------------------------
    def index(self, product: Product) -> None:
        """Index the product as it is in the database now (the caller's copy may be stale)."""
        current = Product.objects.filter(pk=product.pk).first()
        if current is None or current.status != Visibility.VISIBLE:
            self.remove(product)
            return
        self._ensure_index()
        self._call(self.client.index, index=self.alias, id=current.market_hash, body=document(current), refresh=REFRESH)

    def remove(self, product: Product) -> None:
        self._call(self.client.delete, index=self.alias, id=product.market_hash, refresh=REFRESH, ignore=[404])

    def reindex(self, products: Iterable[Product]) -> int:
        """Bulk-load `products` (each written once) into a fresh index, switch the alias to it,
        then reconcile with the database for writes that landed in the old index meanwhile."""
        new = f"{self.alias}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
        self._call(self._create_index, new, with_alias=False)
        actions = (
            {"_index": new, "_id": p.market_hash, "_source": document(p)}
            for p in products
            if p.status == Visibility.VISIBLE
        )
        try:
            count, _ = helpers.bulk(self.client, actions, chunk_size=1000, request_timeout=120)
            self.client.indices.refresh(index=new)
            self._switch_alias(new)
        except ElasticsearchException as exc:
            self.client.indices.delete(index=new, ignore=[404])
            raise _failure(exc) from None
        return int(count) + self._reconcile()

    def _reconcile(self) -> int:
        """Index visible products missing from the index and delete documents of products that
        are no longer visible; returns how many documents were added."""
        hits = self._call(lambda: list(helpers.scan(self.client, {"_source": False}, index=self.alias)))
        indexed = {hit["_id"] for hit in hits}
        visible = set(Product.objects.filter(status=Visibility.VISIBLE).values_list("market_hash", flat=True))
        missing, stale = visible - indexed, indexed - visible

        def actions() -> Iterator[dict[str, Any]]:
            for p in Product.objects.filter(market_hash__in=missing, status=Visibility.VISIBLE):
                yield {"_index": self.alias, "_id": p.market_hash, "_source": document(p)}
            for market_hash in stale:
                yield {"_op_type": "delete", "_index": self.alias, "_id": market_hash}

        if missing or stale:
            self._call(helpers.bulk, self.client, actions(), refresh=REFRESH, raise_on_error=False)
        return len(missing)

    # -- search --------------------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchResult:
        body = self._query(query)
        if query.offset >= MAX_RESULT_WINDOW:
            body["size"] = 0  # past Elasticsearch's result window: the count, no page
        else:
            body.update({"from": query.offset, "size": min(query.limit, MAX_RESULT_WINDOW - query.offset)})
        reply = self._call(self.client.search, index=self.alias, body=body, ignore_unavailable=True)
        hits = reply["hits"]
        return SearchResult(int(hits["total"]["value"]), [int(h["_source"]["pk"]) for h in hits["hits"]])

    def _query(self, query: SearchQuery) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [{"term": {"status": Visibility.VISIBLE.label}}]
        for field, value in (("category", query.category), ("ptype", query.ptype)):
            if value:
                filters.append({"term": {field: value}})
        for field, values in (("tags", query.tags), ("seller", query.sellers)):
            if values:
                filters.append({"terms": {field: list(values)}})
        bounds = {
            op: price_key(v)
            for op, v in (("gte", query.whole_min_price), ("lte", query.whole_max_price))
            if v is not None
        }
        if bounds:
            filters.append({"range": {"price_key": bounds}})
        must: list[dict[str, Any]] = []
        terms = keyword_terms(query.keyword)
        if terms:
            # A match query has no operator syntax; it analyses the words like the documents.
            must.append(
                {
                    "multi_match": {
                        "query": " ".join(terms),
                        "type": "cross_fields",
                        "operator": "and",
                        "fields": TEXT_FIELDS,
                    }
                }
            )
        if query.sort == "relevance" and must:
            sort: list[Any] = [{"_score": "desc"}]
        else:
            sort = list(_SORTS.get(query.sort, _SORTS["newest"]))
        return {
            "query": {"bool": {"must": must, "filter": filters}},
            "sort": [*sort, {"pk": "desc"}],
            "track_total_hits": True,
            "_source": ["pk"],
        }

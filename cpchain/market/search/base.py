"""The search interface shared by the database and Elasticsearch backends."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cpchain.market.product.models import Product

SORTS = ("relevance", "newest", "price", "-price", "sales", "rating")


class SearchError(Exception):
    """The search service failed (e.g. Elasticsearch is down); the message is one line."""


@dataclass(frozen=True)
class SearchQuery:
    """Filters are ANDed; `tags` and `sellers` match any of their values."""

    keyword: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    sellers: tuple[str, ...] = ()  # checksum addresses
    ptype: str = ""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    sort: str = "relevance"  # one of SORTS; relevance without a keyword means newest
    offset: int = 0
    limit: int = 20

    @property
    def whole_min_price(self) -> int | None:
        """`min_price` rounded up: prices are whole wei, so a fractional bound means the next one."""
        return None if self.min_price is None else math.ceil(self.min_price)

    @property
    def whole_max_price(self) -> int | None:
        """`max_price` rounded down, for the same reason."""
        return None if self.max_price is None else math.floor(self.max_price)


@dataclass(frozen=True)
class SearchResult:
    total: int
    ids: list[int]  # Product primary keys, in result order


class SearchBackend(Protocol):
    name: str

    def search(self, query: SearchQuery) -> SearchResult: ...

    def index(self, product: Product) -> None:
        """Add or refresh one product (hidden or deleted ones are removed from the index)."""

    def remove(self, product: Product) -> None: ...

    def reindex(self, products: Iterable[Product]) -> int:
        """Rebuild the whole index from `products`; returns how many were indexed."""


@cache
def get_backend() -> SearchBackend:
    from django.conf import settings

    if settings.PDASH["ES_HOSTS"]:
        from cpchain.market.search.es import ElasticsearchBackend

        return ElasticsearchBackend(settings.PDASH["ES_HOSTS"], settings.PDASH["ES_INDEX"])
    from cpchain.market.search.db import DatabaseBackend

    return DatabaseBackend()

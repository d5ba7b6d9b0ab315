"""Product search as a backend interface: the database (SQLite FTS5 / MySQL FULLTEXT, the
default) or Elasticsearch (when `market.es_hosts` is set).

Owns turning a SearchQuery into an ordered page of product ids and keeping its index in
step with every product write; must not decide visibility rules beyond "only visible
products are found" (views decide who sees hidden ones).
"""

from cpchain.market.search.base import SORTS, SearchBackend, SearchError, SearchQuery, SearchResult, get_backend

__all__ = ["SORTS", "SearchBackend", "SearchError", "SearchQuery", "SearchResult", "get_backend"]

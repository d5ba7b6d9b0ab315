"""Search in the market's own database: SQLite FTS5 or an InnoDB FULLTEXT index.

The embedded default: no extra service to run, and the index never lags behind the rows.

- SQLite: `product_fts`, an external-content FTS5 table whose content is the view
  `product_fts_source` (visible products only). Triggers on the product table keep it in step
  inside the writing transaction, so every write updates it: `save()`, `QuerySet.update()`
  (hide, show, supersede), deletes, the admin and raw SQL alike. Besides the text columns it
  indexes a `facets` column of exact-value tokens (category, type, seller, each tag), so the
  filters run inside FTS5 and counts come from the index alone. Ranking is bm25 with title
  and tags weighted above the description.
- MySQL/MariaDB: the FULLTEXT index `product_fulltext` on (title, description, tags_text),
  built with the default parser (word semantics like FTS5, on MySQL and on MariaDB, which has
  no ngram parser) and without stopwords, maintained by InnoDB at commit. Ranking is the MATCH
  score. Words shorter than the server's innodb_ft_min_token_size are not in that index; they
  are matched with a word-boundary REGEXP instead, so results do not depend on server settings.
  InnoDB reads the product row of every match (several µs each), so on large catalogs common
  words cost tens of milliseconds; Elasticsearch is the backend for those.

User keywords never reach either engine's query syntax: they are reduced to words (runs of
letters and digits), every word must match, and all values travel as query parameters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from cpchain.market.product.models import Product, ProductTag, Visibility
from cpchain.market.search.base import SearchQuery, SearchResult

FTS_TABLE = "product_fts"
FTS_SOURCE = "product_fts_source"
FULLTEXT_INDEX = "product_fulltext"
TEXT_COLUMNS = ("title", "description", "tags_text")
# bm25 weights of the FTS5 columns: title, description, tags_text, facets.
BM25 = f"bm25({FTS_TABLE}, 5.0, 1.0, 3.0, 0.0)"
MAX_TERMS = 16
# From this many full-text matches on, a page read from a product index in sort order beats
# one row lookup per match (100,000 products: 3 ms against 15-25 ms at 10,000-20,000 matches);
# a count over a price range, which cannot stop early, from a few thousand on.
WALK_MIN_MATCHES = 1000
WALK_COUNT_MIN_MATCHES = 5000
VISIBLE = int(Visibility.VISIBLE)

_WORD = re.compile(r"[^\W_]+")

# ORDER BY per sort; every order ends with p.id DESC, so ties go to the newer product and pages
# are stable. "newest" is the most recently published: the highest id.
_ORDER = {
    "newest": "p.id DESC",
    "price": "p.price ASC, p.id DESC",
    "-price": "p.price DESC, p.id DESC",
    "sales": "p.sales DESC, p.id DESC",
    "rating": "p.rating_avg DESC, p.rating_count DESC, p.id DESC",
}


def keyword_terms(keyword: str) -> list[str]:
    """The distinct words of a keyword string, lower-cased, at most MAX_TERMS.

    A word is a run of letters and digits (NFC), which is how FTS5's unicode61 and InnoDB's
    default parser split text too; quotes, operators and brackets just separate words.
    """
    terms: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFC", keyword).lower()):
        if word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def facet_token(kind: str, value: str) -> str:
    """The FTS5 token standing for an exact category (c), type (p) or seller (s): the kind and
    the hex of the UTF-8 value, one alphanumeric word whatever the value contains."""
    return kind + value.encode().hex()


def _product_table() -> str:
    return str(Product._meta.db_table)


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"


class _Where:
    """AND-ed SQL conditions and their parameters."""

    def __init__(self, condition: str = "", *params: Any) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []
        if condition:
            self.add(condition, *params)

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def extend(self, other: _Where) -> None:
        self.conditions += other.conditions
        self.params += other.params

    def __str__(self) -> str:
        return " AND ".join(self.conditions) or "1 = 1"


def _tagged(column: str, tags: tuple[str, ...]) -> _Where:
    table = ProductTag._meta.db_table
    return _Where(f"{column} IN (SELECT t.product_id FROM {table} t WHERE t.tag IN {_in(tags)})", *tags)


def _priced(query: SearchQuery, connection: BaseDatabaseWrapper) -> _Where:
    where, field = _Where(), Product._meta.get_field("price")
    if query.min_price is not None:
        where.add("p.price >= %s", field.get_db_prep_value(query.min_price, connection))
    if query.max_price is not None:
        where.add("p.price <= %s", field.get_db_prep_value(query.max_price, connection))
    return where


def _attributes(query: SearchQuery) -> _Where:
    """The exact-match filters, as conditions on the product table."""
    where = _Where()
    if query.category:
        where.add("p.category = %s", query.category)
    if query.ptype:
        where.add("p.ptype = %s", query.ptype)
    if query.sellers:
        where.add(f"p.seller_address IN {_in(query.sellers)}", *query.sellers)
    if query.tags:
        where.extend(_tagged("p.id", query.tags))
    return where


def _count(cursor: Any, sql: str, params: list[Any]) -> int:
    cursor.execute(sql, params)
    return int(cursor.fetchone()[0])


def _page(cursor: Any, sql: str, params: list[Any], query: SearchQuery) -> list[int]:
    cursor.execute(f"{sql} LIMIT %s OFFSET %s", [*params, query.limit, query.offset])
    return [int(row[0]) for row in cursor.fetchall()]


class DatabaseBackend:
    """SearchBackend over the product table; `using` pins a database alias (else the router's).

    A search is a count and a page (one windowed statement on MySQL when there is a keyword),
    each shaped so its work follows the number of matches rather than the size of the catalog.
    """

    name = "db"

    def __init__(self, using: str | None = None) -> None:
        self.using = using
        self._token_limits: dict[str, tuple[int, int]] = {}

    def _connection(self) -> BaseDatabaseWrapper:
        return connections[self.using or router.db_for_read(Product)]

    def search(self, query: SearchQuery) -> SearchResult:
        connection = self._connection()
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                return self._search_sqlite(cursor, query)
            return self._search_mysql(cursor, query)

    # -- SQLite: FTS5 ----------------------------------------------------------------------------
    def _search_sqlite(self, cursor: Any, query: SearchQuery) -> SearchResult:
        """The match runs inside FTS5 as far as it can: words in the text columns AND facet
        tokens for category, type, sellers and tags, so those filters are merges of id lists
        and the count is read from the index alone. Product rows are read only for a price
        filter or a sort by a product column, and then from the side that is cheaper."""
        terms = keyword_terms(query.keyword)
        parts = []
        if terms:
            words = " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)
            parts.append(f"{{{' '.join(TEXT_COLUMNS)}}} : ({words})")
        for kind, value in (("c", query.category), ("p", query.ptype)):
            if value:
                parts.append(f'facets : "{facet_token(kind, value)}"')
        for kind, values in (("s", tuple(s.lower() for s in query.sellers)), ("t", query.tags)):
            if values:
                parts.append("facets : (" + " OR ".join(f'"{facet_token(kind, v)}"' for v in values) + ")")
        if not parts:
            return self._search_table(cursor, query)
        fts = _Where(f"{FTS_TABLE} MATCH %s", " AND ".join(parts))
        matches = _count(cursor, f"SELECT COUNT(*) FROM {FTS_TABLE} WHERE {fts}", fts.params)
        priced = _priced(query, cursor.db)
        # Two ways to the product rows. Join: the matches are the outer loop (CROSS JOIN fixes
        # the order; left to itself SQLite may walk a product index and re-run the MATCH per
        # row), one row lookup per match. Walk: a (status, price|sales|rating) index in order,
        # keeping ids found among the matches (`+` keeps SQLite from looking the ids up
        # instead); a page stops early, so it wins when the matches are many.
        joined = _Where("p.status = %s", VISIBLE)
        joined.extend(priced)
        walked = _Where(f"+p.id IN (SELECT rowid FROM {FTS_TABLE} WHERE {fts})", *fts.params)
        walked.extend(joined)
        joined.extend(fts)
        join_from = f"{FTS_TABLE} CROSS JOIN {_product_table()} p ON p.id = {FTS_TABLE}.rowid"
        walk_from = f"{_product_table()} p"
        total = matches
        if priced.conditions:
            rows, where = (walk_from, walked) if matches >= WALK_COUNT_MIN_MATCHES else (join_from, joined)
            total = _count(cursor, f"SELECT COUNT(*) FROM {rows} WHERE {where}", where.params)
        if query.offset >= total:
            return SearchResult(total, [])
        sort = "newest" if query.sort == "relevance" and not terms else query.sort
        if not priced.conditions and sort in ("relevance", "newest"):
            # FTS5 alone. It reads its id lists in rowid order, so newest-first pages stop early.
            order = f"{BM25}, rowid DESC" if sort == "relevance" else "rowid DESC"
            sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {fts} ORDER BY {order}"
            return SearchResult(total, _page(cursor, sql, fts.params, query))
        if sort in ("relevance", "newest"):  # bm25() needs the FTS5 cursor; rowid order stops early
            rows, where = join_from, joined
            order = f"{BM25}, p.id DESC" if sort == "relevance" else f"{FTS_TABLE}.rowid DESC"
        else:
            rows, where = (walk_from, walked) if matches >= WALK_MIN_MATCHES else (join_from, joined)
            order = _ORDER[sort]
        sql = f"SELECT p.id FROM {rows} WHERE {where} ORDER BY {order}"
        return SearchResult(total, _page(cursor, sql, where.params, query))

    # -- MySQL/MariaDB: InnoDB FULLTEXT -----------------------------------------------------------
    def _search_mysql(self, cursor: Any, query: SearchQuery) -> SearchResult:
        terms = keyword_terms(query.keyword)
        low, high = self._mysql_token_limits(cursor)
        if any(len(t) > high for t in terms):
            return SearchResult(0, [])  # longer than any indexed word: nothing can match
        where, score = _Where(), None
        indexed = [t for t in terms if len(t) >= low]
        if indexed:
            score = _Where(
                f"MATCH(p.{', p.'.join(TEXT_COLUMNS)}) AGAINST (%s IN BOOLEAN MODE)", " ".join("+" + t for t in indexed)
            )
            where.extend(score)
        text = f"CONCAT_WS(' ', p.{', p.'.join(TEXT_COLUMNS)})"
        for short in (t for t in terms if len(t) < low):
            where.add(f"{text} REGEXP %s", rf"(?i)(?<![\p{{L}}\p{{N}}]){re.escape(short)}(?![\p{{L}}\p{{N}}])")
        return self._search_table(cursor, query, where, score)

    def _mysql_token_limits(self, cursor: Any) -> tuple[int, int]:
        alias = cursor.db.alias
        if alias not in self._token_limits:
            cursor.execute("SELECT @@innodb_ft_min_token_size, @@innodb_ft_max_token_size")
            low, high = cursor.fetchone()
            self._token_limits[alias] = (int(low), int(high))
        return self._token_limits[alias]

    # -- shared: the product table ------------------------------------------------------------------
    def _search_table(
        self, cursor: Any, query: SearchQuery, match: _Where | None = None, score: _Where | None = None
    ) -> SearchResult:
        """Search the product table's own columns and indexes, plus `match`: MySQL's keyword
        conditions, with `score` its relevance."""
        filters = _Where()
        if match:
            filters.extend(match)
        filters.extend(_attributes(query))
        filters.extend(_priced(query, cursor.db))
        # On SQLite `+` hides the status column from the planner, so a selective index is used
        # rather than the (status, ...) ones that every visible product matches.
        status = "+p.status = %s" if filters.conditions and cursor.db.vendor == "sqlite" else "p.status = %s"
        where = _Where(status, VISIBLE)
        where.extend(filters)
        source = f"{_product_table()} p WHERE {where}"
        if query.sort == "relevance" and score:
            order, params = f"{score} DESC, p.id DESC", [*where.params, *score.params]
        else:
            order, params = _ORDER.get(query.sort, _ORDER["newest"]), where.params
        if match and match.conditions:
            # InnoDB reads every matching row whatever the query (several µs each): count them
            # in the same pass as the page.
            cursor.execute(
                f"SELECT p.id, COUNT(*) OVER () FROM {source} ORDER BY {order} LIMIT %s OFFSET %s",
                [*params, query.limit, query.offset],
            )
            rows = cursor.fetchall()
            if rows or query.offset == 0:
                return SearchResult(int(rows[0][1]) if rows else 0, [int(r[0]) for r in rows])
            return SearchResult(_count(cursor, f"SELECT COUNT(*) FROM {source}", where.params), [])
        # Without one the page comes from an index in sort order, the count from another; with
        # no filter at all, on SQLite, from FTS5's one-row-per-visible-product size table.
        if not filters.conditions and cursor.db.vendor == "sqlite":
            total = _count(cursor, f"SELECT COUNT(*) FROM {FTS_TABLE}_docsize", [])
        else:
            total = _count(cursor, f"SELECT COUNT(*) FROM {source}", where.params)
        if query.offset >= total:
            return SearchResult(total, [])
        return SearchResult(total, _page(cursor, f"SELECT p.id FROM {source} ORDER BY {order}", params, query))

    # -- index maintenance ---------------------------------------------------------------------
    def index(self, product: Product) -> None:
        """Nothing to do: triggers (SQLite) or InnoDB (MySQL) update the index with the row."""

    def remove(self, product: Product) -> None:
        """Nothing to do, as for index()."""

    def reindex(self, products: Iterable[Product]) -> int:
        """Rebuild the full-text structures from the product table itself (`products` is not
        read); returns the number of visible products now indexed."""
        connection = self._connection()
        rebuild_fulltext(connection)
        with connection.cursor() as cursor:
            return _count(cursor, f"SELECT COUNT(*) FROM {_product_table()} WHERE status = %s", [VISIBLE])


# -- schema: used by migration 0002 and by `market-manage reindex` ------------------------------
def _facets_sql(row: str) -> str:
    """SQL for the facets column of `row` (new, old or the table): facet_token() of its
    category, type, seller (lower-cased: addresses compare case-insensitively) and each tag.
    tags_text joins the tags with ", " and tags hold no comma, so in its hex "2c20" is always
    a separator (in valid UTF-8 it cannot straddle two characters): replacing it splits the
    hex into one token per tag."""
    return (
        f"'c' || lower(hex({row}.category)) || ' p' || lower(hex({row}.ptype)) "
        f"|| ' s' || lower(hex(lower({row}.seller_address))) "
        f"|| ' t' || replace(lower(hex({row}.tags_text)), '2c20', ' t')"
    )


def _sqlite_schema() -> list[str]:
    table, text = _product_table(), ", ".join(TEXT_COLUMNS)
    cols = f"{text}, facets"

    def values(row: str) -> str:
        return ", ".join(f"{row}.{c}" for c in TEXT_COLUMNS) + ", " + _facets_sql(row)

    delete_old = (
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {cols}) SELECT 'delete', old.id, {values('old')} "
        f"WHERE old.status = {VISIBLE};"
    )
    insert_new = f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT new.id, {values('new')} WHERE new.status = {VISIBLE};"
    watched = f"status, {text}, category, ptype, seller_address"  # every column the index reads
    return [
        f"CREATE VIEW IF NOT EXISTS {FTS_SOURCE} AS SELECT id, {values(table)} AS facets "
        f"FROM {table} WHERE status = {VISIBLE}",
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({cols}, content='{FTS_SOURCE}', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_insert AFTER INSERT ON {table} BEGIN {insert_new} END",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_delete AFTER DELETE ON {table} BEGIN {delete_old} END",
        f"CREATE TRIGGER IF NOT EXISTS {FTS_TABLE}_update AFTER UPDATE OF {watched} ON {table} "
        f"BEGIN {delete_old} {insert_new} END",
    ]


def _mysql_has_fulltext(cursor: Any) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
        "AND table_name = %s AND index_name = %s",
        [_product_table(), FULLTEXT_INDEX],
    )
    return int(cursor.fetchone()[0]) > 0


def create_fulltext(connection: BaseDatabaseWrapper) -> None:
    """Create whatever full-text structure is missing and make its content current."""
    if connection.vendor == "sqlite":
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            for statement in _sqlite_schema():
                cursor.execute(statement)
            cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    elif connection.vendor == "mysql":
        with connection.cursor() as cursor:
            if _mysql_has_fulltext(cursor):
                return
            # The stopword list is fixed when the index is built; without one every word is
            # searchable, as in FTS5 and Elasticsearch.
            cursor.execute("SET @pdash_stopword = @@SESSION.innodb_ft_enable_stopword")
            cursor.execute("SET SESSION innodb_ft_enable_stopword = OFF")
            try:
                cursor.execute(
                    f"ALTER TABLE {_product_table()} ADD FULLTEXT INDEX {FULLTEXT_INDEX} ({', '.join(TEXT_COLUMNS)})"
                )
            finally:
                cursor.execute("SET SESSION innodb_ft_enable_stopword = @pdash_stopword")


def drop_fulltext(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for suffix in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{suffix}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
            cursor.execute(f"DROP VIEW IF EXISTS {FTS_SOURCE}")
        elif connection.vendor == "mysql" and _mysql_has_fulltext(cursor):
            # FORCE rebuilds the table without the hidden FTS_DOC_ID column: on MariaDB 10.11 a
            # FULLTEXT index added again after a plain DROP INDEX matches nothing.
            cursor.execute(f"ALTER TABLE {_product_table()} DROP INDEX {FULLTEXT_INDEX}, FORCE")


def rebuild_fulltext(connection: BaseDatabaseWrapper) -> None:
    """SQLite: restore missing triggers (a table rebuild by a later migration drops them) and
    re-read every visible row. MySQL: drop and re-create the index, which is what a change
    of innodb_ft_min_token_size needs before it applies."""
    if connection.vendor == "mysql":
        drop_fulltext(connection)
    create_fulltext(connection)


def ensure_fulltext(connection: BaseDatabaseWrapper) -> bool:
    """Create the full-text structures if any is missing (then rebuilt from the rows); True
    if something was missing. Cheap when all is in place, so it suits a post_migrate hook:
    SQLite drops a table's triggers whenever a migration rebuilds that table."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            names = [FTS_TABLE, FTS_SOURCE, *(f"{FTS_TABLE}_{t}" for t in ("insert", "delete", "update"))]
            cursor.execute(f"SELECT COUNT(*) FROM sqlite_master WHERE name IN {_in(names)}", names)
            complete = int(cursor.fetchone()[0]) == len(names)
        else:
            complete = connection.vendor != "mysql" or _mysql_has_fulltext(cursor)
    if not complete:
        create_fulltext(connection)
    return not complete

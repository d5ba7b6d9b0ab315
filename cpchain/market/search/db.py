"""Search in the market's own database: SQLite FTS5 or an InnoDB FULLTEXT index.

The embedded default: no extra service to run, and the index never lags behind the rows. It
is built in bulk by `create_fulltext()` (migrations, `market-manage reindex`).

What a search means, on both databases: every word of the keyword (runs of letters and digits,
case and accents folded) must be in the title, the description or the tags; the filters are
an exact category, type, any of the sellers, any of the tags, a price range; the sorts are
relevance, newest (the highest id first), price, sales and rating, every one with ties to the
newer product, so pages are stable and disjoint. User keywords never reach either engine's
query syntax: they are reduced to words, and all values travel as query parameters.

- SQLite: `product_fts`, an external-content FTS5 table whose content is the view
  `product_fts_source` (visible products only). Triggers on the product table keep it in step
  inside the writing transaction, so every write updates it: `save()`, `QuerySet.update()`
  (hide, show, supersede), deletes, the admin and raw SQL alike. Besides the text columns it
  indexes a `facets` column of exact-value tokens (see _facets_sql), so every filter is one
  more id list merged inside FTS5 and counts come from the index alone: the category, the
  type (the common type, file, has no token: it is "not another type"), the seller, each tag,
  and the price as four nested buckets (its number of digits, then also its first one, two,
  three digits). A price range is the union of the buckets inside it plus at most two buckets
  across its ends, less the products of those two that are out of range (found on the
  (status, price) index). FTS5 reads its id lists in rowid order, so newest-first pages stop
  early; a sort by price, sales or rating reads the product table's (status, column) index in
  order keeping the matches, or looks the matches up and sorts them, whichever reads fewer
  rows.
  Relevance is bm25 with title and tags weighted above the description, over a bounded
  window, like Elasticsearch's rescore window: when more than RELEVANCE_WINDOW products match,
  the newest RELEVANCE_WINDOW matches are ranked by relevance and come first, and the older
  matches follow them newest first (with fewer matches, all are ranked). Totals stay exact.
  bm25 over every match of a common word (tens of thousands) cost more than all the rest of a
  search; the window costs the same whatever the word, and a market's searches want recent
  listings. bm25 reads the whole id list of every term in its MATCH (for the idf), so the
  window is ranked by a MATCH of the keyword's words alone over the window's id range, the
  window's members (the full MATCH) kept by a subquery: a common facet costs nothing there.
- MySQL/MariaDB: the FULLTEXT index `product_fulltext` on (title, description, tags_text),
  built with the default parser (word semantics like FTS5, on MySQL and on MariaDB, which has
  no ngram parser) and without stopwords, maintained by InnoDB at commit. The filters are
  conditions on the product table. Ranking is the MATCH score over every match (no window).
  Words shorter than the server's innodb_ft_min_token_size are not in that index; they are
  matched with a word-boundary REGEXP instead, so results do not depend on server settings.
  InnoDB reads the product row of every match (about 3 µs each) before any filter applies, so
  with a selective filter (a seller, a rare tag or category: EXPLAIN's estimate of the rows its
  index reads, at most FILTER_FIRST_ROWS) the filter's rows are read instead and each one's
  relevance looked up in the full-text result, which costs under 1 µs per match either way.
  The count and the page come from one windowed statement. Still, exact totals cost a row read
  per match: on large catalogs common words cost tens of milliseconds; Elasticsearch is the
  backend for those.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
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
# With more matches than this, the newest this many are ranked and the rest follow newest first.
RELEVANCE_WINDOW = 1000
# From this many matches on, a page sorted by a product column is read from the product index in
# sort order (keeping the ids found among the matches) rather than looked up match by match.
WALK_MIN_MATCHES = 1000
# MySQL: a keyword search with filters whose best index reads at most this many rows (the
# optimizer's estimate) reads those rows, not the keyword's full-text matches. Each way costs
# about the same per row (3 µs), and the matches are not known in advance: a common word has
# tens of thousands, the median word of a realistic catalog some hundreds.
FILTER_FIRST_ROWS = 2000
# MySQL: pages that end within this many rows are read from the first row (see _search_rows_mysql).
PAGE_PREFIX_ROWS = 200
VISIBLE = int(Visibility.VISIBLE)
MAX_PRICE = 2**128 - 1  # listed prices are below 2**128 (cpchain.types)
PRICE_LEVELS = 3  # price buckets: the number of digits, then the first 1, 2, 3 digits
# SQLite facets: the common type has no token, see _facets_sql().
COMMON_TYPE, RARE_TYPE = "file", "stream"

_WORD = re.compile(r"[^\W_]+")

# ORDER BY per sort; every order ends with p.id DESC, so ties go to the newer product and pages
# are stable. "newest" is the most recently published: the highest id.
ORDER = {
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


def product_table() -> str:
    return str(Product._meta.db_table)


def sql_in(values: Sequence[Any]) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"


class Where:
    """AND-ed SQL conditions and their parameters."""

    def __init__(self, condition: str = "", *params: Any) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []
        if condition:
            self.add(condition, *params)

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def extend(self, other: Where) -> None:
        self.conditions += other.conditions
        self.params += other.params

    def __str__(self) -> str:
        return " AND ".join(self.conditions) or "1 = 1"


# -- prices ---------------------------------------------------------------------------------------
def price_buckets(price: int) -> list[str]:
    """The buckets of a price: level k (0 to PRICE_LEVELS), its number of digits (two digits)
    and its first k digits. _facets_sql() computes the same strings in SQL."""
    digits = str(price)
    return [f"{k}{len(digits):02d}{digits[:k]}" for k in range(PRICE_LEVELS + 1)]


def _bucket_range(length: int, prefix: str) -> tuple[int, int]:
    """The prices whose decimal form has `length` digits and starts with `prefix`."""
    if not prefix:
        return (0 if length == 1 else 10 ** (length - 1)), 10**length - 1
    scale = 10 ** (length - len(prefix))
    return int(prefix) * scale, (int(prefix) + 1) * scale - 1


@dataclass(frozen=True)
class PriceFilter:
    """A price range as index tokens: `buckets` cover every price in the range (nothing matches
    when there is none); the products in `partial` buckets (their full ranges) that are below
    `low` or above `high` must be excluded."""

    buckets: tuple[str, ...]
    partial: tuple[tuple[int, int], ...]
    low: Decimal | None
    high: Decimal | None

    def excluded(self, price: str, prep: Any) -> Where:
        """A condition on the `price` column: in a partial bucket but out of range. `prep`
        adapts a number for the database."""
        cases = []
        params: list[Any] = []
        for first, last in self.partial:
            if self.low is not None and first < self.low:
                cases.append(f"({price} >= %s AND {price} < %s)")
                params += [prep(Decimal(first)), prep(self.low)]
            if self.high is not None and last > self.high:
                cases.append(f"({price} > %s AND {price} <= %s)")
                params += [prep(self.high), prep(Decimal(last))]
        return Where("(" + " OR ".join(cases) + ")", *params) if cases else Where()


def price_filter(query: SearchQuery) -> PriceFilter | None:
    """The range of `query` as buckets, or None without a price filter."""
    if query.min_price is None and query.max_price is None:
        return None
    lowest, highest = query.whole_min_price, query.whole_max_price
    low = max(0, lowest) if lowest is not None else 0
    high = min(MAX_PRICE, highest) if highest is not None else MAX_PRICE
    buckets: list[str] = []
    partial: list[tuple[int, int]] = []

    def visit(length: int, prefix: str) -> None:
        first, last = _bucket_range(length, prefix)
        if last < low or first > high:
            return
        name = f"{len(prefix)}{length:02d}{prefix}"
        if low <= first and last <= high:
            buckets.append(name)
        elif len(prefix) in (PRICE_LEVELS, length):
            buckets.append(name)
            partial.append((first, last))
        else:
            for digit in "123456789" if not prefix and length > 1 else "0123456789":
                visit(length, prefix + digit)

    if low <= high:
        for length in range(len(str(low)), len(str(high)) + 1):
            visit(length, "")
    return PriceFilter(
        tuple(buckets),
        tuple(partial),
        Decimal(lowest) if lowest is not None else None,
        Decimal(highest) if highest is not None else None,
    )


def _count(cursor: Any, sql: str, params: list[Any]) -> int:
    cursor.execute(sql, params)
    return int(cursor.fetchone()[0])


def _ids(cursor: Any, sql: str, params: list[Any]) -> list[int]:
    cursor.execute(sql, params)
    return [int(row[0]) for row in cursor.fetchall()]


def _page(cursor: Any, sql: str, params: list[Any], offset: int, limit: int) -> list[int]:
    return _ids(cursor, f"{sql} LIMIT %s OFFSET %s", [*params, limit, offset])


class DatabaseBackend:
    """SearchBackend over the product table; `using` pins a database alias (else the router's).

    SQLite: a count and a page from FTS5 (a relevance page: the window's lowest id, then the
    ranking). MySQL: a count and a page, one windowed statement when there is a keyword, each
    shaped so its work follows the number of matches rather than the size of the catalog."""

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
        """The match runs inside FTS5: words in the text columns AND facet tokens for category,
        type, sellers, tags and price buckets, so filters are merges of id lists and the count
        is read from the index alone. Product rows are read only for a sort by a product
        column, and then from the side that is cheaper."""
        terms = keyword_terms(query.keyword)
        words = ""
        if terms:
            quoted = ('"' + t.replace('"', '""') + '"' for t in terms)  # words hold no quote; still
            words = f"{{{' '.join(TEXT_COLUMNS)}}} : (" + " AND ".join(quoted) + ")"
        facets = []
        if query.category:
            facets.append(f'"{facet_token("c", query.category)}"')
        if query.ptype and query.ptype != COMMON_TYPE:
            facets.append(f'"{facet_token("p", query.ptype)}"')
        for kind, values in (("s", tuple(s.lower() for s in query.sellers)), ("t", query.tags)):
            if values:
                facets.append("(" + " OR ".join(f'"{facet_token(kind, v)}"' for v in values) + ")")
        prices = price_filter(query)
        field = Product._meta.get_field("price")

        def prep(value: Decimal) -> Any:
            return field.get_db_prep_value(value, cursor.db)

        excluded = Where()
        if prices is not None:
            if not prices.buckets:
                return SearchResult(0, [])
            facets.append("(" + " OR ".join(f'"r{b}"' for b in prices.buckets) + ")")
            excluded = prices.excluded("x.price", prep)
        common = query.ptype == COMMON_TYPE
        if not words and not facets and not common:
            return self._search_table(cursor, query)
        # "a" is in every product: the base of a type filter alone. With words or facets it
        # would only add the longest id list of all to the merge.
        match = " AND ".join([words] * bool(words) + [f"facets : ({' AND '.join(facets)})"] * bool(facets))
        match = match or "facets : (a)"
        if common:  # the common type has no token: its products are those without one
            match = f'({match}) NOT facets : ("{facet_token("p", RARE_TYPE)}" OR "pother")'
        fts = Where(f"{FTS_TABLE} MATCH %s", match)
        if excluded.conditions:
            fts.add(
                f"{FTS_TABLE}.rowid NOT IN (SELECT x.id FROM {product_table()} x WHERE x.status = %s AND {excluded})",
                VISIBLE,
                *excluded.params,
            )
        total = _count(cursor, f"SELECT COUNT(*) FROM {FTS_TABLE} WHERE {fts}", fts.params)
        if query.offset >= total:
            return SearchResult(total, [])
        sort = "newest" if query.sort == "relevance" and not terms else query.sort
        if sort == "newest":  # FTS5 reads its id lists in rowid order: the page stops early
            sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {fts} ORDER BY rowid DESC"
            return SearchResult(total, _page(cursor, sql, fts.params, query.offset, query.limit))
        if sort == "relevance":
            plain = match == words and not excluded.conditions  # the MATCH is the keyword alone
            return SearchResult(total, self._relevance_sqlite(cursor, query, total, fts, words, plain))
        # Two ways to the product rows. Join: the matches are the outer loop (CROSS JOIN fixes
        # the order; left to itself SQLite may walk a product index and re-run the MATCH per
        # row), one row lookup per match. Walk: a (status, price|sales|rating) index in order,
        # keeping ids found among the matches (`+` keeps SQLite from looking the ids up
        # instead); a page stops early, so it wins when the matches are many.
        if total >= WALK_MIN_MATCHES:
            where = Where(f"+p.id IN (SELECT rowid FROM {FTS_TABLE} WHERE {fts})", *fts.params)
            where.add("p.status = %s", VISIBLE)
            if sort in ("price", "-price") and prices is not None:  # the range of the index to read
                where.extend(_priced(query, prep))
            rows = f"{product_table()} p"
        else:
            where = Where("p.status = %s", VISIBLE)
            where.extend(fts)
            rows = f"{FTS_TABLE} CROSS JOIN {product_table()} p ON p.id = {FTS_TABLE}.rowid"
        sql = f"SELECT p.id FROM {rows} WHERE {where} ORDER BY {ORDER[sort]}"
        return SearchResult(total, _page(cursor, sql, where.params, query.offset, query.limit))

    def _relevance_sqlite(
        self, cursor: Any, query: SearchQuery, total: int, fts: Where, words: str, plain: bool
    ) -> list[int]:
        """A relevance page: the window (the newest RELEVANCE_WINDOW matches) ranked by bm25,
        then the older matches newest first."""
        window = min(total, RELEVANCE_WINDOW)
        newest = f"SELECT rowid FROM {FTS_TABLE} WHERE {fts} ORDER BY rowid DESC"
        lowest = _page(cursor, newest, fts.params, window - 1, 1)[0]  # the oldest match in the window
        ranked: list[int] = []
        if query.offset < window:
            # bm25 reads the id list of every term of its MATCH once (for the idf): with the
            # facets in it, a facet that most of the catalog has would cost more than ranking the
            # window. So the keyword's words alone are ranked, over the window's id range, and
            # the window's members kept.
            inside = f"{FTS_TABLE}.rowid >= %s"
            where = Where(f"{FTS_TABLE} MATCH %s AND {inside}", words, lowest)
            if not plain:
                where.add(f"+rowid IN (SELECT rowid FROM {FTS_TABLE} WHERE {fts} AND {inside})", *fts.params, lowest)
            sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {where} ORDER BY {BM25}, rowid DESC"
            ranked = _page(cursor, sql, where.params, query.offset, query.limit)
            if len(ranked) == query.limit or total <= window:
                return ranked
        older = f"SELECT rowid FROM {FTS_TABLE} WHERE {fts} AND rowid < %s ORDER BY rowid DESC"
        offset = max(0, query.offset - window)
        return ranked + _page(cursor, older, [*fts.params, lowest], offset, query.limit - len(ranked))

    # -- no keyword and no filter: the product table --------------------------------------------
    def _search_table(self, cursor: Any, query: SearchQuery) -> SearchResult:
        """Every visible product: the count from FTS5's one-row-per-visible-product size table,
        the page from a (status, ...) index in sort order."""
        total = _count(cursor, f"SELECT COUNT(*) FROM {FTS_TABLE}_docsize", [])
        if query.offset >= total:
            return SearchResult(total, [])
        order = ORDER.get(query.sort, ORDER["newest"])
        sql = f"SELECT p.id FROM {product_table()} p WHERE p.status = %s ORDER BY {order}"
        return SearchResult(total, _page(cursor, sql, [VISIBLE], query.offset, query.limit))

    # -- MySQL/MariaDB: InnoDB FULLTEXT -----------------------------------------------------------
    def _search_mysql(self, cursor: Any, query: SearchQuery) -> SearchResult:
        terms = keyword_terms(query.keyword)
        low, high = self._mysql_token_limits(cursor)
        if any(len(t) > high for t in terms):
            return SearchResult(0, [])  # longer than any indexed word: nothing can match
        score, short = None, Where()
        indexed = [t for t in terms if len(t) >= low]
        if indexed:
            score = Where(
                f"MATCH(p.{', p.'.join(TEXT_COLUMNS)}) AGAINST (%s IN BOOLEAN MODE)", " ".join("+" + t for t in indexed)
            )
        text = f"CONCAT_WS(' ', p.{', p.'.join(TEXT_COLUMNS)})"
        for word in (t for t in terms if len(t) < low):
            short.add(f"{text} REGEXP %s", rf"(?i)(?<![\p{{L}}\p{{N}}]){re.escape(word)}(?![\p{{L}}\p{{N}}])")
        return self._search_rows_mysql(cursor, query, score, short)

    def _mysql_token_limits(self, cursor: Any) -> tuple[int, int]:
        alias = cursor.db.alias
        if alias not in self._token_limits:
            cursor.execute("SELECT @@innodb_ft_min_token_size, @@innodb_ft_max_token_size")
            low, high = cursor.fetchone()
            self._token_limits[alias] = (int(low), int(high))
        return self._token_limits[alias]

    def _search_rows_mysql(self, cursor: Any, query: SearchQuery, score: Where | None, short: Where) -> SearchResult:
        """Search the product table's own columns and indexes: `score` is the FULLTEXT MATCH of
        the keyword's indexed words (None without one), `short` the conditions on its words too
        short for the index."""
        field = Product._meta.get_field("price")
        where = Where("p.status = %s", VISIBLE)
        where.extend(_attributes(query))
        where.extend(_priced(query, lambda value: field.get_db_prep_value(value, cursor.db)))
        if score is not None and len(where.conditions) > 1 and _filter_rows_mysql(cursor, where) <= FILTER_FIRST_ROWS:
            # A bare MATCH condition makes the optimizer read every full-text match's row first;
            # as a value it is looked up per row in the full-text result, so a selective filter's
            # index drives instead. Every match has a positive score (InnoDB gives a word found in
            # every document a tiny one), so "> 0" is exactly "matches".
            score = Where(f"COALESCE({score}, 0)", *score.params)
            where.add(f"{score} > 0", *score.params)
        elif score is not None:
            where.extend(score)
        where.extend(short)
        source = f"{product_table()} p WHERE {where}"
        if query.sort == "relevance" and score:
            order, params = f"{score} DESC, p.id DESC", [*where.params, *score.params]
        else:
            order, params = ORDER.get(query.sort, ORDER["newest"]), where.params
        if score is not None or short.conditions:
            # InnoDB reads every matching row whatever the query: count them in the same pass as
            # the page. A page near the start is read with the rows before it, so that a page past
            # the end still brings the count (COUNT(*) OVER () comes with the rows).
            prefix = query.offset + query.limit <= PAGE_PREFIX_ROWS
            skip = query.offset if prefix else 0
            cursor.execute(
                f"SELECT p.id, COUNT(*) OVER () FROM {source} ORDER BY {order} LIMIT %s OFFSET %s",
                [*params, query.limit + skip, query.offset - skip],
            )
            rows = cursor.fetchall()
            if rows or query.offset == 0 or prefix:  # no row from the first one on: nothing matches
                return SearchResult(int(rows[0][1]) if rows else 0, [int(r[0]) for r in rows[skip:]])
            return SearchResult(_count(cursor, f"SELECT COUNT(*) FROM {source}", where.params), [])
        # Without one the page comes from an index in sort order, the count from another.
        total = _count(cursor, f"SELECT COUNT(*) FROM {source}", where.params)
        if query.offset >= total:
            return SearchResult(total, [])
        sql = f"SELECT p.id FROM {source} ORDER BY {order}"
        return SearchResult(total, _page(cursor, sql, params, query.offset, query.limit))

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
            return _count(cursor, f"SELECT COUNT(*) FROM {product_table()} WHERE status = %s", [VISIBLE])


def _tagged(column: str, tags: tuple[str, ...]) -> Where:
    table = ProductTag._meta.db_table
    return Where(f"{column} IN (SELECT t.product_id FROM {table} t WHERE t.tag IN {sql_in(tags)})", *tags)


def _attributes(query: SearchQuery) -> Where:
    """MySQL: the exact-match filters, as conditions on the product table."""
    where = Where()
    if query.category:
        where.add("p.category = %s", query.category)
    if query.ptype:
        where.add("p.ptype = %s", query.ptype)
    if query.sellers:
        where.add(f"p.seller_address IN {sql_in(query.sellers)}", *query.sellers)
    if query.tags:
        where.extend(_tagged("p.id", query.tags))
    return where


def _priced(query: SearchQuery, prep: Any) -> Where:
    """The price range, with whole bounds: the column (a WeiField) takes whole numbers only."""
    where = Where()
    if query.whole_min_price is not None:
        where.add("p.price >= %s", prep(Decimal(query.whole_min_price)))
    if query.whole_max_price is not None:
        where.add("p.price <= %s", prep(Decimal(query.whole_max_price)))
    return where


def _filter_rows_mysql(cursor: Any, where: Where) -> float:
    """The optimizer's estimate of the rows its best index reads for `where` (no MATCH in it):
    EXPLAIN, from index dives, costs a fraction of a millisecond. The product of the row
    estimates of the outer query's tables (a tag filter joins the tag table)."""
    cursor.execute(f"EXPLAIN SELECT p.id FROM {product_table()} p WHERE {where}", where.params)
    names = [str(column[0]).lower() for column in cursor.description]
    kind, rows = names.index("select_type"), names.index("rows")
    estimate = 1.0
    for row in cursor.fetchall():
        if str(row[kind]).upper() in ("SIMPLE", "PRIMARY") and row[rows] is not None:
            estimate *= float(row[rows])
    return estimate


# -- schema: used by the migrations and by `market-manage reindex` ------------------------------
def _facets_sql(row: str) -> str:
    """SQL for the facets column of `row` (new, old or the table): "a" (every product), then
    facet_token() of its category, type, seller (lower-cased: addresses compare
    case-insensitively) and each tag, then its price buckets (price_buckets()).

    The common type has no token: a filter on it is every match NOT of another type. Its id
    list would be most of the catalog, slow to intersect; the list of the other types is short.
    A type other than the two known ones also gets "pother", so no product is taken for a file
    that is not one. tags_text joins the tags with ", " and tags hold no comma, so in its hex
    "2c20" is always a separator (in valid UTF-8 it cannot straddle two characters): replacing
    it splits the hex into one token per tag. The price is a zero-padded string (WeiField);
    migrations before the one that made it so read it as an integer or a REAL."""
    price = f"{row}.price"
    digits = (
        f"(CASE typeof({price}) WHEN 'integer' THEN CAST({price} AS TEXT) WHEN 'real' THEN printf('%.0f', {price}) "
        f"ELSE coalesce(nullif(ltrim({price}, '0'), ''), '0') END)"
    )
    length = f"printf('%02d', length({digits}))"
    buckets = " || ".join(
        f"' r{k}' || {length}" + (f" || substr({digits}, 1, {k})" if k else "") for k in range(PRICE_LEVELS + 1)
    )
    return (
        f"'a c' || lower(hex({row}.category)) "
        f"|| CASE {row}.ptype WHEN '{COMMON_TYPE}' THEN '' WHEN '{RARE_TYPE}' THEN ' {facet_token('p', RARE_TYPE)}' "
        f"ELSE ' p' || lower(hex({row}.ptype)) || ' pother' END "
        f"|| ' s' || lower(hex(lower({row}.seller_address))) "
        f"|| ' t' || replace(lower(hex({row}.tags_text)), '2c20', ' t') || {buckets}"
    )


def _sqlite_schema() -> list[str]:
    table, text = product_table(), ", ".join(TEXT_COLUMNS)
    cols = f"{text}, facets"

    def values(row: str) -> str:
        return ", ".join(f"{row}.{c}" for c in TEXT_COLUMNS) + ", " + _facets_sql(row)

    delete_old = (
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {cols}) SELECT 'delete', old.id, {values('old')} "
        f"WHERE old.status = {VISIBLE};"
    )
    insert_new = f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT new.id, {values('new')} WHERE new.status = {VISIBLE};"
    watched = f"status, {text}, category, ptype, seller_address, price"  # every column the index reads
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
        [product_table(), FULLTEXT_INDEX],
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
                    f"ALTER TABLE {product_table()} ADD FULLTEXT INDEX {FULLTEXT_INDEX} ({', '.join(TEXT_COLUMNS)})"
                )
            finally:
                cursor.execute("SET SESSION innodb_ft_enable_stopword = @pdash_stopword")


def drop_fulltext(connection: BaseDatabaseWrapper) -> None:
    """Drop the full-text structures, of this version or an earlier one."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for suffix in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{suffix}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
            cursor.execute(f"DROP VIEW IF EXISTS {FTS_SOURCE}")
        elif connection.vendor == "mysql" and _mysql_has_fulltext(cursor):
            # FORCE rebuilds the table without the hidden FTS_DOC_ID column: on MariaDB 10.11 a
            # FULLTEXT index added again after a plain DROP INDEX matches nothing.
            cursor.execute(f"ALTER TABLE {product_table()} DROP INDEX {FULLTEXT_INDEX}, FORCE")


def rebuild_fulltext(connection: BaseDatabaseWrapper) -> None:
    """Drop and re-create the full-text structures from the product rows. SQLite: also the
    triggers (a table rebuild by a later migration drops them; an earlier version's read fewer
    columns). MySQL: the index, which is what a change of innodb_ft_min_token_size needs
    before it applies."""
    drop_fulltext(connection)
    create_fulltext(connection)


def ensure_fulltext(connection: BaseDatabaseWrapper) -> bool:
    """Create the full-text structures if any is missing (then rebuilt from the rows); True
    if something was missing. Cheap when all is in place, so it suits a post_migrate hook:
    SQLite drops a table's triggers whenever a migration rebuilds that table."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            names = [FTS_TABLE, FTS_SOURCE, *(f"{FTS_TABLE}_{t}" for t in ("insert", "delete", "update"))]
            cursor.execute(f"SELECT COUNT(*) FROM sqlite_master WHERE name IN {sql_in(names)}", names)
            complete = int(cursor.fetchone()[0]) == len(names)
        else:
            complete = connection.vendor != "mysql" or _mysql_has_fulltext(cursor)
    if not complete:
        if connection.vendor == "sqlite":
            rebuild_fulltext(connection)
        else:
            create_fulltext(connection)
    return not complete

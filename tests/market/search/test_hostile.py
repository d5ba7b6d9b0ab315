"""Keywords are user input: whatever the string (query operators, quotes, brackets, SQL, NUL,
emoji, 200 characters), the search endpoint answers 200 with the products that contain its
words, on every backend. Operators are plain separators, never syntax."""

from __future__ import annotations

from typing import Any

import pytest

from cpchain.market.client import MarketError
from tests.market.conftest import product
from tests.market.search.conftest import api, seller
from tests.market.search.test_backends import words

LISTINGS = [
    ("Hourly weather Berlin", "Temperature readings", ["weather"]),
    ("Stock ticks", "Quotes, not weather data", ["finance"]),
    ("Café Zürich footfall", "Visitors per hour", ["food"]),
    ("3D map of the EU", "Terrain, or relief, of Europe", ["maps"]),
]
HOSTILE = [
    '"', "'", "*", "-", "+", "((", "))", "(weather", "weather)", '"weather', 'weather"', "weather*", "*weather",
    "+weather -berlin", "-weather", "weather AND berlin", "weather OR nothing", "NOT weather", "not weather",
    "NEAR(weather berlin)", "title:weather", "{title description}: weather", "^weather", "weather@2", "~weather",
    ">weather <berlin", "weather^5", "%", "_", "\\", "%_%", "weather%", "'; DROP TABLE product_product; --",
    "1' OR '1'='1", "café", "CAFE", "zürich", "ZURICH", "e\u0301te", "天气", "🙂", "weather 🙂", "\x00",
    "weather\x00berlin", "\u200b", "EU 3D", "eu", "of", "or", "x" * 200, "(" * 200, ('"a" ' * 50)[:200],
    " ".join(f"w{n}" for n in range(60))[:200], "weather " * 25,
]  # fmt: skip


def expected_count(keyword: str) -> int:
    wanted = words(keyword)
    return sum(wanted <= words(f"{title} {description} {' '.join(tags)}") for title, description, tags in LISTINGS)


def test_hostile_keywords_answer_200_with_the_word_matches(backend: Any) -> None:
    account, client = seller()
    for title, description, tags in LISTINGS:
        client.publish(account, product(account.address, title=title, description=description, tags=tags))
    anyone = api()
    wrong: list[tuple[str, Any, int]] = []
    for keyword in HOSTILE:
        for sort in ("relevance", "price"):
            try:
                count = anyone.search(keyword=keyword, sort=sort)["count"]
            except MarketError as exc:
                count = f"HTTP {exc.status}: {exc}"
            if count != expected_count(keyword):
                wrong.append((keyword, count, expected_count(keyword)))
    assert not wrong, f"keyword, answer, expected: {wrong}"
    assert anyone.search(keyword="weather")["count"] == 2  # the table survived the SQL above


@pytest.mark.parametrize("keyword", ["x" * 201, "(" * 201])
def test_overlong_keywords_are_refused_with_a_json_error(backend: Any, keyword: str) -> None:
    with pytest.raises(MarketError) as refused:
        api().search(keyword=keyword)
    assert refused.value.status == 400 and "200 characters" in str(refused.value)

"""Page links: `next` and `previous` keep every query parameter (repeated ones, any script)
and change only the page, as absolute URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest


@pytest.mark.parametrize(
    "query",
    ["keyword=caf%C3%A9+%E5%A4%A9%E6%B0%94&tag=a&tag=b%2Cc&sort=price", "page=2", "keyword=%26%3D%3F%23&page=3"],
)
def test_page_links_change_only_the_page(market_django: str, query: str) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from cpchain.market.api import page_response

    request = Request(APIRequestFactory().get(f"/product/v1/search/?{query}", HTTP_HOST="127.0.0.1:8083"))
    page = int(request.query_params.get("page", "1"))
    body = page_response(request, 1000, [], page, 20).data
    wanted = parse_qs(query, keep_blank_values=True)
    for name, number in (("next", page + 1), ("previous", page - 1)):
        if number < 1:
            assert body[name] is None
            continue
        url = urlsplit(body[name])
        assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8083", "/product/v1/search/")
        assert parse_qs(url.query, keep_blank_values=True) == {**wanted, "page": [str(number)]}

"""Products over HTTP on SQLite and MariaDB: signed publish, ownership, visibility, versions,
covers, search filters through the API, follows and recommendations."""

from __future__ import annotations

import io
import secrets
from typing import Any

import pytest
import requests
from eth_account import Account
from PIL import Image

from cpchain.crypto.signing import sign_product
from cpchain.market.client import MarketError
from tests.market.conftest import LiveMarket, product


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def error_of(call: Any) -> MarketError:
    with pytest.raises(MarketError) as err:
        call()
    return err.value


def test_publish_and_get_by_market_hash(market: LiveMarket) -> None:
    account, client = market.user()
    desc = product(account.address)
    published = client.publish(account, desc)
    assert published["market_hash"] == desc.market_hash() and published["desc_hash"] == desc.desc_hash().hex()
    assert published["seller"] == account.address and published["price"] == str(10**18)
    assert published["tags"] == ["weather", "hourly"] and published["status"] == "visible"
    public = market.client().product(desc.market_hash())
    assert public["canonical"] == desc.canonical().decode() and public["signature"] == published["signature"]


def test_publish_refusals(market: LiveMarket) -> None:
    account, client = market.user()
    other = Account.create()
    desc = product(account.address)
    # Signed by someone else.
    body = {"product": desc.to_dict(), "signature": sign_product(other, desc.canonical())}
    assert error_of(lambda: client.post("/product/v1/products/", body)).code == "bad_signature"
    # Signature over different content.
    tampered = {**desc.to_dict(), "price": 1}
    body = {"product": tampered, "signature": sign_product(account, desc.canonical())}
    assert error_of(lambda: client.post("/product/v1/products/", body)).code == "bad_signature"
    # A listing for another seller, even correctly signed by that seller.
    foreign = product(other.address)
    body = {"product": foreign.to_dict(), "signature": sign_product(other, foreign.canonical())}
    assert error_of(lambda: client.post("/product/v1/products/", body)).status == 403
    # Not logged in.
    assert error_of(lambda: market.client().publish(account, desc)).status == 401
    # Twice the same listing.
    client.publish(account, desc)
    assert error_of(lambda: client.publish(account, desc)).status == 409


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"price": 0}, "price"),
        ({"title": ""}, "title"),
        ({"data_hash": "zz"}, "data_hash"),
        ({"tags": ["a"] * 11}, "tags"),
        ({"ptype": "movie"}, "ptype"),
        ({"extra": 1}, "unknown product field"),
        ({"price": "1"}, "price"),
    ],
)
def test_invalid_products_get_a_400_naming_the_field(market: LiveMarket, over: dict[str, Any], field: str) -> None:
    account, client = market.user()
    fields = {**product(account.address).to_dict(), **over}
    err = error_of(lambda: client.post("/product/v1/products/", {"product": fields, "signature": "0x" + "11" * 65}))
    assert err.status == 400 and field in str(err)


def test_malformed_and_oversized_bodies(market: LiveMarket) -> None:
    _, client = market.user()
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"}
    bad = requests.post(market.url + "/product/v1/products/", data="{nope", headers=headers, timeout=10)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    huge = requests.post(
        market.url + "/product/v1/products/", data="[" + "1," * 300_000 + "1]", headers=headers, timeout=10
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    missing = requests.post(market.url + "/product/v1/products/", json={"product": {}}, headers=headers, timeout=10)
    assert missing.status_code == 400 and "signature" in missing.json()["error"]["message"]


def test_owner_only_hide_show_delete(market: LiveMarket) -> None:
    account, owner = market.user()
    _, stranger = market.user()
    mh = owner.publish(account, product(account.address))["market_hash"]
    for action in ("hide", "show"):
        assert error_of(lambda a=action: stranger.post(f"/product/v1/products/{mh}/{a}/")).status == 404
    assert error_of(lambda: stranger.request("DELETE", f"/product/v1/products/{mh}/")).status == 404
    assert owner.post(f"/product/v1/products/{mh}/hide/")["status"] == "hidden"
    assert error_of(lambda: stranger.product(mh)).status == 404
    assert owner.product(mh)["status"] == "hidden"
    assert owner.post(f"/product/v1/products/{mh}/show/")["status"] == "visible"
    assert stranger.product(mh)["status"] == "visible"
    owner.request("DELETE", f"/product/v1/products/{mh}/")
    assert error_of(lambda: stranger.product(mh)).status == 404
    assert error_of(lambda: owner.post(f"/product/v1/products/{mh}/show/")).status == 409


def test_replace_keeps_the_old_version_readable_but_unlisted(market: LiveMarket) -> None:
    account, client = market.user()
    old = product(account.address, title=f"Old title {secrets.token_hex(3)}")
    client.publish(account, old)
    new = product(account.address, title="New title", price=2 * 10**18)
    replaced = client.replace(account, old.market_hash(), new)
    assert replaced["market_hash"] == new.market_hash() and replaced["price"] == str(2 * 10**18)
    superseded = market.client().product(old.market_hash())
    assert superseded["status"] == "superseded" and superseded["superseded_by"] == new.market_hash()
    assert market.client().search(keyword=old.title.split()[-1])["count"] == 0
    _, stranger = market.user()
    assert error_of(lambda: stranger.replace(account, new.market_hash(), product(account.address))).status == 404


def test_my_products_lists_hidden_ones_too(market: LiveMarket) -> None:
    account, client = market.user()
    first = client.publish(account, product(account.address))["market_hash"]
    client.publish(account, product(account.address))
    client.post(f"/product/v1/products/{first}/hide/")
    mine = client.get("/product/v1/my_products/")
    assert mine["count"] == 2 and {p["status"] for p in mine["results"]} == {"visible", "hidden"}
    assert client.get("/product/v1/my_products/", {"status": "hidden"})["count"] == 1
    assert error_of(lambda: client.get("/product/v1/my_products/", {"status": "deleted"})).status == 400


def test_cover_upload_validation_and_safe_serving(market: LiveMarket) -> None:
    account, client = market.user()
    mh = client.publish(account, product(account.address))["market_hash"]
    _, stranger = market.user()
    url = f"/product/v1/products/{mh}/cover/"
    assert error_of(lambda: market.client().get(url)).status == 404
    assert error_of(lambda: stranger.request("PUT", url, files={"image": ("c.png", png(), "image/png")})).status == 404
    assert (
        error_of(lambda: client.request("PUT", url, files={"image": ("c.png", b"<svg/>", "image/png")})).status == 400
    )
    assert error_of(lambda: client.request("PUT", url, files={"other": ("c.png", png(), "image/png")})).status == 400
    updated = client.request("PUT", url, files={"image": ("../../etc/passwd", png(), "image/png")})
    assert updated["cover_url"] == url
    served = requests.get(market.url + url, timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/png" and served.content == png()
    for trick in ("..%2F..%2Fsecret_key", "%2e%2e%2fmarket.db", "....//....//etc"):
        reply = requests.get(market.url + f"/product/v1/products/{trick}/cover/", timeout=10)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


def test_oversized_cover_is_413(market: LiveMarket) -> None:
    account, client = market.user()
    mh = client.publish(account, product(account.address))["market_hash"]
    err = error_of(
        lambda: client.request(
            "PUT", f"/product/v1/products/{mh}/cover/", files={"image": ("c.png", b"\0" * 2_100_000)}
        )
    )
    assert err.status == 413


def test_search_filters_sorts_and_pages(market: LiveMarket) -> None:
    account, client = market.user()
    word = "zq" + secrets.token_hex(4)
    other_word = "zq" + secrets.token_hex(4)
    made = [
        client.publish(
            account, product(account.address, title=f"{word} rain", price=3, category="climate", tags=[word])
        ),
        client.publish(
            account, product(account.address, title=f"{word} wind", price=1, ptype="stream", category="", tags=["x"])
        ),
        client.publish(account, product(account.address, title=f"{word} sun", price=2, category="energy")),
        client.publish(account, product(account.address, title=f"{other_word} snow", price=5)),
    ]
    anyone = market.client()
    assert anyone.search(keyword=word)["count"] == 3
    assert anyone.search(keyword=word, category="climate")["count"] == 1
    assert anyone.search(keyword=word, ptype="stream")["results"][0]["market_hash"] == made[1]["market_hash"]
    assert anyone.search(tag=word)["count"] == 1
    assert anyone.search(keyword=word, min_price=2, max_price=3)["count"] == 2
    by_price = anyone.search(keyword=word, sort="price")["results"]
    assert [p["price"] for p in by_price] == ["1", "2", "3"]
    assert [p["price"] for p in anyone.search(keyword=word, sort="-price")["results"]] == ["3", "2", "1"]
    page = anyone.search(keyword=word, sort="price", page_size=2, page=2)
    assert page["count"] == 3 and [p["price"] for p in page["results"]] == ["3"] and page["next"] is None
    assert anyone.search(seller=account.address, keyword=other_word)["count"] == 1
    client.post(f"/product/v1/products/{made[0]['market_hash']}/hide/")
    assert anyone.search(keyword=word)["count"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "cheapest"},
        {"ptype": "video"},
        {"min_price": "abc"},
        {"min_price": "-1"},
        {"min_price": "5", "max_price": "1"},
        {"seller": "bob"},
        {"page": "0"},
        {"page_size": "x"},
        {"keyword": "k" * 201},
    ],
)
def test_search_rejects_bad_parameters(market: LiveMarket, params: dict[str, str]) -> None:
    reply = requests.get(market.url + "/product/v1/search/", params=params, timeout=10)
    assert reply.status_code == 400 and reply.json()["error"]["message"]


def test_follow_several_tags_and_sellers(market: LiveMarket) -> None:
    seller_a, client_a = market.user()
    seller_b, client_b = market.user()
    _, fan = market.user()
    t1, t2 = "t" + secrets.token_hex(4), "t" + secrets.token_hex(4)
    p1 = client_a.publish(seller_a, product(seller_a.address, tags=[t1]))["market_hash"]
    p2 = client_b.publish(seller_b, product(seller_b.address, tags=[t2]))["market_hash"]
    for tag in (t1, t2):
        fan.post("/product/v1/my_tags/", {"tag": tag})
    assert fan.get("/product/v1/my_tags/")["count"] == 2
    assert {p["market_hash"] for p in fan.get("/product/v1/my_tags/products/")["results"]} == {p1, p2}
    fan.request("DELETE", f"/product/v1/my_tags/{t1}/")
    assert [p["market_hash"] for p in fan.get("/product/v1/my_tags/products/")["results"]] == [p2]
    assert error_of(lambda: fan.request("DELETE", f"/product/v1/my_tags/{t1}/")).status == 404
    fan.post("/product/v1/my_sellers/", {"seller": seller_a.address})
    fan.post("/product/v1/my_sellers/", {"seller": seller_b.address.lower()})
    assert {p["market_hash"] for p in fan.get("/product/v1/my_sellers/products/")["results"]} == {p1, p2}
    assert {p["market_hash"] for p in fan.get("/product/v1/you_may_like/")["results"]} >= {p1, p2}
    fan.request("DELETE", f"/product/v1/my_sellers/{seller_a.address}/")
    assert fan.get("/product/v1/my_sellers/")["results"][0]["seller"] == seller_b.address
    assert error_of(lambda: fan.post("/product/v1/my_sellers/", {"seller": "nobody"})).status == 400
    assert error_of(lambda: client_a.post("/product/v1/my_sellers/", {"seller": seller_a.address})).status == 400


def test_recommend_is_public_and_paged(market: LiveMarket) -> None:
    account, client = market.user()
    client.publish(account, product(account.address))
    page = market.client().get("/product/v1/recommend/", {"page_size": 1})
    assert page["count"] >= 1 and len(page["results"]) == 1
    assert all(p["status"] == "visible" for p in page["results"])


def test_prices_beyond_64_bits_stay_exact(market: LiveMarket) -> None:
    account, client = market.user()
    price = 2**90 + 7  # SQLite stores such a number as a double; the API must not round it
    word = "big" + secrets.token_hex(4)
    published = client.publish(account, product(account.address, title=f"{word} listing", price=price))
    assert published["price"] == str(price)
    assert market.client().product(published["market_hash"])["price"] == str(price)
    assert market.client().search(keyword=word)["results"][0]["price"] == str(price)

"""Reviews, user data, curated content and the proxy registry over HTTP on SQLite and MariaDB."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eth_account import Account

from cpchain.crypto.signing import sign_payload
from cpchain.market.client import MarketClient, MarketError
from tests.market.conftest import REGISTRAR, LiveMarket, product


def error_of(call: Any) -> MarketError:
    with pytest.raises(MarketError) as err:
        call()
    return err.value


def record_order(market: LiveMarket, order_id: int, buyer: str, seller: str, market_hash: str, paid: bool) -> None:
    """What the chain indexer writes when it sees an order (tested with a real chain elsewhere)."""
    market.sql(
        "INSERT INTO records_chainorder (order_id, buyer, seller, proxy, proxy2, price, fee, desc_hash, market_hash,"
        " data_hash, state, end_time, dispute_end, verdict, placed_block, updated_block, seller_paid)"
        " VALUES (?, ?, ?, ?, ?, 100, 1, ?, ?, ?, ?, 0, 0, 0, 1, 1, ?)",
        (order_id, buyer, seller, "0x" + "77" * 20, "0x" + "77" * 20, "00" * 32, market_hash, "00" * 32,
         4 if paid else 1, 1 if paid else 0),
    )  # fmt: skip


def test_reviews_need_a_completed_purchase_and_keep_the_summary(market: LiveMarket) -> None:
    seller, seller_client = market.user()
    buyer, buyer_client = market.user()
    _, stranger = market.user()
    mh = seller_client.publish(seller, product(seller.address))["market_hash"]
    paid, unpaid = secrets.randbelow(2**40), secrets.randbelow(2**40)
    record_order(market, paid, buyer.address, seller.address, mh, paid=True)
    record_order(market, unpaid, buyer.address, seller.address, mh, paid=False)
    review = {"market_hash": mh, "order_id": paid, "rating": 4, "content": "accurate data"}
    assert error_of(lambda: stranger.post("/comment/v1/comments/", review)).status == 403
    assert error_of(lambda: buyer_client.post("/comment/v1/comments/", {**review, "order_id": unpaid})).status == 403
    for rating in (0, 6, "five"):
        assert (
            error_of(lambda r=rating: buyer_client.post("/comment/v1/comments/", {**review, "rating": r})).status == 400
        )
    created = buyer_client.post("/comment/v1/comments/", {**review, "author": stranger.address})
    assert created["author"] == buyer.address and created["rating"] == 4
    assert error_of(lambda: buyer_client.post("/comment/v1/comments/", review)).status == 409
    summary = market.client().get("/comment/v1/summary/", {"market_hash": mh})
    assert summary == {"market_hash": mh, "count": 1, "average": 4.0}
    buyer_client.request("PATCH", f"/comment/v1/comments/{created['id']}/", json={"rating": 2})
    assert market.client().get("/comment/v1/summary/", {"market_hash": mh})["average"] == 2.0
    assert (
        error_of(lambda: stranger.request("PATCH", f"/comment/v1/comments/{created['id']}/", json={"rating": 5})).status
        == 404
    )
    listed = market.client().get("/comment/v1/comments/", {"market_hash": mh})
    assert listed["count"] == 1 and listed["results"][0]["content"] == "accurate data"
    assert market.client().product(mh)["rating"] == {"count": 1, "average": 2.0}
    assert error_of(lambda: market.client().get("/comment/v1/comments/")).status == 400


def test_user_data_is_private_versioned_and_synced(market: LiveMarket) -> None:
    _, alice = market.user()
    _, bob = market.user()
    upload = {
        "client_id": 7, "name": "weather.csv", "data_hash": "ab" * 32, "size": 10, "remote_type": "local",
        "remote_uri": '{"type":"local","path":"/x"}', "sealed_key": "opaque", "user": bob.address,
    }  # fmt: skip
    v1 = alice.post("/user_data/v1/uploaded_files/", upload)["version"]
    assert error_of(lambda: alice.post("/user_data/v1/uploaded_files/", upload)).status == 409
    assert bob.get("/user_data/v1/uploaded_files/")["count"] == 0
    assert error_of(lambda: bob.get("/user_data/v1/uploaded_files/7/")).status == 404
    assert error_of(lambda: bob.request("DELETE", "/user_data/v1/uploaded_files/7/")).status == 404
    mh = "A" * 43
    v2 = alice.request("PATCH", "/user_data/v1/uploaded_files/7/", json={"market_hash": mh, "is_published": True})[
        "version"
    ]
    assert v2 == v1 + 1
    assert (
        error_of(lambda: alice.request("PATCH", "/user_data/v1/uploaded_files/7/", json={"client_id": 8})).status == 400
    )
    alice.post("/user_data/v1/purchased_files/", {"order_id": 3, "market_hash": mh, "title": "t"})
    alice.post("/user_data/v1/bookmarks/", {"market_hash": mh, "name": "later"})
    pulled = alice.get("/user_data/v1/pull_all/")
    assert pulled["version"] == alice.get("/user_data/v1/version/")["version"] == v2 + 2
    assert pulled["uploaded_files"][0]["market_hash"] == mh and pulled["uploaded_files"][0]["sealed_key"] == "opaque"
    assert [b["name"] for b in pulled["bookmarks"]] == ["later"] and len(pulled["purchased_files"]) == 1
    alice.request("DELETE", f"/user_data/v1/bookmarks/{mh}/")
    assert alice.get("/user_data/v1/bookmarks/")["count"] == 0
    assert bob.get("/user_data/v1/pull_all/")["uploaded_files"] == []
    for bad in ({**upload, "client_id": 9, "data_hash": "xyz"}, {**upload, "client_id": -1}, {"client_id": 10}):
        assert error_of(lambda b=bad: alice.post("/user_data/v1/uploaded_files/", b)).status == 400
    assert error_of(lambda: market.client().get("/user_data/v1/pull_all/")).status == 401


def test_curated_content_is_admin_only_to_write(market: LiveMarket) -> None:
    admin_account, admin = market.user()
    _, user = market.user()
    market.make_admin(admin_account.address)
    entry = {"name": "Launch", "image": "https://example.org/a.png", "link": "https://example.org", "position": 1}
    for kind in ("carousel", "promotions"):
        assert error_of(lambda k=kind: user.post(f"/main/v1/{k}/", entry)).status == 403
        assert error_of(lambda k=kind: market.client().post(f"/main/v1/{k}/", entry)).status == 401
        created = admin.post(f"/main/v1/{kind}/", entry)
        assert market.client().get(f"/main/v1/{kind}/")["count"] >= 1
        admin.request("PATCH", f"/main/v1/{kind}/{created['id']}/", json={"enabled": False})
        listed = [c["id"] for c in market.client().get(f"/main/v1/{kind}/")["results"]]
        assert created["id"] not in listed
        assert error_of(lambda k=kind, c=created: user.request("DELETE", f"/main/v1/{k}/{c['id']}/")).status == 403
    assert error_of(lambda: admin.post("/main/v1/carousel/", {**entry, "image": "javascript:alert(1)"})).status == 400
    tag = "hot" + secrets.token_hex(3)
    admin.post("/main/v1/hot_tags/", {"tag": tag, "position": 0})
    trending = market.client().get("/main/v1/trending_tags/")
    assert trending[0]["curated"] is True and tag in [t["tag"] for t in trending]


def test_trending_tags_come_from_listed_products(market: LiveMarket) -> None:
    seller, client = market.user()
    tag = "tr" + secrets.token_hex(3)
    for _ in range(3):
        client.publish(seller, product(seller.address, tags=[tag]))
    trending = {t["tag"]: t for t in market.client().get("/main/v1/trending_tags/", {"limit": 100})}
    assert trending[tag]["products"] == 3 and trending[tag]["curated"] is False


def announcement(account: Any, **body: Any) -> dict[str, Any]:
    fields = {"host": "127.0.0.1", "ports": {"control": 8000, "file": 8001}, "tls_fingerprint": "ab" * 32, **body}
    signed = sign_payload(
        account, "pdash-market-proxy-announce", fields, chain_id=REGISTRAR["chain_id"], contract=REGISTRAR["address"]
    )
    return {"payload": signed.payload, "signature": signed.signature}


def test_proxy_registry_accepts_only_signed_fresh_announcements(market: LiveMarket) -> None:
    proxy = Account.create()
    client = MarketClient(market.url)
    signed = announcement(proxy)
    listed = client.post("/proxy/v1/proxies/", signed)
    assert listed["address"] == proxy.address and listed["live"] is True and listed["deposit"] == "0"
    assert error_of(lambda: client.post("/proxy/v1/proxies/", signed)).status == 401  # replay
    tampered = announcement(proxy)
    tampered["payload"]["body"]["host"] = "evil.example"
    assert error_of(lambda: client.post("/proxy/v1/proxies/", tampered)).status == 401
    other_domain = sign_payload(
        proxy, "pdash-market-proxy-announce", {"host": "h"}, chain_id=1, contract="0x" + "11" * 20
    )
    body = {"payload": other_domain.payload, "signature": other_domain.signature}
    assert error_of(lambda: client.post("/proxy/v1/proxies/", body)).status == 401
    assert error_of(lambda: client.post("/proxy/v1/proxies/", announcement(proxy, ports={"ftp": 21}))).status == 400
    assert error_of(lambda: client.post("/proxy/v1/proxies/", {"payload": "x"})).status == 400
    assert client.get(f"/proxy/v1/proxies/{proxy.address}/")["host"] == "127.0.0.1"
    live = [p["address"] for p in client.get("/proxy/v1/proxies/", {"live": "1", "page_size": 100})["results"]]
    assert proxy.address in live
    assert error_of(lambda: client.get("/proxy/v1/proxies/0x" + "00" * 20 + "/")).status == 404

"""The records API in process (DRF test client, tokens from the real login flow), over
orders the indexer recorded from synthetic events."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from rest_framework.test import APIClient

from tests.market.records.conftest import chain_event, listed_product, store

pytestmark = pytest.mark.usefixtures("market_db")
PROXY = "0x" + "77" * 20
BIG_PRICE = 2**90 + 7  # beyond a double's precision: must come back exact


def logged_in(account: LocalAccount) -> APIClient:
    client = APIClient()
    challenge = client.post("/account/v1/login/", {"address": account.address}, format="json").json()
    signature = account.sign_message(encode_defunct(text=challenge["message"])).signature
    reply = client.post(
        "/account/v1/confirm/",
        {"address": account.address, "nonce": challenge["nonce"], "signature": "0x" + bytes(signature).hex()},
        format="json",
    )
    assert reply.status_code == 200, reply.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reply.json()['token']}")
    return client


def place(
    order_id: int, buyer: str, seller: str, block: int, desc_hash: bytes, price: int = 10**18, proxy2: str = PROXY
) -> None:
    args = {
        "id": order_id, "buyer": buyer, "seller": seller, "proxy": PROXY, "proxy2": proxy2, "price": price,
        "fee": 10**15, "descHash": desc_hash, "dataHash": b"\xda" * 32, "buyerKey": b"\x01" * 32,
        "endTime": 1_800_000_000,
    }  # fmt: skip
    assert store(chain_event("OrderPlaced", block, **args), sender=buyer)


def complete(order_id: int, buyer: str, seller: str, proxy: str, block: int) -> None:
    """Seller confirms, proxy fetches and delivers, buyer confirms: a sale."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("SellerConfirmed", seller, {"seller": seller, "deposit": 10**18}),
        ("ProxyFetched", proxy, {"proxy": proxy}),
        ("ProxyDelivered", proxy, {"proxy": proxy, "deliverHash": b"\xda" * 32, "confirmDeadline": 1_800_000_100}),
        ("BuyerConfirmed", buyer, {"buyer": buyer}),
    ]
    for offset, (name, sender, args) in enumerate(steps):
        assert store(chain_event(name, block + offset, id=order_id, **args), sender=sender)


@pytest.fixture
def parties() -> dict[str, LocalAccount]:
    """alice sold order 1 to bob (completed) and bought order 2 from bob (just placed);
    carol bought order 3 from dave; orders 1 and 2 are relayed by PROXY."""
    accounts = {name: Account.create() for name in ("alice", "bob", "carol", "dave")}
    a, b, c, d = (accounts[n].address for n in ("alice", "bob", "carol", "dave"))
    product = listed_product(a)
    place(1, b, a, 10, bytes.fromhex(product.desc_hash), price=BIG_PRICE)
    complete(1, b, a, PROXY, 11)
    place(2, a, b, 20, b"\x02" * 32)
    place(3, c, d, 30, b"\x03" * 32)
    return accounts


def ids(page: dict[str, Any]) -> list[int]:
    return [o["order_id"] for o in page["results"]]


def test_orders_are_private_to_their_parties(parties: dict[str, LocalAccount]) -> None:
    anonymous = APIClient().get("/records/v1/orders/")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    alice, bob, carol = (logged_in(parties[n]) for n in ("alice", "bob", "carol"))
    assert ids(alice.get("/records/v1/orders/").json()) == [2, 1]  # newest first
    assert ids(alice.get("/records/v1/orders/", {"role": "seller"}).json()) == [1]
    assert ids(alice.get("/records/v1/orders/", {"role": "buyer"}).json()) == [2]
    assert ids(bob.get("/records/v1/orders/", {"state": "finished"}).json()) == [1]
    assert ids(bob.get("/records/v1/orders/", {"state": "0"}).json()) == [2]
    assert ids(carol.get("/records/v1/orders/", {"role": "seller"}).json()) == []
    for bad in ({"role": "arbiter"}, {"state": "lost"}, {"state": "9"}, {"page": "0"}):
        reply = alice.get("/records/v1/orders/", bad)
        assert reply.status_code == 400 and reply.json()["error"]["message"], bad

    order = alice.get("/records/v1/orders/1/").json()
    assert order["state"] == "finished" and order["seller_paid"] is True
    assert order["price"] == str(BIG_PRICE) and order["product_title"] == "Hourly weather of Shanghai"
    assert order["buyer"] == parties["bob"].address and order["verdict"] == "none"
    assert order["end_time"] == 1_800_000_100  # extended by the delivery
    assert [e["event"] for e in order["events"]] == [
        "OrderPlaced", "SellerConfirmed", "ProxyFetched", "ProxyDelivered", "BuyerConfirmed",
    ]  # fmt: skip
    assert order["placed_at"].endswith("Z")
    assert bob.get("/records/v1/orders/2/").json()["product_title"] is None  # not listed here
    for client, order_id in ((carol, 1), (alice, 3), (alice, 99)):
        reply = client.get(f"/records/v1/orders/{order_id}/")
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


def test_a_proxy_sees_the_orders_it_relays() -> None:
    proxy = Account.create()
    place(5, "0x" + "b1" * 20, "0x" + "5e" * 20, 40, b"\x05" * 32, proxy2=proxy.address)
    client = logged_in(proxy)
    assert ids(client.get("/records/v1/orders/", {"role": "proxy"}).json()) == [5]
    assert ids(client.get("/records/v1/orders/", {"role": "buyer"}).json()) == []


def test_transactions_are_public_newest_first_and_filterable(parties: dict[str, LocalAccount]) -> None:
    client = APIClient()
    everything = client.get("/records/v1/transactions/").json()
    assert everything["count"] == 7
    blocks = [t["block"] for t in everything["results"]]
    assert blocks == sorted(blocks, reverse=True)
    placed = next(t for t in everything["results"] if t["order_id"] == 1 and t["event"] == "OrderPlaced")
    assert placed["args"]["price"] == str(BIG_PRICE) and placed["sender"] == parties["bob"].address
    assert placed["fee"] == str(21_000 * 10**9) and placed["block_time"].endswith("Z")

    of_order = client.get("/records/v1/transactions/", {"order_id": 1}).json()
    assert of_order["count"] == 5 and {t["order_id"] for t in of_order["results"]} == {1}
    # alice: every event of her two orders, whoever sent it
    alice = parties["alice"].address
    mine = client.get("/records/v1/transactions/", {"address": alice.lower()}).json()
    assert mine["count"] == 6 and {t["order_id"] for t in mine["results"]} == {1, 2}
    carol = client.get("/records/v1/transactions/", {"address": parties["carol"].address, "order_id": 1}).json()
    assert carol["count"] == 0

    page = client.get("/records/v1/transactions/", {"page_size": 3, "page": 2}).json()
    assert page["count"] == 7 and len(page["results"]) == 3
    assert page["next"] and "page=3" in page["next"] and "page=1" in page["previous"]
    assert page["results"] == everything["results"][3:6]
    for bad in ({"address": "0x123"}, {"order_id": "-1"}, {"order_id": "x"}, {"order_id": str(2**64)}):
        reply = client.get("/records/v1/transactions/", bad)
        assert reply.status_code == 400 and "error" in reply.json(), bad


def test_the_records_endpoints_are_in_the_schema() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/records/v1/orders/", "/records/v1/orders/{order_id}/", "/records/v1/transactions/"} <= set(
        schema["paths"]
    )
    orders = schema["paths"]["/records/v1/orders/"]["get"]
    assert {p["name"] for p in orders["parameters"]} >= {"role", "state", "page", "page_size"}

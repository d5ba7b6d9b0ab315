"""Accounts over HTTP on SQLite and MariaDB: signed-nonce login, single use, expiry, tokens,
logout, the caller's own profile, rate limiting."""

from __future__ import annotations

import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct

from cpchain.market.client import MarketClient, MarketError
from tests.market.conftest import LiveMarket, start_market, stop_market


def sign(account: object, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()  # type: ignore[attr-defined]


def challenge(market: LiveMarket, address: str) -> dict[str, str]:
    reply = requests.post(market.url + "/account/v1/login/", json={"address": address}, timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def confirm(market: LiveMarket, address: str, nonce: str, signature: str) -> requests.Response:
    body = {"address": address, "nonce": nonce, "signature": signature}
    return requests.post(market.url + "/account/v1/confirm/", json=body, timeout=10)


def test_login_gives_a_token_that_identifies_the_caller(market: LiveMarket) -> None:
    account, client = market.user()
    profile = client.get("/account/v1/profile/")
    assert profile["address"] == account.address
    assert profile["is_admin"] is False and profile["last_login"]


def test_challenge_names_market_address_and_a_random_nonce(market: LiveMarket) -> None:
    account = Account.create()
    first, second = challenge(market, account.address), challenge(market, account.address)
    assert first["nonce"] != second["nonce"] and len(first["nonce"]) >= 32
    assert f"address: {account.address}" in first["message"] and market.url in first["message"]


def test_nonce_is_single_use(market: LiveMarket) -> None:
    account = Account.create()
    ch = challenge(market, account.address)
    signature = sign(account, ch["message"])
    assert confirm(market, account.address, ch["nonce"], signature).status_code == 200
    replay = confirm(market, account.address, ch["nonce"], signature)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "bad_nonce"


def test_wrong_signer_and_malformed_signature_are_refused(market: LiveMarket) -> None:
    account, other = Account.create(), Account.create()
    ch = challenge(market, account.address)
    wrong = confirm(market, account.address, ch["nonce"], sign(other, ch["message"]))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_signature"
    malformed = confirm(market, account.address, ch["nonce"], "0x1234")
    assert malformed.status_code == 400 and "signature" in malformed.json()["error"]["message"]
    # The nonce survived the refused attempts: the right signature still works once.
    assert confirm(market, account.address, ch["nonce"], sign(account, ch["message"])).status_code == 200


def test_nonce_of_another_address_is_refused(market: LiveMarket) -> None:
    account, other = Account.create(), Account.create()
    ch = challenge(market, other.address)
    reply = confirm(market, account.address, ch["nonce"], sign(account, ch["message"]))
    assert reply.status_code == 401


def test_expired_nonce_is_refused(market: LiveMarket) -> None:
    account = Account.create()
    ch = challenge(market, account.address)
    market.sql("UPDATE account_loginnonce SET expires = '2000-01-01 00:00:00' WHERE nonce = ?", (ch["nonce"],))
    reply = confirm(market, account.address, ch["nonce"], sign(account, ch["message"]))
    assert reply.status_code == 401 and "expired" in reply.json()["error"]["message"]


@pytest.mark.parametrize("address", ["", "0x12", "not an address", "0x" + "g" * 40, 42])
def test_login_with_a_bad_address_is_a_400_naming_the_field(market: LiveMarket, address: object) -> None:
    reply = requests.post(market.url + "/account/v1/login/", json={"address": address}, timeout=10)
    assert reply.status_code == 400 and reply.json()["error"]["message"].startswith("address")


def test_expired_token_and_logout(market: LiveMarket) -> None:
    account, client = market.user()
    client.logout()
    with pytest.raises(MarketError) as revoked:
        client.get("/account/v1/profile/")
    assert revoked.value.status == 401
    client.login(account)
    market.sql(
        "UPDATE account_authtoken SET expires = '2000-01-01 00:00:00' WHERE user_id = "
        "(SELECT id FROM account_walletuser WHERE address = ?)",
        (account.address,),
    )
    with pytest.raises(MarketError, match="expired") as expired:
        client.get("/account/v1/profile/")
    assert expired.value.status == 401


@pytest.mark.parametrize("header", ["Bearer nonsense", "Token abc", "Bearer " + "x" * 300])
def test_bad_tokens_are_401(market: LiveMarket, header: str) -> None:
    reply = requests.get(market.url + "/account/v1/profile/", headers={"Authorization": header}, timeout=10)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "not_authenticated"


def test_profile_is_always_the_callers(market: LiveMarket) -> None:
    account, client = market.user()
    victim, victim_client = market.user()
    updated = client.request(
        "PATCH", "/account/v1/profile/", json={"username": "alice", "address": victim.address, "is_admin": True}
    )
    assert updated["address"] == account.address and updated["username"] == "alice" and updated["is_admin"] is False
    assert victim_client.get("/account/v1/profile/")["username"] == ""
    public = market.client().get(f"/account/v1/users/{account.address}/", auth=False)
    assert public == {**public, "address": account.address, "username": "alice"} and "email" not in public


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"avatar": "file:///etc/passwd"}, "avatar"),
        ({"username": "x" * 51}, "username"),
    ],
)
def test_profile_rejects_bad_fields(market: LiveMarket, body: dict[str, str], field: str) -> None:
    _, client = market.user()
    with pytest.raises(MarketError, match=field) as err:
        client.request("PATCH", "/account/v1/profile/", json=body)
    assert err.value.status == 400


def test_unknown_user_and_unauthenticated_profile(market: LiveMarket) -> None:
    with pytest.raises(MarketError) as missing:
        market.client().get("/account/v1/users/0x" + "12" * 20 + "/")
    assert missing.value.status == 404
    with pytest.raises(MarketError) as anonymous:
        market.client().get("/account/v1/profile/")
    assert anonymous.value.status == 401


def test_login_attempts_are_rate_limited(tmp_path_factory: pytest.TempPathFactory) -> None:
    live = start_market(tmp_path_factory.mktemp("market-throttle"), "sqlite", login_rate="3/min", workers=1)
    try:
        codes = [challenge_status(live) for _ in range(5)]
    finally:
        stop_market(live)
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


def challenge_status(live: LiveMarket) -> int:
    reply = requests.post(live.url + "/account/v1/login/", json={"address": Account.create().address}, timeout=10)
    if reply.status_code == 429:
        assert reply.json()["error"]["code"] == "throttled" and int(reply.headers["Retry-After"]) > 0
    return reply.status_code


def test_client_reports_an_unreachable_market() -> None:
    client = MarketClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(MarketError, match="unreachable"):
        client.search()

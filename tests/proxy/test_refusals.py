"""What a proxy refuses on its control channel, each with its specific status, and idempotent retries.

Every refusal leaves the order untouched on chain and the proxy serving; the replies are
still signed by the proxy.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpchain.chain.connection import time_travel
from cpchain.proxy.client import BadReply, ProxyRefused
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import HEADER, Endpoint, frame
from cpchain.storage.base import Locator
from cpchain.types import OrderState
from tests.proxy.conftest import Chain, ProxyProc, bonded_account, exchange, make_trade, seller_envelope


def status_of(chain: Chain, proxy: ProxyProc, envelope: bytes) -> pb.Reply:
    return exchange(chain, proxy.endpoint, frame(envelope))


def assert_refused(reply: pb.Reply, status: int, fragment: str = "") -> None:
    assert pb.Status.Name(reply.status) == pb.Status.Name(status), reply.error  # type: ignore[arg-type]
    assert fragment in reply.error


def fetched_events(chain: Chain, order_id: int) -> int:
    escrow = chain.world.escrow
    logs = escrow.contract.events.ProxyFetched().get_logs(argument_filters={"id": order_id},
                                                          from_block=escrow.deployment.block)  # fmt: skip
    return len(logs)


@pytest.fixture(scope="module")
def strict(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProc]:
    """A proxy that fetches only `proxy` locators, refuses internal addresses and only knows 127.0.0.1."""
    home = tmp_path_factory.mktemp("strict")
    policy = {"fetch_types": ["proxy"], "fetch_allow_internal": False, "fetch_hosts": ["127.0.0.1"]}
    proc = ProxyProc("strict", home, chain, bonded_account(chain), dict(policy))
    proc.start()
    yield proc
    proc.stop()


def test_seller_data_from_someone_else_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    for impostor in ("buyer", "other"):
        assert_refused(status_of(chain, proxy, seller_envelope(chain, trade, signer=impostor)), pb.WRONG_SIGNER)
    assert chain.world.escrow.status(trade.order_id).state is OrderState.SELLER_CONFIRMED


def test_a_proxy_that_is_not_the_orders_refuses(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    trade = make_trade(chain, proxies["proxy2"].address)
    assert_refused(status_of(chain, proxies["proxy"], seller_envelope(chain, trade)), pb.NOT_THIS_PROXY)


def test_an_order_the_seller_has_not_confirmed_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, confirm=False)
    assert_refused(status_of(chain, proxy, seller_envelope(chain, trade)), pb.WRONG_STATE, "CREATED")


def test_an_unknown_order_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    reply = status_of(chain, proxy, seller_envelope(chain, trade, order_id=10_000))
    assert_refused(reply, pb.UNKNOWN_ORDER)


def test_a_product_other_than_the_ordered_one_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    other = trade.product.to_dict() | {"title": "something else"}
    import json

    reply = status_of(chain, proxy, seller_envelope(chain, trade, product=json.dumps(other)))
    assert_refused(reply, pb.DESC_HASH_MISMATCH)


def test_a_locator_of_another_storage_type_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    locator = Locator("proxy", {"url": "https://127.0.0.1:1/store/" + "ab" * 32, "fingerprint": "cd" * 32})
    reply = status_of(chain, proxy, seller_envelope(chain, trade, locator=locator.to_json()))
    assert_refused(reply, pb.STORAGE_TYPE_MISMATCH)


def test_a_key_grant_for_another_order_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    first, second = make_trade(chain, proxy.address), make_trade(chain, proxy.address)
    grant = pb.SellerData()
    grant.ParseFromString(
        pb.Request.FromString(_message(seller_envelope(chain, first))).seller_data.SerializeToString()
    )
    reply = status_of(chain, proxy, seller_envelope(chain, second, key_grant=grant.key_grant))
    assert_refused(reply, pb.BAD_KEY_GRANT, "another order")


def _message(envelope: bytes) -> bytes:
    return bytes(pb.Envelope.FromString(envelope).message)


def test_a_replayed_request_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    envelope = seller_envelope(chain, trade)
    assert status_of(chain, proxy, envelope).status == pb.OK
    assert_refused(status_of(chain, proxy, envelope), pb.REPLAYED)


def test_a_tampered_request_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    envelope = pb.Envelope.FromString(seller_envelope(chain, trade))
    request = pb.Request.FromString(envelope.message)
    request.seller_data.locator = Locator("local", {"path": "/etc/passwd"}).to_json()
    envelope.message = request.SerializeToString()
    assert_refused(status_of(chain, proxy, envelope.SerializeToString()), pb.BAD_SIGNATURE)


def test_ciphertext_other_than_the_ordered_one_is_refused_and_a_correct_retry_succeeds(
    chain: Chain, proxies: dict[str, ProxyProc], tmp_path: Path
) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(trade.ciphertext.read_bytes()[:-1] + b"\x00")
    from cpchain.storage.local import LocalStorage

    bad = LocalStorage(proxy.seller_files).upload(wrong)
    assert_refused(status_of(chain, proxy, seller_envelope(chain, trade, locator=bad.to_json())), pb.DATA_HASH_MISMATCH)
    assert chain.world.escrow.status(trade.order_id).state is OrderState.SELLER_CONFIRMED
    assert status_of(chain, proxy, seller_envelope(chain, trade)).status == pb.OK
    assert chain.world.escrow.status(trade.order_id).state is OrderState.PROXY_FETCHED


def test_an_expired_order_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, time_allowed=600)
    time_travel(chain.world.w3, 601)
    assert_refused(status_of(chain, proxy, seller_envelope(chain, trade)), pb.DEADLINE_PASSED)


def test_locators_outside_the_operators_policy_are_refused(
    chain: Chain, proxies: dict[str, ProxyProc], strict: ProxyProc
) -> None:
    internal = proxies["proxy2"].endpoint
    path = "/store/" + "ab" * 32
    cases = {
        "internal": Locator("proxy", {"url": internal.file_url(path), "fingerprint": internal.fingerprint}),
        "unlisted": Locator(
            "proxy", {"url": f"https://localhost:{internal.file_port}{path}", "fingerprint": internal.fingerprint}
        ),
    }
    for name, locator in cases.items():
        trade = make_trade(chain, strict.address, storage_type="proxy")
        reply = status_of(chain, strict, seller_envelope(chain, trade, locator=locator.to_json()))
        assert_refused(reply, pb.FETCH_REFUSED, "internal address" if name == "internal" else "allow list")
        assert chain.world.escrow.status(trade.order_id).state is OrderState.SELLER_CONFIRMED
    trade = make_trade(chain, strict.address)  # local storage is not in this proxy's fetch_types
    assert_refused(status_of(chain, strict, seller_envelope(chain, trade)), pb.FETCH_REFUSED, "'local'")


def test_a_local_path_outside_the_roots_is_refused(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    locator = Locator("local", {"path": str(proxy.home / "proxy" / "proxy.db")})
    reply = status_of(chain, proxy, seller_envelope(chain, trade, locator=locator.to_json()))
    assert_refused(reply, pb.FETCH_REFUSED, "outside")


def test_buyer_requests_are_checked(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address)
    with pytest.raises(ProxyRefused) as early:
        chain.client("buyer").send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    assert early.value.status == pb.NOT_READY
    assert status_of(chain, proxy, seller_envelope(chain, trade)).status == pb.OK
    for stranger in ("seller", "other"):
        with pytest.raises(ProxyRefused) as wrong:
            chain.client(stranger).send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
        assert wrong.value.status == pb.WRONG_SIGNER
    grant = chain.client("buyer").send_buyer_data(proxy.endpoint, trade.order_id, trade.terms)
    assert grant.wrapped_key and grant.size == trade.ciphertext.stat().st_size


def test_retries_and_concurrent_duplicates_get_the_first_answer(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, size=4 << 20)
    seller = chain.client("seller")

    def send() -> str:
        receipt = seller.send_seller_data(proxy.endpoint, trade.order_id, trade.product, trade.locator.to_json(),
                                          wrapped_key=trade.wrapped_key, buyer_key=trade.terms.buyer_key)  # fmt: skip
        return receipt.fetched_tx

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = set(pool.map(lambda _: send(), range(4)))
    assert len(answers) == 1 and answers.pop().startswith("0x")
    assert send() and fetched_events(chain, trade.order_id) == 1
    fetches = [line for line in proxy.log.read_text().splitlines() if f"order {trade.order_id}: fetched and" in line]
    assert len(fetches) == 1


def test_malformed_and_oversized_frames_get_an_error_reply(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    assert_refused(exchange(chain, proxy.endpoint, frame(os.urandom(100))), pb.MALFORMED)
    assert_refused(exchange(chain, proxy.endpoint, HEADER.pack(10 << 20) + b"x" * 100), pb.FRAME_TOO_LARGE)
    assert_refused(exchange(chain, proxy.endpoint, frame(pb.Envelope(message=b"", signed="{}").SerializeToString())),
                   pb.MALFORMED)  # fmt: skip
    # the proxy is still serving
    trade = make_trade(chain, proxy.address)
    assert status_of(chain, proxy, seller_envelope(chain, trade)).status == pb.OK


def test_replies_must_come_from_the_pinned_proxy(chain: Chain, proxies: dict[str, ProxyProc]) -> None:
    proxy = proxies["proxy"]
    trade = make_trade(chain, proxy.address, proxy2=proxies["proxy2"].address)
    right = proxy.endpoint
    impostor = Endpoint(proxies["proxy2"].address, right.host, right.control_port, right.file_port, right.fingerprint)
    with pytest.raises(BadReply, match="not valid"):  # proxy answers, but the client expected proxy2's signature
        chain.client("buyer").send_buyer_data(impostor, trade.order_id, trade.terms)
    unpinned = Endpoint(right.address, right.host, right.control_port, right.file_port, secrets.token_hex(32))
    with pytest.raises(BadReply, match="pinned"):
        chain.client("buyer").send_buyer_data(unpinned, trade.order_id, trade.terms)
    stranger = Endpoint(
        chain.world.address("other"), right.host, right.control_port, right.file_port, right.fingerprint
    )
    with pytest.raises(BadReply, match="not one of the order's proxies"):
        chain.client("buyer").send_buyer_data(stranger, trade.order_id, trade.terms)

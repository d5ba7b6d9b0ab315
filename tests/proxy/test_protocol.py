"""Wire formats without a network: frames, signed envelopes, tokens, the store, generated code."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.crypto.signing import MemoryNonceStore
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import (
    HEADER,
    PURPOSE_BUYER,
    PURPOSE_DOWNLOAD,
    PURPOSE_REPLY,
    PURPOSE_SELLER,
    PURPOSE_UPLOAD,
    Domain,
    FrameReader,
    FrameTooLarge,
    ProtocolError,
    authorization,
    body_address,
    body_int,
    download_token,
    frame,
    open_envelope,
    order_id_of,
    parse_request,
    read_token,
    seal,
    upload_token,
)
from cpchain.proxy.store import ClaimKind, ClaimState, Stage, TradeStore, Upload

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = Domain(31337, "0x" + "22" * 20)
ALICE: LocalAccount = Account.create()


def status(exc: pytest.ExceptionInfo[ProtocolError]) -> str:
    return pb.Status.Name(exc.value.status)  # type: ignore[arg-type]


def test_frames_survive_any_split_and_oversize_is_refused_from_the_header() -> None:
    payloads = [b"", b"a", os.urandom(1000)]
    stream = b"".join(frame(p) for p in payloads)
    reader = FrameReader(2000)
    got: list[bytes] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got == payloads and reader.pending == 0
    with pytest.raises(FrameTooLarge):
        FrameReader(100).feed(HEADER.pack(101))
    with pytest.raises(FrameTooLarge):
        frame(b"x" * 101, max_frame=100)


def test_envelopes_verify_signer_purpose_domain_expiry_and_nonce() -> None:
    request = pb.Request(buyer_data=pb.BuyerData(order_id=5)).SerializeToString()
    envelope = seal(ALICE, PURPOSE_BUYER, request, DOMAIN)
    nonces = MemoryNonceStore()
    opened = open_envelope(envelope, purpose=PURPOSE_BUYER, domain=DOMAIN, nonce_store=nonces)
    assert opened.signer == ALICE.address and opened.message == request
    with pytest.raises(ProtocolError) as replay:
        open_envelope(envelope, purpose=PURPOSE_BUYER, domain=DOMAIN, nonce_store=nonces)
    assert status(replay) == "REPLAYED"
    cases = {
        "purpose": {"purpose": PURPOSE_SELLER, "domain": DOMAIN},
        "chain": {"purpose": PURPOSE_BUYER, "domain": Domain(1, DOMAIN.contract)},
        "contract": {"purpose": PURPOSE_BUYER, "domain": Domain(DOMAIN.chain_id, "0x" + "33" * 20)},
    }
    for kwargs in cases.values():
        with pytest.raises(ProtocolError) as wrong:
            open_envelope(envelope, nonce_store=None, **kwargs)  # type: ignore[arg-type]
        assert status(wrong) == "BAD_SIGNATURE"
    with pytest.raises(ProtocolError) as other:
        open_envelope(envelope, purpose=PURPOSE_BUYER, domain=DOMAIN, nonce_store=None,
                      expected_signer=Account.create().address)  # fmt: skip
    assert status(other) == "BAD_SIGNATURE"
    with pytest.raises(ProtocolError) as late:
        open_envelope(envelope, purpose=PURPOSE_BUYER, domain=DOMAIN, nonce_store=None, now=lambda: time.time() + 400)
    assert status(late) == "EXPIRED"


def test_a_tampered_message_is_refused_without_using_the_nonce() -> None:
    envelope = pb.Envelope.FromString(seal(ALICE, PURPOSE_REPLY, b"genuine", DOMAIN))
    forged = pb.Envelope(message=b"forged", signed=envelope.signed).SerializeToString()
    nonces = MemoryNonceStore()
    with pytest.raises(ProtocolError) as info:
        open_envelope(forged, purpose=PURPOSE_REPLY, domain=DOMAIN, nonce_store=nonces)
    assert status(info) == "BAD_SIGNATURE" and len(nonces) == 0


@pytest.mark.parametrize(
    "raw",
    [
        os.urandom(64),
        pb.Envelope(message=b"\xff\xff", signed="{}").SerializeToString(),
        seal(ALICE, PURPOSE_BUYER, b"\x08\x01", DOMAIN),  # a Request with neither body
        seal(ALICE, PURPOSE_BUYER, b"\xff\xff\xff", DOMAIN),
    ],
    ids=["random", "bad envelope", "no body", "bad message"],
)
def test_unreadable_requests_are_malformed(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(raw)
    assert status(info) == "MALFORMED"


def test_order_ids_must_be_positive() -> None:
    with pytest.raises(ProtocolError):
        order_id_of(pb.Request(buyer_data=pb.BuyerData(order_id=0)))
    assert order_id_of(pb.Request(seller_data=pb.SellerData(order_id=9))) == 9


def test_tokens() -> None:
    proxy = Account.create().address
    header = authorization(download_token(ALICE, order_id=3, proxy=proxy, domain=DOMAIN))
    verified = read_token(header, purpose=PURPOSE_DOWNLOAD, domain=DOMAIN, nonce_store=None)
    assert verified.signer == ALICE.address
    assert body_int(verified.body, "order_id") == 3 and body_address(verified.body, "proxy") == proxy
    for bad, code in [(None, "BAD_SIGNATURE"), ("Bearer x", "MALFORMED"), ("PDash-Token %%%", "MALFORMED"),
                      ("PDash-Token " + "A" * 9000, "MALFORMED")]:  # fmt: skip
        with pytest.raises(ProtocolError) as info:
            read_token(bad, purpose=PURPOSE_DOWNLOAD, domain=DOMAIN, nonce_store=None)
        assert status(info) == code
    with pytest.raises(ProtocolError) as purpose:
        read_token(header, purpose=PURPOSE_UPLOAD, domain=DOMAIN, nonce_store=None)
    assert status(purpose) == "BAD_SIGNATURE"
    upload = authorization(upload_token(ALICE, proxy=proxy, size=10, sha256="ab" * 32, domain=DOMAIN))
    nonces = MemoryNonceStore()
    read_token(upload, purpose=PURPOSE_UPLOAD, domain=DOMAIN, nonce_store=nonces)
    with pytest.raises(ProtocolError) as again:
        read_token(upload, purpose=PURPOSE_UPLOAD, domain=DOMAIN, nonce_store=nonces)
    assert status(again) == "REPLAYED"
    with pytest.raises(ProtocolError):
        body_int({"order_id": "-1"}, "order_id")
    with pytest.raises(ProtocolError):
        body_address({"proxy": "0x12"}, "proxy")


def test_the_store_keeps_one_trade_per_order_and_every_claim_step(tmp_path: Path) -> None:
    store = TradeStore(tmp_path / "proxy.db")
    fields = {"seller": "s", "buyer": "b", "product": "{}", "locator": "{}", "key_grant": "{}", "data_hash": "ab"}
    assert store.begin_trade(order_id=1, now=1, **fields)
    assert not store.begin_trade(order_id=1, now=2, **fields)
    store.mark_fetched(1, 100, 3)
    store.mark_ready(1, b"first")
    store.mark_ready(1, b"second")
    trade = store.get(1)
    assert trade is not None and trade.stage is Stage.READY and trade.seller_reply == b"first" and trade.size == 100
    store.set_stage(1, Stage.FAILED, "gone")
    assert store.begin_trade(order_id=1, now=4, **fields)  # a failed trade may start over
    assert store.get(1).stage is Stage.FETCHING  # type: ignore[union-attr]

    assert store.claim(1, ClaimKind.FETCHED) is None
    store.claim_intent(1, ClaimKind.FETCHED, 5)
    store.claim_update(1, ClaimKind.FETCHED, ClaimState.SENT, 6, tx_hash="0xaa")
    store.claim_update(1, ClaimKind.FETCHED, ClaimState.CONFIRMED, 7)
    claim = store.claim(1, ClaimKind.FETCHED)
    assert claim is not None and claim.state is ClaimState.CONFIRMED and claim.tx_hash == "0xaa" and claim.attempts == 1
    store.claim_update(2, ClaimKind.DELIVERED, ClaimState.CONFIRMED, 8)  # recorded even without an intent
    assert store.claim(2, ClaimKind.DELIVERED) is not None
    assert [c.order_id for c in store.claims_in(ClaimState.CONFIRMED)] == [1, 2]

    assert store.add_served(1, [(10, 20), (0, 10)]) == [(0, 20)]
    assert store.add_served(1, [(30, 40)]) == [(0, 20), (30, 40)] == store.served(1)
    assert store.add_served(99, [(0, 1)]) == []

    store.mark_removed(1, 10)
    assert store.purge(removed_before=10) == 0 and store.purge(removed_before=11) == 1
    assert store.get(1) is None and store.claim(1, ClaimKind.FETCHED) is None

    store.add_upload(Upload("ab" * 32, "s", 5, "cd" * 32, 100))
    assert store.upload("ab" * 32) is not None and store.uploads_before(101)[0].size == 5
    store.delete_upload("ab" * 32)
    assert store.upload("ab" * 32) is None
    store.close()


def test_the_generated_protobuf_code_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "proxy" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.stale_files() == [], "cpchain/proxy/proto/trade.proto changed: run scripts/proxy/gen_proto.py"

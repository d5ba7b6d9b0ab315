"""Tests for cpchain.crypto.signing: EIP-191 signed payloads and nonce stores."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from hypothesis import given, settings
from hypothesis import strategies as st

from cpchain.crypto import (
    ExpiredMessage,
    InvalidArgument,
    InvalidPayload,
    MalformedMessage,
    MemoryNonceStore,
    NonceStore,
    ReplayedMessage,
    SignedMessage,
    SqliteNonceStore,
    VerificationFailed,
    WrongDomain,
    WrongPurpose,
    WrongSigner,
    canonical_json,
    recover_signer,
    sign_payload,
    verify_payload,
)

CHAIN = 1337
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_CONTRACT = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PURPOSE = "market.buy"
T0 = 1_700_000_000.0

Clock = Callable[[], float]


def make(account: LocalAccount, clock: Clock, **kw: Any) -> SignedMessage:
    body = kw.pop("body", {"order": 7, "price_wei": "1000000000000000000"})
    kw.setdefault("chain_id", CHAIN)
    kw.setdefault("contract", CONTRACT)
    purpose = kw.pop("purpose", PURPOSE)
    return sign_payload(account, purpose, body, now=clock, **kw)


def verify(msg: Any, clock: Clock, store: NonceStore | None = None, **kw: Any) -> Any:
    kw.setdefault("purpose", PURPOSE)
    kw.setdefault("chain_id", CHAIN)
    kw.setdefault("contract", CONTRACT)
    return verify_payload(msg, nonce_store=store, now=clock, **kw)


# --- happy path -----------------------------------------------------------------


def test_sign_and_verify(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, ttl=120)
    p = msg.payload
    assert set(p) == {"purpose", "chain_id", "contract", "nonce", "expires", "signer", "body"}
    assert p["signer"] == signer.address and p["expires"] == int(T0) + 120
    assert len(p["nonce"]) == 32
    assert msg.signature.startswith("0x") and len(msg.signature) == 132
    store = MemoryNonceStore(now=clock)
    v = verify(msg, clock, store, expected_signer=signer.address)
    assert v.signer == signer.address
    assert v.body == {"order": 7, "price_wei": "1000000000000000000"}
    assert v.nonce == p["nonce"] and v.expires == p["expires"] and v.purpose == PURPOSE


def test_signed_text_is_canonical_eip191(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, body={"b": [1, 2], "a": "ü"})
    text = msg.text
    assert text == json.dumps(msg.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert "\\u00fc" in text and " " not in text
    assert text == canonical_json(msg.payload)
    # any EIP-191 implementation (e.g. a browser wallet) recovers the same signer
    recovered = Account.recover_message(encode_defunct(text=text), signature=msg.signature)
    assert recovered == signer.address
    assert recover_signer(text, msg.signature) == signer.address
    assert recover_signer(text, bytes.fromhex(msg.signature[2:])) == signer.address


def test_contract_is_checksummed(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, contract=CONTRACT.lower())
    assert msg.payload["contract"] == CONTRACT
    verify(msg, clock, contract=CONTRACT.lower())


def test_json_round_trip(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    wire = msg.to_json()
    assert SignedMessage.from_json(wire) == msg
    assert SignedMessage.from_json(wire.encode()) == msg
    assert SignedMessage.from_json(json.loads(wire)) == msg
    for form in (msg, wire, wire.encode(), json.loads(wire)):
        assert verify(form, clock).signer == signer.address


def test_custom_nonce_and_tuple_body(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, nonce="order-42_a", body={"items": (1, 2), "ok": True, "n": None})
    assert msg.payload["nonce"] == "order-42_a"
    assert verify(msg, clock).body == {"items": [1, 2], "ok": True, "n": None}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**256), 2**256) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None)
@given(body=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_round_trip_property(body: dict[str, Any]) -> None:
    acct = Account.from_key(b"\x33" * 32)
    clock = lambda: T0  # noqa: E731
    msg = sign_payload(acct, PURPOSE, body, chain_id=CHAIN, contract=CONTRACT, now=clock)
    again = SignedMessage.from_json(msg.to_json())
    assert verify(again, clock, MemoryNonceStore(now=clock)).body == body


# --- refusals ---------------------------------------------------------------------


def test_wrong_signer_claimed(signer: LocalAccount, other_signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    forged = SignedMessage(payload=dict(msg.payload, signer=other_signer.address), signature=msg.signature)
    with pytest.raises(WrongSigner):
        verify(forged, clock)


def test_signature_by_someone_else(signer: LocalAccount, other_signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    other_sig = other_signer.sign_message(encode_defunct(text=msg.text)).signature
    forged = SignedMessage(payload=msg.payload, signature="0x" + bytes(other_sig).hex())
    with pytest.raises(WrongSigner):
        verify(forged, clock)


def test_tampered_body(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    tampered = SignedMessage(payload=dict(msg.payload, body={"order": 8}), signature=msg.signature)
    with pytest.raises(WrongSigner):
        verify(tampered, clock)


def test_unexpected_signer(signer: LocalAccount, other_signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    with pytest.raises(WrongSigner):
        verify(msg, clock, expected_signer=other_signer.address)
    with pytest.raises(WrongSigner):
        verify(msg, clock, expected_signer=[other_signer.address])
    with pytest.raises(WrongSigner):
        verify(msg, clock, expected_signer=[])
    verify(msg, clock, expected_signer=[other_signer.address, signer.address.lower()])
    verify(msg, clock, expected_signer=iter([signer.address]))


def test_bad_expected_signer_argument(signer: LocalAccount, clock: Any) -> None:
    with pytest.raises(InvalidArgument):
        verify(make(signer, clock), clock, expected_signer="nope")
    with pytest.raises(InvalidArgument):
        verify(make(signer, clock), clock, contract="nope")


def test_expired(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, ttl=60)
    clock.advance(60)
    verify(msg, clock)  # exactly at expiry: still valid
    clock.advance(1)
    with pytest.raises(ExpiredMessage):
        verify(msg, clock)


def test_ttl_longer_than_allowed(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, ttl=7200)
    with pytest.raises(ExpiredMessage, match="lifetime"):
        verify(msg, clock)
    verify(msg, clock, max_ttl=7200)
    with pytest.raises(ExpiredMessage):
        verify(make(signer, clock, ttl=100), clock, max_ttl=99)


def test_other_purpose(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock, purpose="market.sell")
    with pytest.raises(WrongPurpose):
        verify(msg, clock)


def test_other_chain(signer: LocalAccount, clock: Any) -> None:
    with pytest.raises(WrongDomain, match="chain"):
        verify(make(signer, clock, chain_id=1), clock)


def test_other_contract(signer: LocalAccount, clock: Any) -> None:
    with pytest.raises(WrongDomain, match="contract"):
        verify(make(signer, clock, contract=OTHER_CONTRACT), clock)


def test_replayed(signer: LocalAccount, clock: Any) -> None:
    store = MemoryNonceStore(now=clock)
    msg = make(signer, clock)
    verify(msg, clock, store)
    with pytest.raises(ReplayedMessage):
        verify(msg.to_json(), clock, store)
    verify(msg, clock, MemoryNonceStore(now=clock))  # another store has not seen it
    verify(msg, clock, None)  # no store: caller accepted replays


def test_refused_message_does_not_burn_nonce(signer: LocalAccount, clock: Any) -> None:
    store = MemoryNonceStore(now=clock)
    msg = make(signer, clock)
    with pytest.raises(WrongPurpose):
        verify(msg, clock, store, purpose="other")
    verify(msg, clock, store)


def test_same_nonce_different_signers(signer: LocalAccount, other_signer: LocalAccount, clock: Any) -> None:
    store = MemoryNonceStore(now=clock)
    verify(make(signer, clock, nonce="abc"), clock, store)
    verify(make(other_signer, clock, nonce="abc"), clock, store)
    with pytest.raises(ReplayedMessage):
        verify(make(signer, clock, nonce="abc"), clock, store)


def test_errors_share_a_base(signer: LocalAccount, clock: Any) -> None:
    with pytest.raises(VerificationFailed):
        verify(make(signer, clock), clock, purpose="x")


# --- malformed input -------------------------------------------------------------------


def _wire(signer: LocalAccount, clock: Any) -> dict[str, Any]:
    wire: dict[str, Any] = json.loads(make(signer, clock).to_json())
    return wire


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.pop("signature"),
        lambda w: w.update(extra=1),
        lambda w: w.update(signature="0x1234"),
        lambda w: w.update(signature="0x" + "zz" * 65),
        lambda w: w.update(signature=123),
        lambda w: w["payload"].pop("nonce"),
        lambda w: w["payload"].update(extra=1),
        lambda w: w["payload"].update(chain_id=True),
        lambda w: w["payload"].update(chain_id="1337"),
        lambda w: w["payload"].update(chain_id=0),
        lambda w: w["payload"].update(expires=-1),
        lambda w: w["payload"].update(expires=1.5),
        lambda w: w["payload"].update(purpose=""),
        lambda w: w["payload"].update(purpose="x" * 129),
        lambda w: w["payload"].update(nonce="has space"),
        lambda w: w["payload"].update(nonce=""),
        lambda w: w["payload"].update(contract=CONTRACT.lower()),
        lambda w: w["payload"].update(contract="0x1234"),
        lambda w: w["payload"].update(signer=None),
        lambda w: w["payload"].update(body=[1]),
        lambda w: w["payload"].update(body={"price": 1.5}),
        lambda w: w.update(payload="text"),
    ],
)
def test_malformed_fields(signer: LocalAccount, clock: Any, mutate: Any) -> None:
    wire = _wire(signer, clock)
    mutate(wire)
    with pytest.raises(MalformedMessage):
        SignedMessage.from_json(json.dumps(wire))
    with pytest.raises(MalformedMessage):
        verify(json.dumps(wire), clock)


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "[]", "null", "{", '{"payload": {}, "signature": "0x"}', "[" * 100_000 + "]" * 100_000],
)
def test_malformed_json(raw: str, clock: Any) -> None:
    with pytest.raises(MalformedMessage):
        verify(raw, clock)


def test_oversized_message(clock: Any) -> None:
    with pytest.raises(MalformedMessage, match="too large"):
        SignedMessage.from_json("x" * (2 << 20))


def test_deeply_nested_body(signer: LocalAccount, clock: Any) -> None:
    body: Any = {}
    for _ in range(40):
        body = {"a": body}
    with pytest.raises(InvalidPayload):
        make(signer, clock, body=body)


def test_directly_built_message_is_validated(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    with pytest.raises(MalformedMessage):
        verify(SignedMessage(payload=msg.payload, signature="0xdead"), clock)
    with pytest.raises(MalformedMessage):
        verify(SignedMessage(payload={"x": 1}, signature=msg.signature), clock)


def test_unrecoverable_signature(signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    for sig in ("0x" + "00" * 65, "0x" + "ff" * 64 + "1c", "0x" + "01" * 64 + "05"):
        with pytest.raises(MalformedMessage):
            verify(SignedMessage(payload=msg.payload, signature=sig), clock)
    with pytest.raises(MalformedMessage):
        recover_signer("text", b"\x00" * 64)


@pytest.mark.parametrize(
    "kw",
    [
        {"body": {"price": 1.5}},
        {"body": {1: "int key"}},
        {"body": {"x": object()}},
        {"body": {"x": float("nan")}},
        {"body": ["not", "a", "mapping"]},
        {"contract": "0x1234"},
        {"contract": 42},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": True},
        {"chain_id": 0},
        {"chain_id": "1"},
        {"purpose": ""},
        {"nonce": "bad nonce"},
        {"nonce": "x" * 129},
        {"body": {"big": "x" * (1 << 20)}},
    ],
)
def test_sign_payload_rejects_bad_input(signer: LocalAccount, clock: Any, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        make(signer, clock, **kw)


# --- nonce stores -------------------------------------------------------------------------


def test_memory_store_basics_and_expiry(clock: Any) -> None:
    store = MemoryNonceStore(now=clock)
    assert isinstance(store, NonceStore)
    exp = int(clock()) + 10
    assert store.check_and_store("A", "n1", exp)
    assert not store.check_and_store("A", "n1", exp)
    assert store.check_and_store("B", "n1", exp)
    assert store.check_and_store("A", "n2", exp + 100)
    assert len(store) == 3
    clock.advance(10)
    assert not store.check_and_store("A", "n1", exp)  # at expiry: still remembered
    clock.advance(1)
    assert len(store) == 1  # expired entries are forgotten: bounded memory
    assert store.check_and_store("A", "n1", exp + 100)


def test_memory_store_thread_safety(clock: Any) -> None:
    store = MemoryNonceStore(now=clock)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for i in range(200):
            ok = store.check_and_store("A", f"n{i}", int(clock()) + 60)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 200


def test_sqlite_store_basics_and_expiry(tmp_path: Path, clock: Any) -> None:
    with SqliteNonceStore(tmp_path / "n.db", now=clock) as store:
        assert isinstance(store, NonceStore)
        exp = int(clock()) + 10
        assert store.check_and_store("A", "n1", exp)
        assert not store.check_and_store("A", "n1", exp)
        assert store.check_and_store("B", "n1", exp)
        assert len(store) == 2
        clock.advance(10)
        assert not store.check_and_store("A", "n1", exp)
        clock.advance(1)
        assert store.check_and_store("A", "n1", exp + 100)
        assert len(store) == 1


def test_sqlite_store_persists_and_is_shared(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "n.db"
    a = SqliteNonceStore(path, now=clock)
    b = SqliteNonceStore(path, now=clock)
    exp = int(clock()) + 60
    assert a.check_and_store("A", "n", exp)
    assert not b.check_and_store("A", "n", exp)
    assert b.check_and_store("A", "m", exp)
    assert not a.check_and_store("A", "m", exp)
    a.close()
    b.close()
    with SqliteNonceStore(path, now=clock) as c:
        assert not c.check_and_store("A", "n", exp)


def test_sqlite_store_with_verify(tmp_path: Path, signer: LocalAccount, clock: Any) -> None:
    msg = make(signer, clock)
    with SqliteNonceStore(tmp_path / "n.db", now=clock) as a, SqliteNonceStore(tmp_path / "n.db", now=clock) as b:
        verify(msg, clock, a)
        with pytest.raises(ReplayedMessage):
            verify(msg, clock, b)


def test_sqlite_store_threads_across_instances(tmp_path: Path, clock: Any) -> None:
    stores = [SqliteNonceStore(tmp_path / "n.db", now=clock) for _ in range(2)]
    results: list[bool] = []
    lock = threading.Lock()

    def worker(store: SqliteNonceStore) -> None:
        for i in range(100):
            ok = store.check_and_store("A", f"n{i}", int(clock()) + 60)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(results) == 600 and results.count(True) == 100


def test_sqlite_store_two_processes_agree(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    code = textwrap.dedent(
        """
        import sys, time
        from cpchain.crypto import SqliteNonceStore
        store = SqliteNonceStore(sys.argv[1])
        fresh = sum(store.check_and_store("A", f"n{i}", int(time.time()) + 600) for i in range(150))
        print(fresh)
        """
    )
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], cwd=root, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o) for o in outputs) == 150

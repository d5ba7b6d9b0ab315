"""Record sealing and the subscriber's integrity checks, frames, tokens, locators (no network)."""

from __future__ import annotations

import time

import pytest
from eth_account import Account

from cpchain.crypto import aead
from cpchain.proxy.protocol import Domain
from cpchain.proxy.streams.model import Code, StreamRefused
from cpchain.proxy.streams.records import (
    Cursor,
    MissingRecords,
    RecordOpener,
    ReplayedRecord,
    TamperedRecord,
    seal,
)
from cpchain.proxy.streams.wire import (
    PURPOSE_END,
    PURPOSE_OPEN,
    PURPOSE_PUBLISH,
    PURPOSE_SUBSCRIBE,
    StreamEndpoint,
    StreamLocator,
    WireError,
    auth_header,
    channel_commitment,
    new_channel_id,
    open_request,
    pack_delivery,
    pack_records,
    publish_token,
    record_seq,
    subscribe_token,
    unpack_delivery,
    unpack_records,
    verify_request,
    verify_token,
)

KEY = aead.generate_data_key()
CHANNEL = new_channel_id()
DOMAIN = Domain(31337, Account.create().address)


def sealed(n: int, start: int = 0, channel: str = CHANNEL) -> list[bytes]:
    return [seal(KEY, channel, seq, f"record {seq}".encode()) for seq in range(start, start + n)]


def opened(items: list[tuple[int, bytes]], cursor: Cursor | None = None) -> list[bytes]:
    opener = RecordOpener(KEY, CHANNEL, cursor or Cursor(0, 0))
    return [opener.open(offset, raw).data for offset, raw in items]


def test_records_open_in_sequence_and_advance_the_cursor() -> None:
    cursor = Cursor(0, 0)
    assert opened(list(enumerate(sealed(3))), cursor) == [b"record 0", b"record 1", b"record 2"]
    assert cursor == Cursor(3, 3)
    # offsets may skip (Kafka does not promise dense offsets); sequence numbers may not
    assert opened([(10, sealed(1, 3)[0])], Cursor(3, 3)) == [b"record 3"]


def test_a_tampered_record_is_detected() -> None:
    raw = bytearray(sealed(1)[0])
    raw[-1] ^= 1
    with pytest.raises(TamperedRecord):
        opened([(0, bytes(raw))])
    with pytest.raises(TamperedRecord):  # another key
        RecordOpener(aead.generate_data_key(), CHANNEL, Cursor()).open(0, sealed(1)[0])
    with pytest.raises(TamperedRecord):  # moved from another channel
        opened([(0, sealed(1, channel=new_channel_id())[0])])
    forged_seq = bytearray(sealed(1, 1)[0])
    forged_seq[7] = 0  # claims to be record 0
    with pytest.raises(TamperedRecord):
        opened([(0, bytes(forged_seq))])
    with pytest.raises(TamperedRecord):
        opened([(0, b"\x00" * 5)])


def test_replayed_records_are_detected() -> None:
    records = sealed(3)
    with pytest.raises(ReplayedRecord):  # the same record again, at a later offset
        opened([(0, records[0]), (1, records[1]), (2, records[0])])
    with pytest.raises(ReplayedRecord):  # an offset already delivered
        opened([(0, records[0]), (0, records[1])])


def test_missing_and_reordered_records_are_detected() -> None:
    records = sealed(4)
    with pytest.raises(MissingRecords):
        opened([(0, records[0]), (1, records[2])])
    cursor = Cursor(0, 0)
    with pytest.raises(MissingRecords) as info:
        opened([(0, records[0]), (1, records[2]), (2, records[1])], cursor)
    assert info.value.position == 1
    assert cursor == Cursor(1, 1)  # still owed record 1


def test_an_unknown_start_accepts_the_first_sequence_number() -> None:
    cursor = Cursor(5, None)
    assert opened([(5, sealed(1, 42)[0]), (6, sealed(1, 43)[0])], cursor) == [b"record 42", b"record 43"]
    assert cursor == Cursor(7, 44)


def test_frames_round_trip_and_refuse_garbage() -> None:
    records = sealed(3)
    assert unpack_records(pack_records(records), 1 << 20) == records
    assert [record_seq(r) for r in records] == [0, 1, 2]
    items = [(7, records[0]), (9, records[1])]
    assert unpack_delivery(pack_delivery(items)) == items
    with pytest.raises(WireError):
        unpack_records(pack_records(records)[:-1], 1 << 20)
    with pytest.raises(WireError, match="limit"):
        unpack_records(pack_records(records), 10)
    with pytest.raises(WireError):
        unpack_records(pack_records([b"abc"]), 1 << 20)  # shorter than a sequence number
    with pytest.raises(WireError):
        unpack_delivery(pack_delivery(items)[:-3])


def test_locators_round_trip_and_are_validated() -> None:
    endpoint = StreamEndpoint(Account.create().address, "127.0.0.1", 8002, 8003, "ab" * 32)
    locator = StreamLocator(endpoint, CHANNEL)
    assert StreamLocator.from_json(locator.to_json()) == locator
    assert endpoint.ws_url("/x") == "wss://127.0.0.1:8002/x"
    for broken in ('{"type": "local"}', "[]", locator.to_json().replace("8003", "0"),
                   locator.to_json().replace(CHANNEL, "../etc")):  # fmt: skip
        with pytest.raises(WireError):
            StreamLocator.from_json(broken)


def test_the_commitment_names_one_channel_on_one_proxy() -> None:
    proxy, other = Account.create().address, Account.create().address
    assert channel_commitment(proxy, CHANNEL) == channel_commitment(proxy.lower(), CHANNEL)
    assert channel_commitment(proxy, CHANNEL) != channel_commitment(other, CHANNEL)
    assert channel_commitment(proxy, CHANNEL) != channel_commitment(proxy, new_channel_id())
    assert len(channel_commitment(proxy, CHANNEL)) == 32


def test_tokens_are_bound_to_purpose_domain_and_time() -> None:
    seller, proxy = Account.create(), Account.create().address
    token = publish_token(seller, channel=CHANNEL, proxy=proxy, domain=DOMAIN, ttl=60)
    verified = verify_token(auth_header(token), purpose=PURPOSE_PUBLISH, domain=DOMAIN, max_ttl=3600, now=time.time)
    assert verified.signer == seller.address and verified.body["channel"] == CHANNEL
    for header, purpose, domain, now in [
        (None, PURPOSE_PUBLISH, DOMAIN, time.time),
        (auth_header(token), PURPOSE_SUBSCRIBE, DOMAIN, time.time),  # a publish token cannot subscribe
        (auth_header(token), PURPOSE_PUBLISH, Domain(1, DOMAIN.contract), time.time),
        (auth_header(token), PURPOSE_PUBLISH, DOMAIN, lambda: time.time() + 120),  # expired
        ("Bearer " + token, PURPOSE_PUBLISH, DOMAIN, time.time),
    ]:
        with pytest.raises(StreamRefused) as info:
            verify_token(header, purpose=purpose, domain=domain, max_ttl=3600, now=now)
        assert info.value.code is Code.UNAUTHENTICATED
    long_lived = subscribe_token(seller, channel=CHANNEL, order_id=1, proxy=proxy, domain=DOMAIN, ttl=7200)
    with pytest.raises(StreamRefused):
        verify_token(auth_header(long_lived), purpose=PURPOSE_SUBSCRIBE, domain=DOMAIN, max_ttl=3600, now=time.time)


def test_signed_requests() -> None:
    seller, proxy = Account.create(), Account.create().address
    raw = open_request(seller, proxy=proxy, domain=DOMAIN, retention=60)
    verified = verify_request(raw, purpose=PURPOSE_OPEN, domain=DOMAIN, max_ttl=3600, now=time.time)
    assert verified.signer == seller.address and verified.body == {"proxy": proxy, "retention": "60"}
    with pytest.raises(StreamRefused):
        verify_request(raw, purpose=PURPOSE_END, domain=DOMAIN, max_ttl=3600, now=time.time)
    with pytest.raises(StreamRefused):
        verify_request(raw.replace(b'"60"', b'"61"'), purpose=PURPOSE_OPEN, domain=DOMAIN, max_ttl=3600,
                       now=time.time)  # fmt: skip

"""placeOrder's checks on both backends, and the Python-side argument checks before sending."""

from __future__ import annotations

from typing import Any

import pytest

from cpchain.chain.errors import InvalidAddress, InvalidArgument
from cpchain.chain.escrow import UINT96_MAX, ProxyAgent
from tests.chain.conftest import ETHER, PARAMS, World
from tests.chain.escrow.test_escrow_lifecycle import (
    DATA_HASH,
    FEE,
    PROXY_DEPOSIT,
    TIME_ALLOWED,
    ZERO_ADDRESS,
    agent,
    assert_solvent,
    direct,
    escrow_balance,
    place,
    refused,
    terms_of,
)


def _nothing_happened(world: World, nonce: int) -> None:
    assert world.escrow.num_orders() == 0
    assert escrow_balance(world) == 2 * PROXY_DEPOSIT
    assert world.w3.eth.get_transaction_count(world.address("buyer")) == nonce


def _raw_place(world: World, value: int, **overrides: Any) -> None:
    """placeOrder called directly (no client checks)."""
    args: dict[str, Any] = {
        "descHash": b"\x01" * 32, "dataHash": DATA_HASH, "buyerKey": b"\x02" * 32,
        "seller": world.address("seller"), "proxy": world.address("proxy"), "proxy2": world.address("proxy"),
        "fee": FEE, "timeAllowed": TIME_ALLOWED,
    }  # fmt: skip
    args.update(overrides)
    direct(world, "buyer", "placeOrder", *args.values(), value=value)


@pytest.mark.parametrize("field", ["seller", "proxy", "proxy2"])
def test_zero_address(world: World, field: str) -> None:
    with refused("zero address"):
        place(world, **{field: ZERO_ADDRESS})
    _nothing_happened(world, 0)


def test_buyer_is_seller(world: World) -> None:
    with refused("buyer is seller"):
        place(world, seller=world.address("buyer"))


@pytest.mark.parametrize(
    ("proxy", "proxy2"),
    [("buyer", "proxy"), ("seller", "proxy"), ("proxy", "buyer"), ("proxy", "seller"), ("buyer", "buyer"),
     ("seller", "seller"), ("proxy2", "seller")],
)  # fmt: skip
def test_proxy_is_a_party(world: World, proxy: str, proxy2: str) -> None:
    # even a bonded proxy may not serve its own trade
    for name in ("buyer", "seller"):
        agent(world, ProxyAgent, name).deposit(PROXY_DEPOSIT)
    with refused("proxy is a party"):
        place(world, proxy=world.address(proxy), proxy2=world.address(proxy2))
    assert world.escrow.num_orders() == 0


def test_price_must_exceed_twice_the_fee(world: World) -> None:
    for price, fee in ((2 * FEE, FEE), (2 * FEE - 1, FEE), (1, 1), (ETHER, ETHER)):
        with refused("price must exceed twice the fee"):
            place(world, price=price, fee=fee)
    with refused("price must exceed twice the fee"):  # zero price, past the client check
        _raw_place(world, 0, fee=0)
    _nothing_happened(world, 0)
    place(world, price=2 * FEE + 1, fee=FEE)
    place(world, price=1, fee=0)
    assert_solvent(world)


def test_time_allowed_bounds(world: World) -> None:
    for seconds in (1, PARAMS.min_time_allowed - 1, PARAMS.max_time_allowed + 1, 2**32 - 1):
        with refused("time allowed out of bounds"):
            place(world, time_allowed=seconds)
    _nothing_happened(world, 0)
    for seconds in (PARAMS.min_time_allowed, PARAMS.max_time_allowed):
        oid = place(world, time_allowed=seconds)
        status = world.escrow.status(oid)
        assert status.end_time - world.escrow.now() == seconds


def test_zero_hashes(world: World) -> None:
    with refused("zero data hash"):
        place(world, data_hash=b"\x00" * 32)
    with refused("zero buyer key"):
        place(world, buyer_key=b"\x00" * 32)
    oid = place(world, desc_hash=b"\x00" * 32)  # a zero description hash is allowed
    assert terms_of(world, oid).desc_hash == b"\x00" * 32


@pytest.mark.parametrize("field", ["proxy", "proxy2"])
def test_proxy_without_enough_deposit(world: World, field: str) -> None:
    with refused("proxy deposit too small"):
        place(world, **{field: world.address("other")})
    agent(world, ProxyAgent, "other").deposit(PARAMS.min_proxy_deposit - 1)
    with refused("proxy deposit too small"):
        place(world, **{field: world.address("other")})
    with refused("proxy deposit too small"):
        place(world, proxy=world.address("other"), proxy2=world.address("other"))
    # the arbiter has no deposit either: being the arbiter does not make it a proxy
    with refused("proxy deposit too small"):
        place(world, **{field: world.address("arbiter")})


@pytest.mark.parametrize("field", ["proxy", "proxy2"])
def test_unbonding_proxy_refused(world: World, field: str) -> None:
    world.proxy2.request_withdraw()
    with refused("proxy is unbonding"):
        place(world, **{field: world.address("proxy2")})


def test_distinct_proxies_both_bonded(world: World) -> None:
    oid = place(world, proxy2=world.address("proxy2"))
    terms = terms_of(world, oid)
    assert (terms.proxy, terms.proxy2) == (world.address("proxy"), world.address("proxy2"))
    oid = place(world, proxy=world.address("proxy2"), proxy2=world.address("proxy"))
    assert terms_of(world, oid).proxy == world.address("proxy2")
    assert_solvent(world)


def test_price_too_large(world: World) -> None:
    if world.backend != "anvil":
        pytest.skip("needs more than 2**96 wei in one account: only anvil can mint it")
    rich = hex(2**100)
    response = world.w3.provider.make_request("anvil_setBalance", [world.address("buyer"), rich])  # type: ignore[arg-type]
    assert "error" not in response
    with refused("price too large"):
        _raw_place(world, 2**96)
    _raw_place(world, UINT96_MAX)  # the largest price is fine
    assert terms_of(world, 1).price == UINT96_MAX
    assert_solvent(world)


# ---------------------------------------------------------------------------- client-side checks


@pytest.mark.parametrize(
    "overrides",
    [{"price": 0}, {"price": -1}, {"price": 2**96}, {"fee": -1}, {"fee": 2**96}, {"time_allowed": 0},
     {"time_allowed": -600}, {"time_allowed": 2**32}, {"desc_hash": b"\x01" * 31}, {"data_hash": b"\xda" * 33},
     {"buyer_key": b""}, {"data_hash": "0x" + "da" * 31}, {"buyer_key": "ab" * 33}],
    ids=lambda o: "-".join(f"{k}={v!r}"[:24] for k, v in o.items()),
)  # fmt: skip
def test_invalid_arguments_caught_before_sending(world: World, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        place(world, **overrides)
    _nothing_happened(world, 0)


@pytest.mark.parametrize(
    "overrides",
    [{"seller": "0x1234"}, {"seller": ""}, {"proxy": "proxy"}, {"proxy2": "0x" + "g" * 40},
     {"seller": "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"}],
    ids=["short", "empty", "word", "non-hex", "bad-checksum"],
)  # fmt: skip
def test_invalid_addresses_caught_before_sending(world: World, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidAddress):
        place(world, **overrides)
    _nothing_happened(world, 0)


def test_hex_strings_and_lowercase_addresses_accepted(world: World) -> None:
    oid = place(
        world, desc_hash="0x" + "01" * 32, data_hash="da" * 32, buyer_key="0x" + "02" * 32,
        seller=world.address("seller").lower(),
    )  # fmt: skip
    terms = terms_of(world, oid)
    assert (terms.desc_hash, terms.data_hash, terms.buyer_key) == (b"\x01" * 32, DATA_HASH, b"\x02" * 32)
    assert terms.seller == world.address("seller")


def test_non_hex_hash_string_is_an_invalid_argument(world: World) -> None:
    """Regression: escrow._bytes32 called bytes.fromhex unguarded, so a non-hex string escaped
    as a bare ValueError instead of InvalidArgument."""
    for bad in ("0x" + "zz" * 32, "0x" + "d" * 63, "not hex at all"):
        with pytest.raises(InvalidArgument):
            place(world, data_hash=bad)
    _nothing_happened(world, 0)

"""The product description: canonical encoding, hashes, and validation of every field."""

from __future__ import annotations

import pytest

from cpchain.types import InvalidProduct, ProductDescription, ProductType, desc_hash_of, market_hash_of

SELLER = "0x" + "ab" * 20


def make(**over: object) -> ProductDescription:
    fields: dict[str, object] = {
        "seller": SELLER,
        "title": "Weather",
        "ptype": "file",
        "description": "hourly data",
        "price": 10**18,
        "category": "climate",
        "tags": ["weather", "hourly"],
        "data_hash": "0" * 64,
        "storage_type": "local",
        "size": 1234,
        "nonce": "1" * 32,
    }
    fields.update(over)
    return ProductDescription.from_dict(fields)


def test_canonical_round_trip_and_hashes() -> None:
    p = make()
    assert p.ptype is ProductType.FILE
    again = ProductDescription.from_dict(p.to_dict())
    assert again == p and again.canonical() == p.canonical()
    assert len(p.desc_hash()) == 32
    mh = p.market_hash()
    assert len(mh) == 43 and "+" not in mh and "/" not in mh and "=" not in mh
    assert desc_hash_of(mh) == p.desc_hash() and market_hash_of(p.desc_hash()) == mh


def test_every_field_changes_the_hash() -> None:
    base = make().desc_hash()
    changes = {
        "title": "Weather!",
        "description": "x",
        "price": 10**18 + 1,
        "category": "c",
        "tags": ["weather"],
        "data_hash": "1" * 64,
        "storage_type": "ipfs",
        "size": 1,
        "ptype": "stream",
        "nonce": "2" * 32,
        "end_date": 5,
    }
    hashes = {make(**{k: v}).desc_hash() for k, v in changes.items()}
    assert base not in hashes and len(hashes) == len(changes)


def test_separators_are_unambiguous() -> None:
    # "ab" + "c" and "a" + "bc" collided in the 2018 concatenation.
    assert make(title="ab", description="c").desc_hash() != make(title="a", description="bc").desc_hash()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"seller": "0x12"}, "seller"),
        ({"title": " "}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"price": 0}, "price"),
        ({"price": True}, "price"),
        ({"price": 1.5}, "price"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": ["a", "a"]}, "repeat"),
        ({"tags": "a"}, "tags"),
        ({"data_hash": "AB" * 32}, "data_hash"),
        ({"storage_type": "../x"}, "storage_type"),
        ({"size": -1}, "size"),
        ({"start_date": 10, "end_date": 5}, "end_date"),
        ({"nonce": "zz"}, "nonce"),
        ({"ptype": "video"}, "ptype"),
        ({"evil": 1}, "unknown"),
        ({"v": 2}, "version"),
    ],
)
def test_bad_fields_are_refused_by_name(over: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidProduct, match=message):
        make(**over)


def test_missing_field_and_bad_market_hash() -> None:
    with pytest.raises(InvalidProduct, match="'data_hash' is required"):
        ProductDescription.from_dict({"seller": SELLER, "title": "t", "ptype": "file", "price": 1, "storage_type": "x"})
    for bad in ("", "a" * 42, "a" * 43 + "=", "+" * 43):
        with pytest.raises(InvalidProduct):
            desc_hash_of(bad)

"""The event follower: order, confirmation depth, checkpoint resume, replay after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.chain.events import ChainEvent, EventFollower, FileCheckpoint
from tests.chain.conftest import World


def trade(world: World) -> int:
    oid = world.place()
    world.seller.confirm(oid)
    world.proxy.claim_fetched(oid)
    return oid


def test_delivers_events_in_order_and_resumes_from_the_checkpoint(world: World, tmp_path: Path) -> None:
    checkpoint = FileCheckpoint(tmp_path / "cp.json")
    seen: list[ChainEvent] = []
    oid = trade(world)
    assert EventFollower(world.escrow, checkpoint).poll(seen.append) >= 3
    names = [e.name for e in seen if e.args.get("id") == oid]
    assert names == ["OrderPlaced", "SellerConfirmed", "ProxyFetched"]
    assert [(e.block_number, e.log_index) for e in seen] == sorted((e.block_number, e.log_index) for e in seen)

    # A new follower on the same checkpoint (a restart) sees only what is new.
    world.proxy.claim_delivered(oid, b"\xda" * 32)
    later: list[ChainEvent] = []
    assert EventFollower(world.escrow, FileCheckpoint(tmp_path / "cp.json")).poll(later.append) == 1
    assert later[0].name == "ProxyDelivered"
    assert later[0].args["deliverHash"] == b"\xda" * 32


def test_confirmation_depth_holds_back_recent_blocks(world: World) -> None:
    from cpchain.chain.events import MemoryCheckpoint

    checkpoint = MemoryCheckpoint(world.w3.eth.block_number)
    world.place()
    seen: list[ChainEvent] = []
    follower = EventFollower(world.escrow, checkpoint, confirmations=2)
    assert follower.poll(seen.append) == 0
    world.bank.send_value(world.address("other"), 1)
    world.bank.send_value(world.address("other"), 1)
    assert follower.poll(seen.append) == 1
    assert seen[0].name == "OrderPlaced"


def test_a_crash_mid_batch_replays_the_batch(world: World, tmp_path: Path) -> None:
    checkpoint = FileCheckpoint(tmp_path / "cp.json")
    trade(world)
    handled: set[tuple[str, int]] = set()
    calls = 0

    def crashing(event: ChainEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("power cut")
        handled.add(event.key)

    with pytest.raises(RuntimeError):
        EventFollower(world.escrow, checkpoint).poll(crashing)
    assert checkpoint.load() is None  # nothing committed: the batch was not finished

    replayed: list[ChainEvent] = []
    EventFollower(world.escrow, checkpoint).poll(replayed.append)
    assert {e.key for e in replayed} >= handled  # the handled one comes again: at-least-once
    assert len({e.key for e in replayed}) == len(replayed)


def test_filters_by_event_name(world: World) -> None:
    from cpchain.chain.events import MemoryCheckpoint

    trade(world)
    seen: list[ChainEvent] = []
    EventFollower(world.escrow, MemoryCheckpoint(), names={"SellerConfirmed"}).poll(seen.append)
    assert [e.name for e in seen] == ["SellerConfirmed"]

"""The channel registry: idempotent opens, bindings, delivery claims, ends and purges (SQLite only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cpchain.proxy.streams.model import Binding, BindStage, Channel, ChannelState, Delivery
from cpchain.proxy.streams.registry import Registry
from cpchain.proxy.streams.wire import new_channel_id


def channel(seller: str = "0xS", nonce: str = "n1") -> Channel:
    cid = new_channel_id()
    return Channel(id=cid, seller=seller, topic="t-" + cid, state=ChannelState.OPEN, created_at=100, ended_at=None,
                   retention=50, next_seq=0, next_offset=0, request_nonce=nonce)  # fmt: skip


def binding(order_id: int, channel_id: str, stage: BindStage = BindStage.BINDING) -> Binding:
    return Binding(order_id=order_id, channel_id=channel_id, seller="0xS", buyer="0xB", product="{}", key_grant="{}",
                   stage=stage, error="", created_at=100, fetched_tx="", delivery=Delivery.NONE,
                   delivered_tx="")  # fmt: skip


def test_a_retried_open_finds_its_channel(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "proxy.db")
    first = registry.create_channel(channel())
    assert registry.create_channel(channel()) == first  # same seller, same request nonce
    assert registry.channel_by_request("0xS", "n1") == first
    other = registry.create_channel(channel(nonce="n2"))
    assert other.id != first.id
    assert registry.open_channels_of("0xS") == 2
    registry.close()
    reopened = Registry(tmp_path / "proxy.db")  # survives a restart
    assert reopened.channel(first.id) == first


def test_positions_never_move_back(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "proxy.db")
    ch = registry.create_channel(channel())
    registry.save_position(ch.id, 10, 12)
    registry.save_position(ch.id, 5, 6)
    saved = registry.channel(ch.id)
    assert saved is not None and (saved.next_seq, saved.next_offset) == (10, 12)


def test_bindings_keep_the_first_live_one_and_replace_failed_ones(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "proxy.db")
    ch = registry.create_channel(channel())
    first = registry.begin_binding(binding(7, ch.id))
    assert registry.begin_binding(dataclasses.replace(binding(7, ch.id), key_grant="other")) == first
    registry.set_stage(7, BindStage.FAILED, error="wrong state")
    replaced = registry.begin_binding(dataclasses.replace(binding(7, ch.id), key_grant="other"))
    assert replaced.key_grant == "other"
    registry.set_stage(7, BindStage.BOUND, fetched_tx="0xf")
    assert [b.order_id for b in registry.bindings_in(BindStage.BOUND)] == [7]


def test_a_delivery_claim_moves_forward_only(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "proxy.db")
    ch = registry.create_channel(channel())
    registry.begin_binding(binding(7, ch.id, BindStage.BOUND))
    assert registry.set_delivery(7, Delivery.CLAIMING)
    assert not registry.set_delivery(7, Delivery.CLAIMING)
    assert [b.order_id for b in registry.bindings_delivering()] == [7]
    assert registry.set_delivery(7, Delivery.CLAIMED, delivered_tx="0xd")
    assert not registry.set_delivery(7, Delivery.CLAIMING)
    assert registry.bindings_delivering() == []
    assert not registry.set_delivery(8, Delivery.CLAIMING)  # unknown order


def test_ended_channels_are_deleted_then_forgotten(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "proxy.db")
    ch = registry.create_channel(channel())
    registry.begin_binding(binding(7, ch.id, BindStage.BOUND))
    ended = registry.end_channel(ch.id, 1000)
    assert ended is not None and ended.state is ChannelState.ENDED and ended.ended_at == 1000
    again = registry.end_channel(ch.id, 2000)
    assert again is not None and again.ended_at == 1000  # ending twice keeps the first end
    assert registry.open_channels_of("0xS") == 0
    assert not ended.deletable(1049) and ended.deletable(1050)
    assert registry.purge(ended_before=5000) == 0  # not deleted yet
    registry.mark_deleted(ch.id)
    assert registry.purge(ended_before=1000) == 0
    assert registry.purge(ended_before=1001) == 1
    assert registry.channel(ch.id) is None and registry.binding(7) is None

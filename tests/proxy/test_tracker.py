"""The tracker, the proxies' tracker link and client listing, on real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.connection import in_process_chain
from cpchain.crypto.signing import SqliteNonceStore, sign_payload
from cpchain.proxy.tracker import (
    HEARTBEAT,
    LEAVE,
    LIST_REQUEST_MIN,
    MAX_DATAGRAM,
    REGISTER,
    TrackerLink,
    TrackerServer,
    TrackerUnavailable,
    list_live_proxies,
    proxies_with_standing,
)
from tests.chain.conftest import ETHER, build_world
from tests.proxy.test_discovery import CHAIN, CONTRACT, record, run

PURPOSES = {"register": REGISTER, "heartbeat": HEARTBEAT, "leave": LEAVE}


@asynccontextmanager
async def tracker(port: int = 0, peer_expiry: float = 0.6, **kwargs: Any) -> AsyncIterator[TrackerServer]:
    server = TrackerServer(**{"chain_id": CHAIN, "contract": CONTRACT, "peer_expiry": peer_expiry, **kwargs})
    await server.start("127.0.0.1", port)
    try:
        yield server
    finally:
        server.stop()
        await asyncio.sleep(0)  # the transport closes its socket on the next loop turn


def link_for(account: LocalAccount, server: TrackerServer, host: str = "10.0.0.1") -> TrackerLink:
    return TrackerLink(
        account, lambda: record(account, host=host), ("127.0.0.1", server.port), chain_id=CHAIN, contract=CONTRACT,
        heartbeat_interval=0.1, timeout=1.0,
    )  # fmt: skip


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def listed(server: TrackerServer) -> dict[str, str]:
    records = await list_live_proxies(("127.0.0.1", server.port), chain_id=CHAIN, contract=CONTRACT, timeout=2)
    return {r.address: r.host for r in records}


def signed(kind: str, account: LocalAccount, body: dict[str, Any], *, purpose: str | None = None,
           **sign: Any) -> bytes:  # fmt: skip
    """A datagram as a link would send it (``sign`` overrides sign_payload's arguments)."""
    body = {"seq": time.time_ns() // 1000, **body}
    args: dict[str, Any] = {"chain_id": CHAIN, "contract": CONTRACT, "ttl": 60, **sign}
    msg = sign_payload(account, purpose or PURPOSES[kind], body, **args).to_json()
    return envelope(kind, msg=msg)


def envelope(kind: str, **fields: Any) -> bytes:
    return bytes(msgpack.packb({"v": 1, "t": kind, "id": os.urandom(16), **fields}, use_bin_type=True))


def registration(account: LocalAccount, host: str = "10.0.0.1", **kwargs: Any) -> bytes:
    return signed("register", account, {"record": record(account, host=host).decode()}, **kwargs)


@asynccontextmanager
async def raw_socket(server: TrackerServer) -> AsyncIterator[Callable[[bytes], Any]]:
    """A bare UDP socket to the tracker: send exact bytes, get the decoded reply or None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", server.port))
    loop = asyncio.get_running_loop()

    async def exchange(data: bytes, timeout: float = 0.5) -> dict[str, Any] | None:
        await loop.sock_sendall(sock, data)
        try:
            reply = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        except TimeoutError:
            return None
        assert len(reply) <= MAX_DATAGRAM
        decoded: dict[str, Any] = msgpack.unpackb(reply, raw=False)
        return decoded

    try:
        yield exchange
    finally:
        sock.close()


def test_register_heartbeat_list_leave_and_expiry() -> None:
    async def scenario() -> None:
        async with tracker(peer_expiry=0.6) as server:
            alice, bob = Account.create(), Account.create()
            links = [link_for(alice, server, "10.0.0.1"), link_for(bob, server, "10.0.0.2")]
            for link in links:
                await link.start()
            await eventually(lambda: all(link.registered for link in links))
            assert await listed(server) == {alice.address: "10.0.0.1", bob.address: "10.0.0.2"}

            await asyncio.sleep(1.0)  # longer than peer_expiry: heartbeats keep both alive
            assert set(await listed(server)) == {alice.address, bob.address}
            assert await links[0].heartbeat() == "ok"
            assert [link.registrations for link in links] == [1, 1]

            links[0].stop()  # a clean stop says goodbye: gone at once
            await eventually(lambda: alice.address not in server.live(), timeout=0.3)
            links[1].stop(leave=False)  # a crash: silent, dropped after peer_expiry
            assert bob.address in server.live()
            await asyncio.sleep(0.8)
            assert await listed(server) == {}

    run(scenario)


def test_link_registers_again_after_a_tracker_restart() -> None:
    async def scenario() -> None:
        proxy = Account.create()
        async with tracker() as first:
            port = first.port
            link = link_for(proxy, first)
            await link.start()
            await eventually(lambda: link.registered)
        try:
            await asyncio.sleep(0.3)  # heartbeats go unanswered meanwhile
            async with tracker(port=port) as second:
                await eventually(lambda: proxy.address in second.live() and link.registrations == 2)
                assert await listed(second) == {proxy.address: "10.0.0.1"}
        finally:
            link.stop()

    run(scenario)


def test_a_link_starts_before_its_tracker() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proxy = Account.create()
        link = TrackerLink(proxy, lambda: record(proxy), ("127.0.0.1", port), chain_id=CHAIN, contract=CONTRACT,
                           heartbeat_interval=0.1, timeout=0.3)  # fmt: skip
        await link.start()
        try:
            await asyncio.sleep(0.4)
            assert not link.registered
            async with tracker(port=port) as server:
                await eventually(lambda: proxy.address in server.live())
        finally:
            link.stop()

    run(scenario)


def test_forged_and_misdirected_messages_are_refused() -> None:
    async def scenario() -> None:
        async with tracker(peer_expiry=30) as server, raw_socket(server) as send:
            victim, attacker = Account.create(), Account.create()
            victims_record = record(victim, host="10.0.0.1").decode()
            # the attacker cannot register the victim, even with the victim's own genuine record
            reply = await send(signed("register", attacker, {"record": victims_record}))
            assert reply == {"v": 1, "t": "reply", "id": reply["id"] if reply else None, "ok": False,
                             "error": "bad-record"}  # fmt: skip
            assert victim.address not in server.live() and attacker.address not in server.live()

            assert (await send(registration(victim)) or {}).get("ok") is True
            # nor evict or refresh it: its leave and heartbeat only ever concern the attacker itself
            assert (await send(signed("leave", attacker, {})) or {}).get("error") == "unknown-peer"
            assert (await send(signed("heartbeat", attacker, {})) or {}).get("error") == "unknown-peer"
            assert victim.address in server.live()

            # a tampered signature, another purpose, chain or contract, an expired message
            doc = msgpack.unpackb(registration(victim), raw=False)
            msg = json.loads(doc["msg"])
            msg["signature"] = msg["signature"][:-4] + ("0000" if not msg["signature"].endswith("0000") else "1111")
            tampered = envelope("register", msg=json.dumps(msg))
            refusals = {
                "tampered": tampered,
                "purpose": signed("leave", victim, {}, purpose=HEARTBEAT),
                "chain": signed("leave", victim, {}, chain_id=CHAIN + 1),
                "contract": signed("leave", victim, {}, contract="0x" + "c1" * 20),
                "expired": signed("leave", victim, {}, now=lambda: time.time() - 100),
                "too-long": signed("leave", victim, {}, ttl=3600),
            }
            errors = {name: (await send(data) or {}).get("error") for name, data in refusals.items()}
            assert errors == {"tampered": "refused", "purpose": "refused", "chain": "refused",
                              "contract": "refused", "expired": "expired", "too-long": "expired"}  # fmt: skip
            assert victim.address in server.live()

    run(scenario)


def test_replayed_datagrams_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        proxy = Account.create()
        first_registration = registration(proxy, host="10.0.0.1")
        with SqliteNonceStore(tmp_path / "nonces.db") as nonces:
            async with tracker(peer_expiry=30, nonce_store=nonces) as server, raw_socket(server) as send:
                port = server.port
                assert (await send(first_registration) or {}).get("ok") is True
                assert (await send(first_registration) or {}).get("error") == "replayed"
                beat = signed("heartbeat", proxy, {})
                assert (await send(beat) or {}).get("ok") is True
                assert (await send(beat) or {}).get("error") == "replayed"
                # a fresh message carrying an older sequence number is stale
                older = signed("heartbeat", proxy, {"seq": 1})
                assert (await send(older) or {}).get("error") == "stale"
                newer = registration(proxy, host="10.0.0.2")
                assert (await send(newer) or {}).get("ok") is True
                assert server.live()[proxy.address].host == "10.0.0.2"
                captured_leave = signed("leave", proxy, {})
                assert (await send(captured_leave) or {}).get("ok") is True
                assert proxy.address not in server.live()
                # replaying the captured registration cannot bring back a proxy that left
                assert (await send(first_registration) or {}).get("error") == "replayed"
                assert proxy.address not in server.live()
        # nor after a tracker restart: the nonce store is persistent
        with SqliteNonceStore(tmp_path / "nonces.db") as nonces:
            async with tracker(port=port, peer_expiry=30, nonce_store=nonces) as server, raw_socket(server) as send:
                assert (await send(newer) or {}).get("error") == "replayed"
                assert server.live() == {}

    run(scenario)


def test_malformed_datagrams_are_ignored() -> None:
    async def scenario() -> None:
        async with tracker(peer_expiry=30) as server, raw_socket(server) as send:
            proxy = Account.create()
            silent = [
                b"",
                b"\xc1\xc1 not msgpack",
                os.urandom(300),
                b"\x00" * (MAX_DATAGRAM + 100),
                msgpack.packb([1, 2, 3]),
                msgpack.packb({"v": 2, "t": "list", "id": os.urandom(16), "pad": b"\0" * LIST_REQUEST_MIN}),
                msgpack.packb({"v": 1, "t": "list", "id": b"short", "pad": b"\0" * LIST_REQUEST_MIN}),
                msgpack.packb({"v": 1, "t": "list", "id": os.urandom(16)}),  # unpadded: no amplification
                envelope("no-such-type"),
                envelope("reply", ok=True),  # an unsolicited reply
                msgpack.packb({"v": 1, "t": "list", "id": os.urandom(16), "x": [[[[[[[[[]]]]]]]]] * 300}),
            ]
            for data in silent:
                assert await send(data, timeout=0.1) is None
            answered = {
                "no-msg": envelope("register"),
                "msg-not-text": envelope("register", msg=12),
                "msg-not-json": envelope("heartbeat", msg="{not json"),
                "no-seq": signed("heartbeat", proxy, {"seq": "x"}),
                "record-not-text": signed("register", proxy, {"record": 5}),
            }
            errors = {name: (await send(data) or {}).get("error") for name, data in answered.items()}
            assert errors == {"no-msg": "bad-request", "msg-not-text": "bad-request", "msg-not-json": "refused",
                              "no-seq": "bad-request", "record-not-text": "bad-request"}  # fmt: skip
            # the tracker still works
            assert (await send(registration(proxy)) or {}).get("ok") is True
            assert await listed(server) == {proxy.address: "10.0.0.1"}

            # a link ignores replies it did not ask for
            link = link_for(Account.create(), server)
            await link.start()
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    for data in (envelope("reply", ok=False, error="unknown-peer"), b"\xc1", os.urandom(50)):
                        other.sendto(data, ("127.0.0.1", link.port))
                await eventually(lambda: link.registered)
                assert await link.heartbeat() == "ok"
            finally:
                link.stop()

    run(scenario)


def test_the_list_is_paginated() -> None:
    async def scenario() -> None:
        async with tracker(peer_expiry=30) as server, raw_socket(server) as send:
            proxies = [Account.create() for _ in range(30)]
            for i, proxy in enumerate(proxies):
                assert (await send(registration(proxy, host=f"10.3.0.{i}")) or {}).get("ok") is True
            first = await send(envelope("list", cursor="", pad=b"\0" * LIST_REQUEST_MIN))
            assert first is not None and isinstance(first["next"], str)
            assert 0 < len(first["records"]) < 30  # it would not fit one datagram
            assert await listed(server) == {p.address: f"10.3.0.{i}" for i, p in enumerate(proxies)}

    run(scenario)


def test_listing_without_a_tracker_fails_clearly() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            started = time.monotonic()
            with pytest.raises(TrackerUnavailable):
                await list_live_proxies(silent.getsockname(), chain_id=CHAIN, contract=CONTRACT, timeout=0.6)
            assert time.monotonic() - started < 1.5

    run(scenario)


def test_proxies_with_standing_reads_deposits_and_credit_from_the_chain() -> None:
    world = build_world(in_process_chain(), "in-process")
    deployment = world.escrow.deployment
    world.proxy2.deposit(2 * ETHER)  # 7 ether in all
    world.proxy.request_withdraw()  # still 5 ether, but leaving: not eligible for new orders
    names = ["proxy", "proxy2", "other"]  # "other" never deposited

    async def scenario() -> list[Any]:
        async with tracker(peer_expiry=30, chain_id=deployment.chain_id, contract=deployment.address) as server:
            links = [
                TrackerLink(world.accounts[name], (lambda a: lambda: make(a))(world.accounts[name]),
                            ("127.0.0.1", server.port), chain_id=deployment.chain_id, contract=deployment.address,
                            heartbeat_interval=0.1, timeout=1.0)
                for name in names
            ]  # fmt: skip
            for link in links:
                await link.start()
            await eventually(lambda: all(link.registered for link in links))
            records = await list_live_proxies(("127.0.0.1", server.port), chain_id=deployment.chain_id,
                                              contract=deployment.address)  # fmt: skip
            for link in links:
                link.stop()
            return records

    def make(account: LocalAccount) -> bytes:
        from cpchain.proxy.discovery import make_record

        return make_record(account, "127.0.0.1", {"control": 1, "file": 2, "stream_ws": 3, "stream_http": 4},
                           "ab" * 32, chain_id=deployment.chain_id, contract=deployment.address, ttl=600)  # fmt: skip

    records = run(scenario)
    assert len(records) == 3
    standings = proxies_with_standing(records, world.escrow)
    by_name = {name: world.address(name) for name in names}
    assert [s.address for s in standings] == [by_name["proxy2"], by_name["proxy"], by_name["other"]]
    assert [s.deposit for s in standings] == [7 * ETHER, 5 * ETHER, 0]
    assert [s.eligible for s in standings] == [True, False, False]
    assert standings[1].unlock_at > 0 and standings[0].unlock_at == 0
    assert all(s.rating_count == 0 and s.credit is None for s in standings)
    assert standings[0].deposit == world.escrow.proxy_account(by_name["proxy2"])[0]

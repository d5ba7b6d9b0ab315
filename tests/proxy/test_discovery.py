"""Signed proxy records and the Kademlia DHT, on real UDP sockets on 127.0.0.1.

A boot node and three serving nodes form the network; an attacker runs a plain
``kademlia`` node that lies about a victim's record.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgpack
import pytest
import umsgpack
from eth_account import Account
from eth_account.signers.local import LocalAccount
from kademlia.network import Server
from kademlia.storage import ForgetfulStorage
from kademlia.utils import digest

from cpchain.crypto.signing import sign_payload
from cpchain.proxy.discovery import (
    MAX_RECORD_BYTES,
    RECORD_PURPOSE,
    DhtNode,
    ProxyRecord,
    RecordRefused,
    dht_key,
    lookup_proxy,
    make_record,
    verify_record,
)

CHAIN = 1234
CONTRACT = "0x" + "c0" * 20
PORTS = {"control": 8000, "file": 8001, "stream_ws": 8002, "stream_http": 8003}
FINGERPRINT = "ab" * 32
T = TypeVar("T")


def record(account: LocalAccount, host: str = "127.0.0.1", ttl: int = 600, **kwargs: Any) -> bytes:
    return make_record(account, host, PORTS, FINGERPRINT, chain_id=CHAIN, contract=CONTRACT, ttl=ttl, **kwargs)


def verify(raw: bytes, address: str, **kwargs: Any) -> ProxyRecord:
    return verify_record(raw, address, **{"chain_id": CHAIN, "contract": CONTRACT, **kwargs})


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` on a fresh loop and fail if anything reached the loop's exception handler."""
    errors: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        return await scenario()

    result = asyncio.run(main())
    assert not errors, f"unhandled errors in the event loop: {errors}"
    return result


# --- records ----------------------------------------------------------------------------


def test_record_round_trip() -> None:
    proxy = Account.create()
    rec = verify(record(proxy, host="proxy.example.org"), proxy.address.lower())
    assert rec.address == proxy.address
    assert rec.host == "proxy.example.org"
    assert dict(rec.ports) == PORTS
    assert rec.tls_fingerprint == FINGERPRINT
    assert time.time() + 590 < rec.expires <= time.time() + 600
    assert rec == verify(record(proxy, host="proxy.example.org", now=lambda: rec.issued_ms / 1000), proxy.address)
    assert hash(rec)  # usable in sets although ports is a mapping


def test_forged_records_are_refused() -> None:
    victim, attacker = Account.create(), Account.create()
    with pytest.raises(RecordRefused, match="not an expected signer"):
        verify(record(attacker), victim.address)  # the attacker's own valid record, claimed for the victim
    doc = json.loads(record(victim))
    doc["payload"]["body"]["host"] = "6.6.6.6"  # tampered after signing
    with pytest.raises(RecordRefused):
        verify(json.dumps(doc).encode(), victim.address)
    doc = json.loads(record(attacker))
    doc["payload"]["signer"] = victim.address  # claims the victim signed it
    with pytest.raises(RecordRefused):
        verify(json.dumps(doc).encode(), victim.address)


def test_stale_records_are_refused() -> None:
    proxy = Account.create()
    old = record(proxy, ttl=60, now=lambda: time.time() - 120)
    with pytest.raises(RecordRefused, match="expired"):
        verify(old, proxy.address)
    fresh = record(proxy, ttl=60)
    with pytest.raises(RecordRefused, match="expired"):
        verify(fresh, proxy.address, now=lambda: time.time() + 61)


def test_records_for_another_chain_or_contract_are_refused() -> None:
    proxy = Account.create()
    raw = record(proxy)
    with pytest.raises(RecordRefused, match="chain"):
        verify(raw, proxy.address, chain_id=CHAIN + 1)
    with pytest.raises(RecordRefused, match="contract"):
        verify(raw, proxy.address, contract="0x" + "c1" * 20)


def _signed_body(account: LocalAccount, body: dict[str, Any], purpose: str = RECORD_PURPOSE) -> bytes:
    return sign_payload(account, purpose, body, chain_id=CHAIN, contract=CONTRACT).to_json().encode()


@pytest.mark.parametrize(
    "make_raw",
    [
        lambda a: b"",
        lambda a: b"\xff\xfe\x00garbage",
        lambda a: b"{}",
        lambda a: b"[" * 5000,
        lambda a: b" " * (MAX_RECORD_BYTES + 1),
        lambda a: 12345,
        lambda a: _signed_body(a, json.loads(record(a))["payload"]["body"], purpose="pdash-login"),
        lambda a: _signed_body(a, {"host": "127.0.0.1", "ports": PORTS}),
        lambda a: _signed_body(
            a, {"host": "127.0.0.1", "ports": {**PORTS, "control": 0}, "tls_fingerprint": FINGERPRINT, "issued_ms": 1}
        ),
        lambda a: _signed_body(a, {"host": "bad host", "ports": PORTS, "tls_fingerprint": FINGERPRINT, "issued_ms": 1}),
        lambda a: _signed_body(a, {"host": "h", "ports": PORTS, "tls_fingerprint": "AB" * 32, "issued_ms": 1}),
    ],
    ids=[
        "empty",
        "binary",
        "empty-object",
        "deep",
        "oversized",
        "not-bytes",
        "other-purpose",
        "missing-fields",
        "bad-port",
        "bad-host",
        "uppercase-fingerprint",
    ],
)
def test_malformed_records_are_refused(make_raw: Callable[[LocalAccount], Any]) -> None:
    proxy = Account.create()
    with pytest.raises(RecordRefused):
        verify(make_raw(proxy), proxy.address)


def test_make_record_refuses_what_a_verifier_would() -> None:
    proxy = Account.create()
    with pytest.raises(ValueError, match="host"):
        record(proxy, host="a b")
    with pytest.raises(ValueError, match="ports"):
        make_record(proxy, "h", {"control": 1}, FINGERPRINT, chain_id=CHAIN, contract=CONTRACT, ttl=60)
    with pytest.raises(ValueError, match="fingerprint"):
        make_record(proxy, "h", PORTS, "00", chain_id=CHAIN, contract=CONTRACT, ttl=60)
    with pytest.raises(ValueError, match="ttl"):
        record(proxy, ttl=0)


# --- the DHT -----------------------------------------------------------------------------


@asynccontextmanager
async def network(size: int = 3, **options: Any) -> Any:
    """A boot node and ``size`` serving nodes, all joined; yields (boot, nodes)."""
    opts = {"chain_id": CHAIN, "contract": CONTRACT, "rpc_timeout": 1.0, "lookup_timeout": 5.0, **options}
    boot = DhtNode(**opts)
    await boot.start("127.0.0.1", 0, [])
    nodes = [DhtNode(**opts) for _ in range(size)]
    try:
        for node in nodes:
            await node.start("127.0.0.1", 0, [("127.0.0.1", boot.port)])
        yield boot, nodes
    finally:
        for node in [*nodes, boot]:
            node.stop()


def boot_of(boot: DhtNode) -> list[tuple[str, int]]:
    return [("127.0.0.1", boot.port)]


async def client_lookup(boot: DhtNode, address: str, timeout: float = 5.0) -> ProxyRecord | None:
    return await lookup_proxy(address, boot_of(boot), chain_id=CHAIN, contract=CONTRACT, timeout=timeout,
                              rpc_timeout=1.0)  # fmt: skip


def test_nodes_bind_the_given_interface_and_port() -> None:
    async def scenario() -> None:
        async with network(1) as (boot, [node]):
            for n in (boot, node):
                sockname = n._server.transport.get_extra_info("sockname")
                assert sockname == ("127.0.0.1", n.port) and n.port != 0
            assert node.port != boot.port
            assert boot.neighbours == 1 and node.neighbours == 1

    run(scenario)


def test_publish_and_lookup_across_nodes() -> None:
    async def scenario() -> None:
        async with network(3) as (boot, nodes):
            alice, bob = Account.create(), Account.create()
            assert await nodes[0].publish(alice.address, record(alice, host="10.0.0.1"))
            assert await nodes[1].publish(bob.address, record(bob, host="10.0.0.2"))
            # every node of this small network holds both records, verified
            assert all(n.stored(alice.address) is not None for n in [boot, *nodes])
            found = await nodes[2].lookup(alice.address)
            assert found is not None and found.host == "10.0.0.1" and found.address == alice.address
            found = await client_lookup(boot, bob.address)
            assert found is not None and found.host == "10.0.0.2"

            # a newer record replaces the old one everywhere; replaying the old one changes nothing
            old = record(alice, host="10.0.0.1", now=lambda: time.time() - 5)
            assert await nodes[0].publish(alice.address, record(alice, host="10.0.0.9"))
            assert not await nodes[1].publish(alice.address, old)  # every peer refuses the older record
            found = await client_lookup(boot, alice.address)
            assert found is not None and found.host == "10.0.0.9"

            started = time.monotonic()
            assert await client_lookup(boot, Account.create().address) is None
            assert time.monotonic() - started < 3  # "not found" is a quick answer, not a timeout
            assert await nodes[2].lookup("not an address") is None

            with pytest.raises(RecordRefused):  # a node never publishes what peers would refuse
                await nodes[0].publish(bob.address, record(alice))

    run(scenario)


def test_expired_records_are_forgotten() -> None:
    async def scenario() -> None:
        async with network(2) as (boot, nodes):
            proxy = Account.create()
            # A few seconds left: enough to store and find it on a loaded machine, little to wait.
            short = record(proxy, ttl=60, now=lambda: time.time() - 56)
            expires = verify(short, proxy.address).expires
            assert await nodes[0].publish(proxy.address, short)
            assert await client_lookup(boot, proxy.address) is not None
            await asyncio.sleep(max(0.0, expires - time.time()) + 0.2)
            assert all(n.stored(proxy.address) is None for n in [boot, *nodes])
            assert await client_lookup(boot, proxy.address) is None

    run(scenario)


class LyingStorage(ForgetfulStorage):  # type: ignore[misc]
    """An attacker's storage: pinned keys always answer the attacker's value."""

    def __init__(self, pinned: dict[bytes, Any]) -> None:
        super().__init__()
        self.pinned = pinned

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.pinned.get(key, super().get(key, default))


def test_forged_values_from_an_attacker_node_are_ignored() -> None:
    async def scenario() -> None:
        async with network(3) as (boot, nodes):
            victim, attacker, garbled, typed = (Account.create() for _ in range(4))
            key = digest(dht_key(victim.address))
            forged = record(attacker, host="6.6.6.6")  # validly signed, but by the attacker
            storage = LyingStorage({
                key: forged,
                digest(dht_key(garbled.address)): b"\xc1\xff not a record",
                digest(dht_key(typed.address)): 42,
            })  # fmt: skip
            # A plain kademlia node whose id is one bit from the victim's key: always asked first.
            # (Not the key itself: find_neighbors never returns a node whose id equals the target.)
            evil = Server(node_id=key[:-1] + bytes([key[-1] ^ 1]), storage=storage)
            asked: list[bytes] = []
            await evil.listen(0, interface="127.0.0.1")
            real_ping, real_find_value = evil.protocol.rpc_ping, evil.protocol.rpc_find_value
            anonymous = b"\x00" * 20  # a plain node chokes on the clients' empty id; this liar copes

            def ping(sender: Any, nodeid: bytes) -> Any:
                return real_ping(sender, nodeid or anonymous)

            def find_value(sender: Any, nodeid: bytes, wanted: bytes) -> Any:
                asked.append(wanted)
                return real_find_value(sender, nodeid or anonymous, wanted)

            evil.protocol.rpc_ping, evil.protocol.rpc_find_value = ping, find_value
            try:
                await evil.bootstrap(boot_of(boot))
                for n in nodes:
                    await n._join()  # make sure the honest nodes know the attacker too
                # honest nodes refuse to store the forgery under the victim's key
                await evil.set_digest(key, forged)
                assert all(n.stored(victim.address) is None for n in [boot, *nodes])

                assert await client_lookup(boot, victim.address) is None
                assert key in asked
                assert await nodes[0].lookup(victim.address) is None
                assert await client_lookup(boot, garbled.address) is None
                assert await client_lookup(boot, typed.address) is None

                assert await nodes[1].publish(victim.address, record(victim, host="10.1.1.1"))
                asked.clear()
                # Entering through the liar and the boot node: both answer in the same round.
                found = await lookup_proxy(
                    victim.address,
                    [("127.0.0.1", evil.protocol.transport.get_extra_info("sockname")[1]), *boot_of(boot)],
                    chain_id=CHAIN,
                    contract=CONTRACT,
                    timeout=5,
                    rpc_timeout=1.0,
                )
                assert key in asked  # the liar's forgery was seen and skipped
                assert found is not None and found.host == "10.1.1.1" and found.address == victim.address
            finally:
                evil.stop()

    run(scenario)


def test_many_concurrent_client_lookups() -> None:
    async def scenario() -> None:
        async with network(3) as (boot, nodes):
            proxies = [Account.create() for _ in range(5)]
            for i, proxy in enumerate(proxies):
                assert await nodes[i % 3].publish(proxy.address, record(proxy, host=f"10.2.0.{i}"))
            before = [n.neighbours for n in [boot, *nodes]]
            started = time.monotonic()
            found = await asyncio.gather(*(client_lookup(boot, proxies[i % 5].address) for i in range(50)))
            assert time.monotonic() - started < 10
            assert [f.host if f else None for f in found] == [f"10.2.0.{i % 5}" for i in range(50)]
            # the 50 short-lived clients were answered but never joined any routing table
            assert [n.neighbours for n in [boot, *nodes]] == before

    run(scenario)


def test_lookup_with_no_boot_node_answering_returns_none() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
            silent.bind(("127.0.0.1", 0))
            started = time.monotonic()
            found = await lookup_proxy(Account.create().address, [silent.getsockname()], chain_id=CHAIN,
                                       contract=CONTRACT, timeout=1.5, rpc_timeout=0.5)  # fmt: skip
            assert found is None
            assert time.monotonic() - started < 2.5
        assert await lookup_proxy(Account.create().address, [], chain_id=CHAIN, contract=CONTRACT) is None

    run(scenario)


def _garbage_datagrams(node_id: bytes) -> Iterator[bytes]:
    msg_id = b"\x07" * 20
    yield b"\x00"
    yield b"\x00" + msg_id + b"\xc1\xc1\xc1"  # not msgpack
    yield b"\x00" + msg_id + umsgpack.packb({"not": "a list"})
    yield b"\x00" + msg_id + umsgpack.packb(["find_value", {"args": 1}])
    yield b"\x00" + msg_id + umsgpack.packb(["find_value", [b"short", 5]])
    yield b"\x00" + msg_id + umsgpack.packb(["find_node", [node_id, b"\x01" * 20, "extra"]])
    yield b"\x00" + msg_id + umsgpack.packb(["store", [node_id, b"\x01" * 20, 123]])
    yield b"\x00" + msg_id + umsgpack.packb(["store", [b"", b"\x01" * 20, b"x" * 100]])
    yield b"\x00" + msg_id + umsgpack.packb(["no_such_rpc", []])
    yield b"\x01" + msg_id + umsgpack.packb("a reply nobody asked for")
    yield b"\x02" + msg_id + b"unknown kind"
    yield b"\x00" + msg_id + b"\x00" * 10_000  # oversized
    yield b"\x00" + msg_id + msgpack.packb([["x"] * 3] * 100)


def test_malformed_datagrams_leave_nodes_working() -> None:
    async def scenario() -> None:
        async with network(2) as (boot, nodes):
            proxy = Account.create()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                for target in (boot, nodes[0]):
                    for datagram in _garbage_datagrams(b"\x05" * 20):
                        attacker.sendto(datagram, ("127.0.0.1", target.port))
            await asyncio.sleep(0.3)
            assert await nodes[0].publish(proxy.address, record(proxy))
            found = await client_lookup(boot, proxy.address)
            assert found is not None and found.address == proxy.address

    run(scenario)


def test_a_restarted_boot_node_relearns_the_network() -> None:
    async def scenario() -> None:
        async with network(2, rejoin_interval=0.2) as (boot, nodes):
            proxy = Account.create()
            assert await nodes[0].publish(proxy.address, record(proxy))
            port = boot.port
            boot.stop()
            await asyncio.sleep(0)  # the transport closes its socket on the next loop turn
            reborn = DhtNode(chain_id=CHAIN, contract=CONTRACT, rpc_timeout=1.0)
            await reborn.start("127.0.0.1", port, [])
            try:
                assert reborn.neighbours == 0
                await asyncio.sleep(0.6)  # the proxies' rejoin pings reach it
                assert reborn.neighbours == 2
                found = await client_lookup(reborn, proxy.address)
                assert found is not None and found.address == proxy.address
            finally:
                reborn.stop()

    run(scenario)

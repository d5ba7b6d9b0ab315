"""Proxy discovery: signed proxy records and the Kademlia DHT that maps an address to one.

Owns the record format (an EIP-191 signed payload by the proxy's own account: host, ports,
TLS certificate fingerprint, expiry), its verification, and a hardened wrapper around the
asyncio ``kademlia`` library. Must not touch the proxy's trades, TLS servers or the chain;
the tracker lives in :mod:`cpchain.proxy.tracker`.

Hardening over the plain library (and the 2018 original, reference §11 items 1-3 and 20):

* the DHT binds the configured interface only, on the configured port (or an ephemeral
  one for clients), never 0.0.0.0 and never a boot node's port;
* every node stores only records that verify against the address their key is derived
  from, keeps the freshest, forgets them at their expiry and holds a bounded number;
* lookups verify every value against the wanted address, skip forged or stale ones and keep
  crawling, are bounded by a timeout and return ``None`` instead of raising or hanging;
* client lookups mark themselves with an empty node id, so serving nodes answer them but
  never put short-lived clients in their routing tables;
* malformed datagrams and late replies are dropped (logged), never raised into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_hex_address, to_checksum_address
from kademlia.crawling import NodeSpiderCrawl, RPCFindResponse, ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.utils import digest

from cpchain.config import Config, ConfigError
from cpchain.crypto.errors import CryptoError
from cpchain.crypto.signing import SignedMessage, sign_payload, verify_payload

__all__ = [
    "MAX_RECORD_BYTES",
    "MAX_RECORD_TTL",
    "RECORD_PORTS",
    "RECORD_PURPOSE",
    "DhtNode",
    "DiscoverySettings",
    "ProxyRecord",
    "RecordRefused",
    "dht_key",
    "lookup_proxy",
    "make_record",
    "parse_hostport",
    "record_signer",
    "verify_record",
]

log = logging.getLogger(__name__)

RECORD_PURPOSE = "pdash-proxy-record/1"
RECORD_PORTS = ("control", "file", "stream_ws", "stream_http")
MAX_RECORD_BYTES = 2048
MAX_RECORD_TTL = 7 * 86400
MAX_DHT_DATAGRAM = 8192 + 21  # rpcudp's own send limit plus its header
DEFAULT_MAX_RECORDS = 10_000
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_HOST_RE = re.compile(r"[A-Za-z0-9.\-:]{1,253}")
_NODE_ID_BYTES = 20
_CLIENT_ID = b""  # a lookup-only client: answered, never added to routing tables


class RecordRefused(Exception):
    """A proxy record is forged, stale, malformed, for another address, chain or contract."""


@dataclass(frozen=True)
class ProxyRecord:
    """Where a proxy can be reached, as signed by the proxy's own account."""

    address: str
    host: str
    ports: Mapping[str, int] = field(hash=False)
    tls_fingerprint: str
    expires: int
    issued_ms: int = 0  # signing time; among valid records for one address the latest wins

    @property
    def freshness(self) -> tuple[int, int]:
        return (self.issued_ms, self.expires)


def _checksum(address: object) -> str:
    if not isinstance(address, str) or not is_hex_address(address):
        raise RecordRefused("not a valid hex address")
    return str(to_checksum_address(address))


def dht_key(address: str) -> str:
    """The DHT key of a proxy: its address in lowercase hex (``0x`` + 40 digits)."""
    return _checksum(address).lower()


def _valid_host(host: object) -> bool:
    return isinstance(host, str) and _HOST_RE.fullmatch(host) is not None and not host.startswith(("-", "."))


def _valid_ports(ports: object) -> bool:
    return (
        isinstance(ports, Mapping)
        and set(ports) == set(RECORD_PORTS)
        and all(type(p) is int and 0 < p < 65536 for p in ports.values())
    )


def make_record(
    account: LocalAccount,
    host: str,
    ports: Mapping[str, int],
    tls_fingerprint: str,
    *,
    chain_id: int,
    contract: str,
    ttl: int,
    now: Callable[[], float] = time.time,
) -> bytes:
    """Sign where this proxy listens, for ``ttl`` seconds; the bytes go into the DHT and tracker.

    Raises ``ValueError`` for a host, port set, fingerprint or ttl that a verifier would refuse.
    """
    if not _valid_host(host):
        raise ValueError("host must be a hostname or IP address")
    if not _valid_ports(ports):
        raise ValueError(f"ports must map exactly {', '.join(RECORD_PORTS)} to port numbers")
    if not isinstance(tls_fingerprint, str) or not _FINGERPRINT_RE.fullmatch(tls_fingerprint):
        raise ValueError("tls_fingerprint must be the lowercase hex SHA-256 of the DER certificate")
    if type(ttl) is not int or not 0 < ttl <= MAX_RECORD_TTL:
        raise ValueError(f"ttl must be 1..{MAX_RECORD_TTL} seconds")
    body = {
        "host": host,
        "ports": {name: int(ports[name]) for name in RECORD_PORTS},
        "tls_fingerprint": tls_fingerprint,
        "issued_ms": int(now() * 1000),
    }
    signed = sign_payload(account, RECORD_PURPOSE, body, chain_id=chain_id, contract=contract, ttl=ttl, now=now)
    raw = signed.to_json().encode("ascii")
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError("record is too large (shorten the host name)")
    return raw


def record_signer(raw: bytes | str) -> str:
    """The address a record claims to be signed by (unverified: use it only to pick what to verify)."""
    if not isinstance(raw, (bytes, str)) or len(raw) > MAX_RECORD_BYTES:
        raise RecordRefused(f"record is not bytes of at most {MAX_RECORD_BYTES}")
    try:
        return str(SignedMessage.from_json(raw).payload["signer"])
    except (CryptoError, ValueError, TypeError) as exc:
        raise RecordRefused(f"malformed record: {exc}") from None


def verify_record(
    raw: bytes | str,
    expected_address: str,
    *,
    chain_id: int,
    contract: str,
    now: Callable[[], float] = time.time,
) -> ProxyRecord:
    """The record's contents, if ``expected_address`` signed it for this chain and contract and it is live.

    Raises :class:`RecordRefused` for anything else (the reason is in the message).
    """
    if not isinstance(raw, (bytes, str)) or len(raw) > MAX_RECORD_BYTES:
        raise RecordRefused(f"record is not bytes of at most {MAX_RECORD_BYTES}")
    expected = _checksum(expected_address)
    try:
        verified = verify_payload(
            raw,
            purpose=RECORD_PURPOSE,
            chain_id=chain_id,
            contract=contract,
            expected_signer=expected,
            nonce_store=None,  # a record is meant to be handed around until it expires
            now=now,
            max_ttl=MAX_RECORD_TTL,
        )
    except (CryptoError, ValueError, TypeError) as exc:
        raise RecordRefused(f"record refused: {exc}") from None
    body = verified.body
    if set(body) != {"host", "ports", "tls_fingerprint", "issued_ms"}:
        raise RecordRefused("record body has the wrong fields")
    host, ports, fingerprint, issued = body["host"], body["ports"], body["tls_fingerprint"], body["issued_ms"]
    if not _valid_host(host) or not _valid_ports(ports):
        raise RecordRefused("record has an invalid host or ports")
    if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.fullmatch(fingerprint):
        raise RecordRefused("record has an invalid TLS fingerprint")
    if type(issued) is not int or issued < 0:
        raise RecordRefused("record has an invalid issue time")
    return ProxyRecord(
        address=verified.signer,
        host=host,
        ports=MappingProxyType({name: int(ports[name]) for name in RECORD_PORTS}),
        tls_fingerprint=fingerprint,
        expires=verified.expires,
        issued_ms=issued,
    )


# --- configuration ---------------------------------------------------------------


def parse_hostport(text: str, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` for IPv6) as a tuple; ``ValueError`` names ``what``."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class DiscoverySettings:
    """The ``[proxy.discovery]`` section plus the discovery keys of ``[proxy]``."""

    record_ttl: int
    republish_interval: float
    heartbeat_interval: float
    peer_expiry: float
    tracker_timeout: float
    rpc_timeout: float
    lookup_timeout: float
    rejoin_interval: float
    first_node_host: str
    first_node_dht_port: int
    first_node_tracker_port: int
    boot_nodes: tuple[tuple[str, int], ...]
    tracker: tuple[str, int]

    @classmethod
    def from_config(cls, config: Config) -> DiscoverySettings:
        """Read and check the keys; a bad value is a one-line :class:`ConfigError`."""
        section = config.section("proxy.discovery")
        try:
            boot = tuple(parse_hostport(str(b), "proxy.boot_nodes entry") for b in config.get("proxy.boot_nodes"))
            tracker = parse_hostport(str(config.get("proxy.tracker")), "proxy.tracker")
        except ValueError as exc:
            raise ConfigError(f"{config.where}: {exc}") from None
        settings = cls(
            record_ttl=int(section["record_ttl"]),
            republish_interval=float(section["republish_interval"]),
            heartbeat_interval=float(section["heartbeat_interval"]),
            peer_expiry=float(section["peer_expiry"]),
            tracker_timeout=float(section["tracker_timeout"]),
            rpc_timeout=float(section["rpc_timeout"]),
            lookup_timeout=float(section["lookup_timeout"]),
            rejoin_interval=float(section["rejoin_interval"]),
            first_node_host=str(section["first_node_host"]),
            first_node_dht_port=int(section["first_node_dht_port"]),
            first_node_tracker_port=int(section["first_node_tracker_port"]),
            boot_nodes=boot,
            tracker=tracker,
        )
        for name in ("republish_interval", "heartbeat_interval", "peer_expiry", "tracker_timeout",
                     "rpc_timeout", "lookup_timeout", "rejoin_interval"):  # fmt: skip
            if getattr(settings, name) <= 0:
                raise ConfigError(f"{config.where}: key 'proxy.discovery.{name}' must be positive")
        if not 0 < settings.record_ttl <= MAX_RECORD_TTL:
            raise ConfigError(f"{config.where}: key 'proxy.discovery.record_ttl' must be 1..{MAX_RECORD_TTL}")
        if settings.republish_interval >= settings.record_ttl:
            raise ConfigError(f"{config.where}: key 'proxy.discovery.republish_interval' must be below record_ttl")
        if settings.peer_expiry <= settings.heartbeat_interval:
            raise ConfigError(f"{config.where}: key 'proxy.discovery.peer_expiry' must exceed heartbeat_interval")
        for name in ("first_node_dht_port", "first_node_tracker_port"):
            if not 0 <= getattr(settings, name) < 65536:
                raise ConfigError(f"{config.where}: key 'proxy.discovery.{name}' must be a port number")
        return settings


# --- kademlia, hardened -------------------------------------------------------------

RecordCheck = Callable[[bytes, object], "ProxyRecord | None"]


class _RecordStorage:
    """Kademlia storage that holds only valid records, the freshest per key, up to a bound.

    Implements the duck-typed ``kademlia.storage.IStorage`` interface. Entries go at their
    record's own expiry (the library's default keeps anything for a week).
    """

    def __init__(self, check: RecordCheck, max_entries: int) -> None:
        self._check = check
        self._max = max_entries
        self._data: OrderedDict[bytes, tuple[float, bytes, ProxyRecord]] = OrderedDict()

    def offer(self, key: object, value: object) -> bool:
        """Store ``value`` under ``key`` if it is a valid record for that key and not older."""
        if not isinstance(key, bytes) or len(key) != _NODE_ID_BYTES or not isinstance(value, (bytes, str)):
            return False
        record = self._check(key, value)
        if record is None:
            return False
        raw = value.encode("utf-8") if isinstance(value, str) else value
        old = self._data.get(key)
        if old is not None and old[2].freshness > record.freshness:
            return False
        self._data.pop(key, None)
        self._data[key] = (time.monotonic(), raw, record)
        while len(self._data) > self._max:
            self._data.popitem(last=False)
        return True

    def record(self, key: bytes) -> ProxyRecord | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[2].expires < time.time():
            del self._data[key]
            return None
        return entry[2]

    def cull(self) -> None:
        t = time.time()
        for key in [k for k, (_, _, r) in self._data.items() if r.expires < t]:
            del self._data[key]

    # IStorage
    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.offer(key, value)

    def __getitem__(self, key: bytes) -> bytes:
        if self.record(key) is None:
            raise KeyError(key)
        return self._data[key][1]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._data[key][1] if self.record(key) is not None else default

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, bytes]]:
        self.cull()
        limit = time.monotonic() - seconds_old
        return [(k, v) for k, (t, v, _) in self._data.items() if t <= limit]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.cull()
        return iter([(k, v) for k, (_, v, _) in self._data.items()])

    def count(self) -> int:
        """Live records held (not ``__len__``: kademlia treats an empty storage as falsy)."""
        self.cull()
        return len(self._data)


def _node_id(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == _NODE_ID_BYTES


def _sanitise_nodes(data: object, limit: int) -> list[tuple[bytes, str, int]] | None:
    """A peer's node list as trusted tuples, or None if any entry is malformed."""
    if not isinstance(data, (list, tuple)) or len(data) > limit:
        return None
    nodes = []
    for entry in data:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            return None
        node_id, ip, port = entry
        if not _node_id(node_id) or not isinstance(ip, str) or type(port) is not int or not 0 < port < 65536:
            return None
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return None
        nodes.append((node_id, ip, port))
    return nodes


class _Protocol(KademliaProtocol):  # type: ignore[misc]
    """KademliaProtocol that never raises into the loop and trusts nothing a peer sends."""

    def __init__(self, source_node: Any, storage: _RecordStorage, ksize: int, *, client: bool, rpc_timeout: float):
        super().__init__(source_node, storage, ksize)
        self._wait_timeout = rpc_timeout
        self.client = client
        self.wire_id: bytes = _CLIENT_ID if client else source_node.id
        self._tasks: set[asyncio.Task[None]] = set()

    # incoming ------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > MAX_DHT_DATAGRAM or len(data) < 22:
            log.debug("dropped a DHT datagram of %d bytes from %s", len(data), addr)
            return
        if self.client and data[:1] == b"\x00":
            return  # a client serves nothing
        task = asyncio.ensure_future(self._solve_safely(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _solve_safely(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            await self._solve_datagram(data, addr)
        except Exception as exc:  # umsgpack and rpcudp raise many types on garbage
            log.debug("ignored a malformed DHT datagram from %s (%s)", addr, type(exc).__name__)

    async def _accept_request(self, msg_id: bytes, data: object, address: tuple[str, int]) -> None:
        try:
            if not isinstance(data, list) or len(data) != 2 or not isinstance(data[1], list):
                raise ValueError("not [name, args]")
            await super()._accept_request(msg_id, data, address)
        except Exception as exc:
            log.debug("ignored a bad DHT request from %s (%s)", address, type(exc).__name__)

    def _accept_response(self, msg_id: bytes, data: object, address: tuple[str, int]) -> None:
        entry = self._outstanding.pop(msg_id, None)
        if entry is None:
            log.debug("ignored a late or unknown DHT reply from %s", address)
            return
        future, timeout = entry
        timeout.cancel()
        if not future.done():
            future.set_result((True, data))

    def _timeout(self, msg_id: bytes) -> None:
        entry = self._outstanding.pop(msg_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result((False, None))

    def fail_outstanding(self) -> None:
        """Resolve every pending call as unanswered (on stop), so no crawl waits on a closed socket."""
        for future, timeout in self._outstanding.values():
            timeout.cancel()
            if not future.done():
                future.set_result((False, None))
        self._outstanding.clear()
        for task in list(self._tasks):
            task.cancel()

    def _welcome(self, sender: tuple[str, int], nodeid: object) -> Any:
        """The sender as a routing-table node, or None for a client (empty id), which is never added."""
        if not _node_id(nodeid) or nodeid == self.source_node.id:
            return None
        node = Node(nodeid, sender[0], sender[1])
        self.welcome_if_new(node)
        return node

    def rpc_ping(self, sender: tuple[str, int], nodeid: object) -> bytes:
        self._welcome(sender, nodeid)
        return bytes(self.source_node.id)

    # A sender joins the routing table only with a well-formed request.
    def rpc_store(self, sender: tuple[str, int], nodeid: object, key: object, value: object) -> bool:
        accepted: bool = self.storage.offer(key, value)
        if accepted:
            self._welcome(sender, nodeid)
        return accepted

    def rpc_find_node(self, sender: tuple[str, int], nodeid: object, key: object) -> list[tuple[bytes, str, int]]:
        if not _node_id(key):
            return []
        source = self._welcome(sender, nodeid)
        neighbors = self.router.find_neighbors(Node(key), exclude=source)
        return [tuple(n) for n in neighbors]

    def rpc_find_value(self, sender: tuple[str, int], nodeid: object, key: object) -> Any:
        if not _node_id(key):
            return []
        value = self.storage.get(key)
        if value is None:
            return self.rpc_find_node(sender, nodeid, key)
        self._welcome(sender, nodeid)
        return {"value": value}

    # outgoing ------------------------------------------------------------
    async def call_find_node(self, node_to_ask: Any, node_to_find: Any) -> tuple[bool, Any]:
        result = await self.find_node((node_to_ask.ip, node_to_ask.port), self.wire_id, node_to_find.id)
        return self.handle_call_response(self._clean(result, values=False), node_to_ask)  # type: ignore[no-any-return]

    async def call_find_value(self, node_to_ask: Any, node_to_find: Any) -> tuple[bool, Any]:
        result = await self.find_value((node_to_ask.ip, node_to_ask.port), self.wire_id, node_to_find.id)
        return self.handle_call_response(self._clean(result, values=True), node_to_ask)  # type: ignore[no-any-return]

    async def call_ping(self, node_to_ask: Any) -> tuple[bool, Any]:
        result = await self.ping((node_to_ask.ip, node_to_ask.port), self.wire_id)
        ok = result[0] and result[1] == node_to_ask.id
        return self.handle_call_response((ok, result[1] if ok else None), node_to_ask)  # type: ignore[no-any-return]

    async def call_store(self, node_to_ask: Any, key: bytes, value: bytes) -> tuple[bool, Any]:
        result = await self.store((node_to_ask.ip, node_to_ask.port), self.wire_id, key, value)
        return self.handle_call_response((bool(result[0]), result[1] is True), node_to_ask)  # type: ignore[no-any-return]

    def _clean(self, result: tuple[bool, Any], *, values: bool) -> tuple[bool, Any]:
        """A reply in the shape the crawlers expect, or 'no reply' if the peer sent garbage."""
        ok, data = result
        if not ok:
            return result
        if isinstance(data, dict):
            value = data.get("value")
            if values and set(data) == {"value"} and isinstance(value, bytes) and len(value) <= MAX_RECORD_BYTES:
                return True, {"value": value}
            return False, None
        nodes = _sanitise_nodes(data, 4 * self.router.ksize)
        return (True, nodes) if nodes is not None else (False, None)


class _Server(Server):  # type: ignore[misc]
    """kademlia Server with the hardened protocol, safe republishing and a clean stop."""

    def __init__(self, storage: _RecordStorage, *, client: bool, rpc_timeout: float, ksize: int, alpha: int):
        super().__init__(ksize=ksize, alpha=alpha, storage=storage)
        self.storage = storage
        self._client = client
        self._rpc_timeout = rpc_timeout
        self._refresh_task: asyncio.Task[None] | None = None

    def _create_protocol(self) -> _Protocol:
        return _Protocol(self.node, self.storage, self.ksize, client=self._client, rpc_timeout=self._rpc_timeout)

    def refresh_table(self, interval: float = 3600) -> None:
        if self._client:
            return  # a one-shot lookup node has nothing to refresh or republish
        self._refresh_task = asyncio.ensure_future(self._safe_refresh())
        self.refresh_loop = asyncio.get_running_loop().call_later(interval, self.refresh_table)

    async def _safe_refresh(self) -> None:
        try:
            for node_id in self.protocol.get_refresh_ids():
                node = Node(node_id)
                nearest = self.protocol.router.find_neighbors(node, self.alpha)
                await NodeSpiderCrawl(self.protocol, node, nearest, self.ksize, self.alpha).find()
            for dkey, value in self.storage.iter_older_than(3600):
                await self.store_digest(dkey, value)
        except Exception:
            log.warning("DHT table refresh failed", exc_info=True)

    async def bootstrap_node(self, addr: tuple[str, int]) -> Any:
        result = await self.protocol.ping(addr, self.protocol.wire_id)
        return Node(result[1], addr[0], addr[1]) if result[0] and _node_id(result[1]) else None

    async def store_digest(self, dkey: bytes, value: bytes) -> int:
        """Store on the k nodes closest to ``dkey`` and here; the number of peers that accepted."""
        self.storage.offer(dkey, value)
        node = Node(dkey)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return 0
        nodes = await NodeSpiderCrawl(self.protocol, node, nearest, self.ksize, self.alpha).find()
        results = await asyncio.gather(*(self.protocol.call_store(n, dkey, value) for n in nodes))
        return sum(1 for ok, accepted in results if ok and accepted)

    def stop(self) -> None:
        super().stop()
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        if self.protocol is not None:
            self.protocol.fail_outstanding()


class _RecordCrawl(ValueSpiderCrawl):  # type: ignore[misc]
    """Value crawl that skips values failing ``check`` and keeps crawling for a valid one.

    The library's crawl stops at the first value any peer returns and takes the most common
    one, so a single lying node would hide the real record; this one returns the freshest
    valid record seen in the first round that has any, or None once every node is asked.
    """

    def __init__(self, protocol: _Protocol, node: Any, peers: list[Any], ksize: int, alpha: int,
                 check: Callable[[object], ProxyRecord | None]) -> None:  # fmt: skip
        super().__init__(protocol, node, peers, ksize, alpha)
        self._check = check

    async def _nodes_found(self, responses: dict[bytes, Any]) -> ProxyRecord | None:
        toremove = []
        found: list[ProxyRecord] = []
        for peer_id, raw_response in responses.items():
            response = RPCFindResponse(raw_response)
            peer = self.nearest.get_node(peer_id)
            if not response.happened():
                toremove.append(peer_id)
            elif response.has_value():
                record = self._check(response.get_value())
                if record is not None:
                    found.append(record)
                else:
                    log.warning("ignored an invalid DHT value from %s", peer)
            else:
                self.nearest.push(response.get_node_list())
        self.nearest.remove(toremove)
        if found:
            return max(found, key=lambda r: r.freshness)
        if self.nearest.have_contacted_all():
            return None
        return await self.find()  # type: ignore[no-any-return]


def _local_address_towards(addr: tuple[str, int]) -> str:
    """The local IP the OS would use to reach ``addr`` (connecting a UDP socket sends nothing)."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        return str(sock.getsockname()[0])


class DhtNode:
    """One Kademlia node on the running asyncio loop, storing and finding signed proxy records.

    Serving nodes (proxies, the boot node) bind the configured interface and port, keep their
    routing table alive by pinging the boot nodes every ``rejoin_interval`` (so a restarted
    boot node relearns the network), and can keep their own record published. A node made
    with ``client=True`` only looks up: ephemeral port, never joins routing tables.
    """

    def __init__(
        self,
        *,
        chain_id: int,
        contract: str,
        client: bool = False,
        rpc_timeout: float = 5.0,
        lookup_timeout: float = 10.0,
        rejoin_interval: float = 60.0,
        max_records: int = DEFAULT_MAX_RECORDS,
        ksize: int = 20,
        alpha: int = 3,
    ) -> None:
        self.chain_id = chain_id
        self.contract = _checksum(contract)
        self.client = client
        self._rpc_timeout = rpc_timeout
        self._lookup_timeout = lookup_timeout
        self._rejoin_interval = rejoin_interval
        self._storage = _RecordStorage(self._check_for_key, max_records)
        self._server = _Server(self._storage, client=client, rpc_timeout=rpc_timeout, ksize=ksize, alpha=alpha)
        self._boot: list[tuple[str, int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.host = ""
        self.port = 0

    # record checks -----------------------------------------------------------
    def _check(self, value: object, address: str) -> ProxyRecord | None:
        if isinstance(value, str):
            value = value.encode("utf-8", "replace")
        if not isinstance(value, bytes):
            return None
        try:
            return verify_record(value, address, chain_id=self.chain_id, contract=self.contract)
        except RecordRefused as exc:
            log.debug("refused a DHT record claimed for %s: %s", address, exc)
            return None

    def _check_for_key(self, dkey: bytes, value: object) -> ProxyRecord | None:
        """The record in ``value`` if it is valid and its signer's key digests to ``dkey``."""
        if not isinstance(value, (bytes, str)):
            return None
        try:
            signer = record_signer(value)
        except RecordRefused:
            return None
        if digest(dht_key(signer)) != dkey:
            return None
        return self._check(value, signer)

    # life cycle ----------------------------------------------------------------
    async def start(self, host: str, port: int, bootstrap: Sequence[tuple[str, int]]) -> None:
        """Listen on ``host:port`` (0: ephemeral) and join through ``bootstrap`` (a boot node passes [])."""
        if self._started:
            raise RuntimeError("DhtNode already started")
        self._started = True
        await self._server.listen(port, interface=host)
        sockname = self._server.transport.get_extra_info("sockname")
        self.host, self.port = str(sockname[0]), int(sockname[1])
        self._boot = [a for a in await self._resolve(bootstrap) if a != (self.host, self.port)]
        joined = await self._join()
        if self._boot and not joined:
            log.warning("no DHT boot node answered at %s; will keep trying", self._boot_text())
        if not self.client:
            self._spawn(self._rejoin_loop())
        log.debug("DHT node on %s:%d (%s)", self.host, self.port, "client" if self.client else "serving")

    async def _resolve(self, addrs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        out: list[tuple[str, int]] = []
        for host, port in addrs:
            try:
                infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("cannot resolve DHT boot node %s:%d (%s)", host, port, exc.strerror or exc)
                continue
            out.extend((str(info[4][0]), int(info[4][1])) for info in infos[:1])
        return out

    async def _join(self) -> bool:
        """Ping the boot nodes (which adds a serving node to their tables); a serving node then crawls."""
        if not self._boot:
            return False
        nodes = [n for n in await asyncio.gather(*(self._server.bootstrap_node(a) for a in self._boot)) if n]
        for node in nodes:
            self._server.protocol.router.add_contact(node)
        if nodes and not self.client:
            await NodeSpiderCrawl(self._server.protocol, self._server.node, nodes, self._server.ksize,
                                  self._server.alpha).find()  # fmt: skip
        return bool(nodes)

    async def _rejoin_loop(self) -> None:
        while True:
            await asyncio.sleep(self._rejoin_interval)
            try:
                await self._join()
            except Exception:
                log.warning("DHT rejoin failed", exc_info=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def _boot_text(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self._boot)

    def stop(self) -> None:
        """Close the socket and end every background task; pending lookups resolve to None."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._server.stop()

    @property
    def neighbours(self) -> int:
        """How many nodes this node's routing table holds (0 before a successful join)."""
        if self._server.protocol is None:
            return 0
        return sum(len(b) for b in self._server.protocol.router.buckets)

    # records -----------------------------------------------------------------------
    async def publish(self, address: str, record: bytes) -> bool:
        """Store ``record`` (signed by ``address``) here and on the nodes closest to its key.

        Returns whether any other node accepted it. Raises :class:`RecordRefused` if the
        record does not verify: publishing it would only be refused by every peer.
        """
        if not self._started or self.client:
            raise RuntimeError("publish needs a started serving node")
        verify_record(record, address, chain_id=self.chain_id, contract=self.contract)
        stored = await self._server.store_digest(digest(dht_key(address)), bytes(record))
        if not stored:
            log.warning("DHT record of %s stored on no peer (%d known)", address, self.neighbours)
        return stored > 0

    def keep_published(self, address: str, make: Callable[[], bytes], interval: float) -> None:
        """Publish a fresh ``make()`` record every ``interval`` s (sooner after a failure) until stop."""

        async def loop() -> None:
            while True:
                try:
                    ok = await self.publish(address, make())
                except Exception:
                    log.warning("publishing the DHT record of %s failed", address, exc_info=True)
                    ok = False
                await asyncio.sleep(interval if ok else min(interval, self._rejoin_interval))

        self._spawn(loop())

    def stored(self, address: str) -> ProxyRecord | None:
        """The valid record this node itself holds for ``address``, if any."""
        return self._storage.record(digest(dht_key(address)))

    async def lookup(self, address: str) -> ProxyRecord | None:
        """The freshest valid record signed by ``address``, or None (not found, forged, stale, timeout)."""
        try:
            expected = _checksum(address)
        except RecordRefused:
            log.warning("DHT lookup of a malformed address refused")
            return None
        if not self._started:
            raise RuntimeError("lookup needs a started node")
        try:
            return await asyncio.wait_for(self._lookup(expected), self._lookup_timeout)
        except TimeoutError:
            log.warning("DHT lookup of %s timed out after %.1f s", expected, self._lookup_timeout)
        except Exception:  # a bug in the library must not escape into the caller's callbacks
            log.warning("DHT lookup of %s failed", expected, exc_info=True)
        return None

    async def _lookup(self, address: str) -> ProxyRecord | None:
        dkey = digest(dht_key(address))
        local = self._storage.record(dkey)
        if local is not None:
            return local
        node = Node(dkey)
        nearest = self._server.protocol.router.find_neighbors(node)
        if not nearest:
            log.warning("DHT lookup of %s: no known nodes (boot nodes %s)", address, self._boot_text() or "none")
            return None
        crawl = _RecordCrawl(self._server.protocol, node, nearest, self._server.ksize, self._server.alpha,
                             lambda value: self._check(value, address))  # fmt: skip
        result: ProxyRecord | None = await crawl.find()
        return result


async def lookup_proxy(
    address: str,
    bootstrap: Sequence[tuple[str, int]],
    *,
    chain_id: int,
    contract: str,
    host: str | None = None,
    timeout: float = 10,
    rpc_timeout: float = 5.0,
) -> ProxyRecord | None:
    """One-shot lookup from a throwaway client node on an ephemeral port (any number may run at once).

    ``host`` is the interface to bind; None picks the one that routes to the first boot node.
    Returns None when nothing valid is found within ``timeout``; never raises for network trouble.
    """
    if not bootstrap:
        log.warning("DHT lookup without boot nodes")
        return None
    try:
        bind = host if host is not None else _local_address_towards(bootstrap[0])
    except OSError as exc:
        log.warning("DHT lookup: no route to boot node %s:%d (%s)", *bootstrap[0], exc.strerror or exc)
        return None
    node = DhtNode(chain_id=chain_id, contract=contract, client=True, rpc_timeout=min(rpc_timeout, timeout),
                   lookup_timeout=timeout)  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            await node.start(bind, 0, bootstrap)
            return await node.lookup(address)
    except TimeoutError:
        log.warning("DHT lookup of %s timed out after %.1f s", address, timeout)
        return None
    except OSError as exc:
        log.warning("DHT lookup of %s failed: %s", address, exc.strerror or exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            node.stop()

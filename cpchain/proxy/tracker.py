"""The proxy tracker: a live list of proxies, the proxies' link to it, and client listing.

Owns the tracker's UDP protocol (msgpack datagrams of bounded size), its peer table, the
proxy-side :class:`TrackerLink` and :func:`list_live_proxies`, plus ranking proxies by their
on-chain standing. Must not touch the DHT (:mod:`cpchain.proxy.discovery`), the proxy's
trades or keys other than the account handed in to sign with.

Fixes over the 2018 tracker (reference §11 items 12 and 20): registrations, heartbeats and
leaves are signed by the proxy's own address (purpose, chain, contract, nonce, expiry, and a
per-address sequence number), so nobody can register, refresh or evict another proxy and a
captured datagram cannot be replayed; liveness is a last-seen time that every heartbeat
renews; a tracker restart makes the next heartbeat answer ``unknown-peer`` and the link
registers again at once; replies are matched by a random 128-bit id, and late or unknown
ones are ignored; the live list is paginated, so it need not fit one datagram. A list
request must be padded to ``LIST_REQUEST_MIN`` bytes so the tracker cannot be used to
amplify spoofed traffic more than a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import Escrow
from cpchain.crypto.errors import CryptoError, ExpiredMessage, ReplayedMessage
from cpchain.crypto.signing import MemoryNonceStore, NonceStore, sign_payload, verify_payload
from cpchain.proxy.discovery import MAX_RECORD_BYTES, ProxyRecord, RecordRefused, record_signer, verify_record

__all__ = [
    "LIST_REQUEST_MIN",
    "MAX_DATAGRAM",
    "ProxyStanding",
    "TrackerLink",
    "TrackerServer",
    "TrackerUnavailable",
    "list_live_proxies",
    "proxies_with_standing",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_DATAGRAM = 8192
PAGE_BUDGET = 7000  # bytes of records per list reply, leaving room for the envelope
LIST_REQUEST_MIN = 2048
MESSAGE_TTL = 60  # lifetime of a signed tracker message; it also bounds clock skew
MESSAGE_MAX_TTL = 120
DEFAULT_MAX_PEERS = 10_000
REGISTER = "pdash-tracker-register/1"
HEARTBEAT = "pdash-tracker-heartbeat/1"
LEAVE = "pdash-tracker-leave/1"
_ID_BYTES = 16

Address = tuple[str, int]


class TrackerUnavailable(Exception):
    """The tracker did not answer in time (or cannot be reached)."""


def _pack(message: Mapping[str, Any]) -> bytes:
    return bytes(msgpack.packb({"v": PROTOCOL_VERSION, **message}, use_bin_type=True))


def _unpack(data: bytes) -> dict[str, Any] | None:
    """A decoded message, or None for anything malformed, oversized or of another version."""
    if len(data) > MAX_DATAGRAM:
        return None
    try:
        message = msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_str_len=MAX_DATAGRAM, max_bin_len=MAX_DATAGRAM,
            max_array_len=256, max_map_len=16, max_ext_len=0,
        )  # fmt: skip
    except Exception:  # msgpack raises several unrelated types on garbage
        return None
    if not isinstance(message, dict) or message.get("v") != PROTOCOL_VERSION:
        return None
    request_id = message.get("id")
    if not isinstance(request_id, bytes) or len(request_id) != _ID_BYTES or not isinstance(message.get("t"), str):
        return None
    return message


class _Endpoint(asyncio.DatagramProtocol):
    """One UDP socket: matches replies to pending requests by id; hands requests to ``on_request``."""

    def __init__(self, on_request: Callable[[dict[str, Any], bytes, Address], None] | None = None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, tuple[asyncio.Future[dict[str, Any]], Address | None]] = {}
        self._on_request = on_request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        message = _unpack(data)
        if message is None:
            log.debug("ignored a malformed tracker datagram of %d bytes from %s", len(data), addr)
            return
        if message["t"] == "reply":
            entry = self._pending.get(message["id"])
            if entry is None or (entry[1] is not None and entry[1] != tuple(addr[:2])):
                log.debug("ignored a late or unknown tracker reply from %s", addr)
                return
            if not entry[0].done():
                entry[0].set_result(message)
        elif self._on_request is not None:
            try:
                self._on_request(message, data, (str(addr[0]), int(addr[1])))
            except Exception:  # a bug in one handler must not take the tracker down
                log.exception("tracker request from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("tracker socket error: %s", exc)

    def send(self, message: Mapping[str, Any], addr: Address | None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        data = _pack(message)
        if len(data) > MAX_DATAGRAM:
            raise ValueError("tracker message too large")
        if addr is None:
            self.transport.sendto(data)
        else:
            self.transport.sendto(data, addr)

    async def request(self, build: Callable[[], dict[str, Any]], addr: Address | None, timeout: float,
                      attempts: int = 3) -> dict[str, Any]:  # fmt: skip
        """Send ``build()`` (rebuilt each try, so signed messages get a fresh nonce); the reply.

        Raises :class:`TrackerUnavailable` when no try is answered within ``timeout`` in all.
        """
        per_try = timeout / attempts
        loop = asyncio.get_running_loop()
        for _ in range(attempts):
            request_id = secrets.token_bytes(_ID_BYTES)
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending[request_id] = (future, addr)
            try:
                self.send({**build(), "id": request_id}, addr)
                return await asyncio.wait_for(future, per_try)
            except TimeoutError:
                continue
            finally:
                self._pending.pop(request_id, None)
        raise TrackerUnavailable(f"no answer from the tracker within {timeout:.1f} s")

    def close(self) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        if self.transport is not None:
            self.transport.close()


async def _resolve(host: str, port: int) -> Address:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return str(infos[0][4][0]), int(infos[0][4][1])


# --- the tracker ---------------------------------------------------------------------


@dataclass
class _Peer:
    raw: bytes
    record: ProxyRecord
    last_seen: float  # monotonic
    seq: int


class TrackerServer:
    """The tracker: proxies register signed records, keep them alive with heartbeats, and clients list them.

    A peer not heard from for ``peer_expiry`` seconds, or whose record expired, is dropped;
    its next heartbeat is answered ``unknown-peer`` so it registers again. Give a persistent
    ``nonce_store`` (e.g. SqliteNonceStore) to keep refusing replays across restarts.
    """

    def __init__(
        self,
        *,
        chain_id: int,
        contract: str,
        peer_expiry: float,
        nonce_store: NonceStore | None = None,
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        self.chain_id = chain_id
        self.contract = contract
        self.peer_expiry = peer_expiry
        self.max_peers = max_peers
        self._nonces: NonceStore = nonce_store if nonce_store is not None else MemoryNonceStore()
        self._peers: dict[str, _Peer] = {}
        self._endpoint = _Endpoint(self._handle)
        self._sweeper: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (UDP; port 0 picks a free one, see :attr:`port`)."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._endpoint, local_addr=(host, port))
        assert self._endpoint.transport is not None
        sockname = self._endpoint.transport.get_extra_info("sockname")
        self.host, self.port = str(sockname[0]), int(sockname[1])
        self._sweeper = asyncio.ensure_future(self._sweep_loop())
        log.info("tracker listening on %s:%d (UDP)", self.host, self.port)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._endpoint.close()

    def live(self) -> dict[str, ProxyRecord]:
        """The live peers' records by address."""
        self._sweep()
        return {address: peer.record for address, peer in self._peers.items()}

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.peer_expiry / 5))
            self._sweep()

    def _sweep(self) -> None:
        cutoff, now = time.monotonic() - self.peer_expiry, time.time()
        for address, peer in list(self._peers.items()):
            if peer.last_seen < cutoff or peer.record.expires < now:
                del self._peers[address]
                log.info("dropped proxy %s (%s)", address, "silent" if peer.last_seen < cutoff else "record expired")

    # requests ----------------------------------------------------------------------
    def _handle(self, message: dict[str, Any], data: bytes, addr: Address) -> None:
        kind = message["t"]
        reply: dict[str, Any]
        if kind == "list":
            if len(data) < LIST_REQUEST_MIN:
                log.debug("ignored an unpadded list request from %s", addr)
                return
            reply = self._list(message.get("cursor"))
        elif kind in ("register", "heartbeat", "leave"):
            reply = self._signed(kind, message.get("msg"), addr)
        else:
            log.debug("ignored a tracker message of unknown type from %s", addr)
            return
        self._endpoint.send({"t": "reply", "id": message["id"], **reply}, addr)

    def _signed(self, kind: str, raw: object, addr: Address) -> dict[str, Any]:
        purpose = {"register": REGISTER, "heartbeat": HEARTBEAT, "leave": LEAVE}[kind]
        if not isinstance(raw, str):
            return {"ok": False, "error": "bad-request"}
        try:
            verified = verify_payload(
                raw, purpose=purpose, chain_id=self.chain_id, contract=self.contract,
                nonce_store=self._nonces, max_ttl=MESSAGE_MAX_TTL,
            )  # fmt: skip
        except ReplayedMessage:
            log.debug("refused a replayed %s from %s", kind, addr)
            return {"ok": False, "error": "replayed"}
        except ExpiredMessage:
            return {"ok": False, "error": "expired"}
        except (CryptoError, ValueError) as exc:
            log.debug("refused a %s from %s: %s", kind, addr, exc)
            return {"ok": False, "error": "refused"}
        body, signer = verified.body, verified.signer
        seq = body.get("seq")
        if type(seq) is not int or seq < 0:
            return {"ok": False, "error": "bad-request"}
        peer = self._peers.get(signer)
        if peer is not None and seq <= peer.seq:
            return {"ok": False, "error": "stale"}
        if kind == "register":
            return self._register(signer, seq, body.get("record"))
        if peer is None or peer.record.expires < time.time():
            self._peers.pop(signer, None)
            return {"ok": False, "error": "unknown-peer"}
        if kind == "leave":
            del self._peers[signer]
            log.info("proxy %s left (%d live)", signer, len(self._peers))
        else:
            peer.seq, peer.last_seen = seq, time.monotonic()
        return {"ok": True}

    def _register(self, signer: str, seq: int, record: object) -> dict[str, Any]:
        if not isinstance(record, str):
            return {"ok": False, "error": "bad-request"}
        try:
            parsed = verify_record(record, signer, chain_id=self.chain_id, contract=self.contract)
        except RecordRefused as exc:
            log.debug("refused the record of %s: %s", signer, exc)
            return {"ok": False, "error": "bad-record"}
        if signer not in self._peers:
            self._sweep()
            if len(self._peers) >= self.max_peers:
                log.warning("tracker full (%d proxies); refused %s", len(self._peers), signer)
                return {"ok": False, "error": "full"}
            log.info("registered proxy %s at %s (%d live)", signer, parsed.host, len(self._peers) + 1)
        self._peers[signer] = _Peer(record.encode("utf-8"), parsed, time.monotonic(), seq)
        return {"ok": True}

    def _list(self, cursor: object) -> dict[str, Any]:
        """One page of records of live peers after ``cursor`` (an address), in address order."""
        self._sweep()
        after = cursor if isinstance(cursor, str) else ""
        page: list[bytes] = []
        size = 0
        for address in sorted(a for a in self._peers if a > after):
            raw = self._peers[address].raw
            if page and size + len(raw) + 8 > PAGE_BUDGET:
                return {"ok": True, "records": page, "next": after}
            page.append(raw)
            size += len(raw) + 8
            after = address
        return {"ok": True, "records": page, "next": None}


# --- the proxy's link ------------------------------------------------------------------


class TrackerLink:
    """Keeps one proxy registered: registers, heartbeats, re-registers when the tracker forgot it.

    ``make_record`` returns a fresh signed record (:func:`cpchain.proxy.discovery.make_record`);
    it is called at each registration, and a registration is renewed every
    ``republish_interval`` so the tracker never holds an expired record.
    """

    def __init__(
        self,
        account: LocalAccount,
        make_record: Callable[[], bytes],
        tracker: Address,
        *,
        chain_id: int,
        contract: str,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval: float = 15.0,
        republish_interval: float = 1200.0,
        timeout: float = 5.0,
    ) -> None:
        self._account = account
        self._make_record = make_record
        self._tracker = tracker
        self._tracker_addr: Address | None = None
        self.chain_id = chain_id
        self.contract = contract
        self._bind = (host, port)
        self.heartbeat_interval = heartbeat_interval
        self.republish_interval = republish_interval
        self.timeout = timeout
        self._endpoint = _Endpoint()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._registered_at: float | None = None
        self.registrations = 0  # successful registrations so far (re-registrations included)

    @property
    def registered(self) -> bool:
        return self._registered_at is not None

    @property
    def port(self) -> int:
        assert self._endpoint.transport is not None, "start() first"
        return int(self._endpoint.transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        """Bind the link's UDP port and start registering and heartbeating in the background.

        An unreachable tracker is not an error: the link keeps trying every heartbeat interval.
        """
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._endpoint, local_addr=self._bind)
        self._task = asyncio.ensure_future(self._run())

    def stop(self, *, leave: bool = True) -> None:
        """Stop heartbeating and (``leave``) tell the tracker, best effort and unanswered, that this proxy left."""
        if self._task is not None:
            self._task.cancel()
        if leave and self._registered_at is not None and self._tracker_addr is not None:
            with contextlib.suppress(Exception):
                self._endpoint.send({"t": "leave", "id": secrets.token_bytes(_ID_BYTES),
                                     "msg": self._sign(LEAVE, {})}, self._tracker_addr)  # fmt: skip
        self._registered_at = None
        self._endpoint.close()

    async def _run(self) -> None:
        while True:
            try:
                due = self._registered_at is None or time.monotonic() - self._registered_at >= self.republish_interval
                if due:
                    await self.register()
                elif await self.heartbeat() == "unknown-peer":
                    log.info("tracker forgot this proxy (restarted?); registering again")
                    await self.register()
            except Exception:
                log.warning("tracker link step failed", exc_info=True)
            await asyncio.sleep(self.heartbeat_interval)

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    def _sign(self, purpose: str, body: dict[str, Any]) -> str:
        return sign_payload(
            self._account, purpose, {**body, "seq": self._next_seq()},
            chain_id=self.chain_id, contract=self.contract, ttl=MESSAGE_TTL,
        ).to_json()  # fmt: skip

    async def _call(self, kind: str, purpose: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self._tracker_addr is None:
            self._tracker_addr = await _resolve(*self._tracker)
        return await self._endpoint.request(
            lambda: {"t": kind, "msg": self._sign(purpose, body())}, self._tracker_addr, self.timeout
        )

    async def register(self) -> bool:
        """Register with a fresh record; True if the tracker accepted it."""
        try:
            reply = await self._call("register", REGISTER, lambda: {"record": self._make_record().decode("utf-8")})
        except (TrackerUnavailable, OSError) as exc:
            log.warning("tracker %s:%d: registration failed (%s)", *self._tracker, exc)
            return False
        if reply.get("ok") is True:
            if self._registered_at is None:
                log.info("registered with tracker %s:%d", *self._tracker)
            self._registered_at = time.monotonic()
            self.registrations += 1
            return True
        log.warning("tracker %s:%d refused the registration: %s", *self._tracker, reply.get("error"))
        return False

    async def heartbeat(self) -> str:
        """One heartbeat: ``"ok"``, ``"unknown-peer"`` (register again), ``"timeout"`` or the tracker's error."""
        try:
            reply = await self._call("heartbeat", HEARTBEAT, dict)
        except (TrackerUnavailable, OSError):
            log.info("tracker %s:%d did not answer a heartbeat", *self._tracker)
            return "timeout"
        if reply.get("ok") is True:
            return "ok"
        error = reply.get("error")
        if error == "unknown-peer":
            self._registered_at = None
        return error if isinstance(error, str) else "refused"


# --- clients --------------------------------------------------------------------------


async def list_live_proxies(tracker: Address, *, chain_id: int, contract: str, timeout: float = 5) -> list[ProxyRecord]:
    """Every live proxy's verified record, from an ephemeral port; invalid records are skipped.

    Raises :class:`TrackerUnavailable` if the tracker does not answer within ``timeout``
    (so callers can tell "no proxies" from "no tracker").
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    endpoint = _Endpoint()
    try:
        # A connected socket: the OS picks the interface and port, and drops datagrams from others.
        await loop.create_datagram_endpoint(lambda: endpoint, remote_addr=tracker)
    except OSError as exc:
        raise TrackerUnavailable(f"cannot reach the tracker at {tracker[0]}:{tracker[1]}: {exc.strerror}") from None
    records: dict[str, ProxyRecord] = {}
    cursor = ""
    try:
        for _ in range(DEFAULT_MAX_PEERS):  # a bound even against a tracker that never ends its list
            left = deadline - loop.time()
            if left <= 0:
                raise TrackerUnavailable(f"the tracker's list did not arrive within {timeout:.1f} s")
            request = {"t": "list", "cursor": cursor, "pad": b"\0" * LIST_REQUEST_MIN}
            reply = await endpoint.request(functools.partial(dict, request), None, left)
            raws = reply.get("records")
            if not isinstance(raws, list):
                break
            for raw in raws:
                record = _check_listed(raw, chain_id, contract)
                if record is not None:
                    records[record.address] = record
            following = reply.get("next")
            if not isinstance(following, str) or following <= cursor:
                break
            cursor = following
    finally:
        endpoint.close()
    return sorted(records.values(), key=lambda r: r.address)


def _check_listed(raw: object, chain_id: int, contract: str) -> ProxyRecord | None:
    if not isinstance(raw, bytes) or len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        return verify_record(raw, record_signer(raw), chain_id=chain_id, contract=contract)
    except RecordRefused as exc:
        log.warning("tracker listed an invalid record: %s", exc)
        return None


@dataclass(frozen=True)
class ProxyStanding:
    """A listed proxy with its on-chain deposit and credit (what a buyer weighs when picking one)."""

    record: ProxyRecord
    deposit: int  # wei bonded in the escrow
    unlock_at: int  # 0 while bonded; else when its withdrawal unlocks (it is leaving)
    rating_sum: int
    rating_count: int
    eligible: bool  # may be named in a new order: deposit >= the contract's minimum and not unbonding

    @property
    def address(self) -> str:
        return self.record.address

    @property
    def credit(self) -> float | None:
        """Average rating (1-5), or None before the first rating."""
        return self.rating_sum / self.rating_count if self.rating_count else None


def proxies_with_standing(records: Iterable[ProxyRecord], escrow: Escrow) -> list[ProxyStanding]:
    """Each proxy's deposit and credit read from the chain, best first.

    Best = eligible for new orders, then higher credit, more ratings, larger deposit. Makes
    blocking chain calls: from an event loop, run it in a thread.
    """
    minimum = escrow.params().min_proxy_deposit
    standings = []
    for record in records:
        deposit, unlock_at = escrow.proxy_account(record.address)
        total, count = escrow.proxy_rating(record.address)
        eligible = deposit >= minimum and unlock_at == 0
        standings.append(ProxyStanding(record, deposit, unlock_at, total, count, eligible))
    return sorted(
        standings,
        key=lambda s: (not s.eligible, -(s.credit or 0.0), -s.rating_count, -s.deposit, s.address),
    )

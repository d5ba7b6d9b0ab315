"""Stream client library and command line: open channels, publish sealed records, subscribe.

Owns the client side of cpchain.proxy.streams: TLS connections pinned to the proxy's
certificate (nothing is sent before the pin is checked), the WebSocket client (websockets'
sans-I/O protocol driven on the caller's thread, so a TLS socket is never used by two
threads at once), sealing before anything leaves (`Publisher`), opening with every
integrity check (`subscribe`, `read_pages`) and resumption from a saved cursor. The wallet
builds `pdash stream publish|subscribe` on this; `python -m cpchain.proxy.streams.client`
offers the same now. Must not hold keys beyond what the caller passes in.

A publisher keeps every record until the proxy acknowledged it (after Kafka's acks=all),
and after a reconnection resends from the sequence number the proxy reports, so nothing
acknowledged is lost and nothing is written twice. A subscriber's `Cursor` (next position,
next sequence number) is advanced only past records that opened; saving it and passing it
back delivers every later record exactly once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

from eth_account.signers.local import LocalAccount
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from cpchain.crypto import ecies
from cpchain.proxy.protocol import Domain, ProtocolError, check_key_grant, make_key_grant
from cpchain.proxy.streams.records import Cursor, Record, RecordOpener, seal
from cpchain.proxy.streams.wire import (
    StreamEndpoint,
    StreamLocator,
    WireError,
    auth_header,
    b64,
    bind_request,
    end_request,
    open_request,
    pack_records,
    publish_token,
    record_seq,
    subscribe_token,
    unb64,
    unpack_delivery,
)
from cpchain.proxy.tls import PinMismatch, PinnedHTTPSConnection, connect_pinned
from cpchain.types import OrderTerms, ProductDescription

DEFAULT_TIMEOUT = 30.0
MAX_MESSAGE = 64 * 1024 * 1024
RETRYABLE_CODES = frozenset({"busy", "unavailable"})


class StreamError(Exception):
    """Base of every failure of the stream client; the message is one line for a person."""


class StreamRefusedError(StreamError):
    """The proxy refused (`code` is cpchain.proxy.streams.model.Code's value, `status` the HTTP one)."""

    def __init__(self, code: str, message: str, status: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.reason = message
        self.details = details or {}

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or self.status == 503


class StreamDisconnected(StreamError):
    """The connection to the proxy dropped or could not be made."""


def _refusal(status: int, text: str) -> StreamRefusedError:
    """A refusal from a JSON error body, or a "code: message" reason phrase."""
    try:
        body = json.loads(text)
        return StreamRefusedError(str(body.pop("code", status)), str(body.pop("error", "")), status, body)
    except (ValueError, AttributeError):
        code, _, message = text.partition(": ")
        return StreamRefusedError(code if message else str(status), message or text, status)


# ---------------------------------------------------------------- WebSocket over a pinned TLS socket


class WsClosed(StreamDisconnected):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else "connection closed")
        self.code = code
        self.reason = reason


class WsConnection:
    """One WebSocket connection; every read and write happens on the calling thread."""

    def __init__(self, endpoint: StreamEndpoint, path: str, headers: dict[str, str], *,
                 timeout: float = DEFAULT_TIMEOUT, max_size: int = MAX_MESSAGE) -> None:  # fmt: skip
        self.timeout = timeout
        try:
            self.sock = connect_pinned(endpoint.host, endpoint.ws_port, endpoint.fingerprint, timeout)
        except PinMismatch as exc:
            raise StreamError(f"{endpoint.host}:{endpoint.ws_port}: {exc}") from None
        except OSError as exc:
            raise StreamDisconnected(f"cannot reach {endpoint.host}:{endpoint.ws_port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.protocol = ClientProtocol(parse_uri(endpoint.ws_url(path)), max_size=max_size)
        self._messages: deque[bytes | str] = deque()
        self._fragments: list[bytes] = []
        self._fragment_text = False
        try:
            request = self.protocol.connect()
            request.headers.update(headers)
            self.protocol.send_request(request)
            self._flush()
            self._handshake()
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.protocol.state is State.CONNECTING:
            if not self._fill(max(0.0, deadline - time.monotonic())) and time.monotonic() >= deadline:
                raise StreamDisconnected("timed out waiting for the WebSocket handshake")
            if self.protocol.handshake_exc is not None:
                break
        exc = self.protocol.handshake_exc
        if isinstance(exc, InvalidStatus):
            response: Response = exc.response
            body = response.body.decode("utf-8", "replace") if response.body else ""
            raise _refusal(response.status_code, body or response.reason_phrase)
        if exc is not None:
            raise StreamDisconnected(f"WebSocket handshake failed: {exc}")

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.settimeout(self.timeout)
                self.sock.sendall(data)

    def _fill(self, timeout: float | None) -> bool:
        """Read once from the socket (waiting up to `timeout`); False if nothing came."""
        if not self.sock.pending():
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 18)
        except (TimeoutError, ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError as exc:
            self.protocol.receive_eof()
            raise StreamDisconnected(f"connection lost: {exc}") from None
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._flush()
        return True

    def _frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragments, self._fragment_text = [bytes(frame.data)], frame.opcode is Opcode.TEXT
        elif frame.opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
        else:
            return
        if frame.fin:
            data = b"".join(self._fragments)
            self._fragments = []
            self._messages.append(data.decode() if self._fragment_text else data)

    def recv(self, timeout: float | None) -> bytes | str | None:
        """The next message; None if none came within `timeout`; WsClosed once the connection closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages:
            if self.protocol.state in (State.CLOSING, State.CLOSED):
                raise WsClosed(self.protocol.close_code, self.protocol.close_reason or "")
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(remaining) and deadline is not None and time.monotonic() >= deadline:
                return None
        return self._messages.popleft()

    def send_binary(self, data: bytes) -> None:
        if self.protocol.state is not State.OPEN:
            raise WsClosed(self.protocol.close_code, self.protocol.close_reason or "")
        self.protocol.send_binary(data)
        try:
            self._flush()
        except OSError as exc:
            raise StreamDisconnected(f"connection lost: {exc}") from None

    def close(self) -> None:
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                self._flush()
        except OSError:
            pass
        finally:
            self.sock.close()


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class OrderAccess:
    """What a buyer learns from the proxy about its stream order (grant verified against the order)."""

    order_id: int
    channel: str
    stream_key: bytes
    next_position: int
    until: int | None
    fetched_tx: str
    delivered_tx: str


class StreamClient:
    """One account talking to one proxy's stream ports, for one escrow deployment."""

    def __init__(self, account: LocalAccount, domain: Domain, endpoint: StreamEndpoint, *,
                 timeout: float = DEFAULT_TIMEOUT, retry_for: float = 60.0) -> None:  # fmt: skip
        self.account = account
        self.domain = domain
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry_for = retry_for

    @classmethod
    def for_locator(cls, account: LocalAccount, domain: Domain, locator: StreamLocator, **kwargs: Any) -> StreamClient:
        return cls(account, domain, locator.endpoint, **kwargs)

    # ------------------------------------------------------------ REST

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = None) -> dict[str, Any]:
        """One HTTPS request, pinned; the JSON answer, or StreamRefusedError/StreamDisconnected."""
        e = self.endpoint
        conn = PinnedHTTPSConnection(e.host, e.http_port, e.fingerprint, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = auth_header(token)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except PinMismatch as exc:
            raise StreamError(f"{e.host}:{e.http_port}: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise StreamDisconnected(f"cannot reach {e.host}:{e.http_port}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            raise _refusal(response.status, text)
        try:
            answer = json.loads(text)
        except ValueError:
            raise StreamError("the proxy's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise StreamError("the proxy's answer is not a JSON object")
        return answer

    def open_channel(self, retention: int = 0) -> dict[str, Any]:
        """As a seller: a new channel; the answer holds its id, data hash (commitment) and locator."""
        raw = open_request(self.account, proxy=self.endpoint.proxy, domain=self.domain, retention=retention)
        return self._retrying(lambda: self.request("POST", "/v1/channels", raw))

    def end_channel(self, channel: str) -> dict[str, Any]:
        raw = end_request(self.account, channel=channel, proxy=self.endpoint.proxy, domain=self.domain)
        return self._retrying(lambda: self.request("POST", f"/v1/channels/{channel}/end", raw))

    def bind_order(self, channel: str, order_id: int, product: ProductDescription, stream_key: bytes,
                   buyer_key: bytes) -> dict[str, Any]:  # fmt: skip
        """As the seller of a paid order: hand the stream key, wrapped to the buyer, and bind the order.

        Blocks until the proxy claimed proxyFetched (or refused); safe to retry.
        """
        grant = make_key_grant(self.account, order_id=order_id, wrapped_key=ecies.wrap_key(buyer_key, stream_key),
                               buyer_key=buyer_key, domain=self.domain)  # fmt: skip
        raw = bind_request(self.account, channel=channel, order_id=order_id, proxy=self.endpoint.proxy,
                           product=product.canonical().decode(), key_grant=grant, domain=self.domain)  # fmt: skip
        return self._retrying(lambda: self.request("POST", f"/v1/channels/{channel}/orders", raw))

    def order_access(self, channel: str, order_id: int, terms: OrderTerms, buyer_secret: bytes) -> OrderAccess:
        """As the buyer: the stream key from the seller's grant, checked against the order's terms."""
        answer = self._retrying(lambda: self.request("GET", f"/v1/orders/{order_id}",
                                                     token=self._subscribe_token(channel, order_id)))  # fmt: skip
        try:
            grant = check_key_grant(str(answer["key_grant"]), order_id=order_id, terms=terms, domain=self.domain)
        except (ProtocolError, KeyError) as exc:
            raise StreamError(f"the proxy passed on an invalid key grant: {exc}") from None
        if answer.get("channel") != channel or answer.get("data_hash") != terms.data_hash.hex():
            raise StreamError("the proxy reports another channel or data hash than the order's")
        key = ecies.unwrap_key(buyer_secret, grant.wrapped_key)
        until = answer.get("until")
        return OrderAccess(order_id, channel, key, int(answer.get("next_position", 0)),
                           int(until) if until is not None else None, str(answer.get("fetched_tx", "")),
                           str(answer.get("delivered_tx", "")))  # fmt: skip

    def _publish_token(self, channel: str) -> str:
        return publish_token(self.account, channel=channel, proxy=self.endpoint.proxy, domain=self.domain)

    def _subscribe_token(self, channel: str, order_id: int) -> str:
        return subscribe_token(self.account, channel=channel, order_id=order_id, proxy=self.endpoint.proxy,
                               domain=self.domain)  # fmt: skip

    def publish_status(self, channel: str) -> dict[str, Any]:
        """As the seller: the channel's state and the next sequence number it expects."""
        return self._retrying(lambda: self.request("GET", f"/v1/channels/{channel}",
                                                   token=self._publish_token(channel)))  # fmt: skip

    def publish_rest(self, channel: str, records: list[bytes]) -> dict[str, Any]:
        """Publish already sealed records (`records.seal`) with one POST; the proxy's acknowledgement."""
        body = json.dumps({"records": [b64(r) for r in records]}).encode()
        return self.request("POST", f"/v1/channels/{channel}/records", body, token=self._publish_token(channel))

    def publish_batch(self, channel: str, records: list[bytes]) -> int:
        """Publish sealed, consecutive records over REST, retrying; returns the next sequence number.

        A retry after an answer was lost finds the proxy expecting the record after the
        batch: the batch was written, so it counts as done (nothing is written twice).
        """
        after = record_seq(records[-1]) + 1

        def attempt() -> dict[str, Any]:
            try:
                return self.publish_rest(channel, records)
            except StreamRefusedError as exc:
                if exc.code == "seq_mismatch" and exc.details.get("expected_seq") == after:
                    return {"next_seq": after}
                raise

        return int(self._retrying(attempt)["next_seq"])

    def page(self, channel: str, order_id: int, start: int, limit: int = 1000,
             wait: int = 0) -> tuple[list[tuple[int, bytes]], int, bool]:  # fmt: skip
        """One REST page of sealed records from position `start`: (records, next position, channel ended)."""
        answer = self.request("GET", f"/v1/channels/{channel}/records?from={start}&limit={limit}&wait={wait}",
                              token=self._subscribe_token(channel, order_id))  # fmt: skip
        try:
            items = [(int(r["position"]), unb64(r["data"])) for r in answer["records"]]
            return items, int(answer["next_position"]), bool(answer["end"])
        except (KeyError, TypeError, ValueError, WireError) as exc:
            raise StreamError(f"malformed page from the proxy: {exc}") from None

    def _retrying(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        deadline = time.monotonic() + self.retry_for
        delay = 0.2
        while True:
            try:
                return call()
            except (StreamDisconnected, StreamRefusedError) as exc:
                retry = isinstance(exc, StreamDisconnected) or exc.retryable
                if not retry or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------ WebSocket

    def connect(self, path: str, token: str) -> WsConnection:
        return WsConnection(self.endpoint, path, {"Authorization": auth_header(token)}, timeout=self.timeout)

    def publisher(self, channel: str, key: bytes, **kwargs: Any) -> Publisher:
        return Publisher(self, channel, key, **kwargs)

    def subscribe(self, channel: str, order_id: int, key: bytes, cursor: Cursor | None = None, *,
                  live: bool = False, reconnect: bool = True,
                  idle_timeout: float | None = None) -> Iterator[Record]:  # fmt: skip
        """Opened records over WebSocket, from `cursor` (or the live end), reconnecting from the cursor.

        Stops when the channel ends, or after `idle_timeout` seconds without a record.
        Raises StreamIntegrityError for a tampered, replayed, missing or reordered record.
        """
        cursor = cursor if cursor is not None else Cursor(0, None if live else 0)
        opener = RecordOpener(key, channel, cursor)
        start = "live" if live and cursor.position == 0 and cursor.seq is None else str(cursor.position)
        deadline = time.monotonic() + self.retry_for
        while True:
            conn: WsConnection | None = None
            try:
                conn = self.connect(f"/v1/channels/{channel}/subscribe?from={start}",
                                    self._subscribe_token(channel, order_id))  # fmt: skip
                ready = _json(conn.recv(self.timeout), "ready")
                if start == "live":
                    cursor.position = int(ready["position"])
                deadline = time.monotonic() + self.retry_for
                while True:
                    message = conn.recv(idle_timeout)
                    if message is None:
                        return
                    if isinstance(message, str):
                        if _json(message, "end")["type"] == "end":
                            return
                        continue
                    for at, raw in unpack_delivery(message):
                        yield opener.open(at, raw)
            except WsClosed as exc:
                if exc.code == 1000:
                    return
                if not reconnect or time.monotonic() > deadline:
                    raise
            except (StreamDisconnected, StreamRefusedError) as exc:
                retry = isinstance(exc, StreamDisconnected) or exc.retryable
                if not reconnect or not retry or time.monotonic() > deadline:
                    raise
            except WireError as exc:
                raise StreamError(f"malformed frame from the proxy: {exc}") from None
            finally:
                if conn is not None:
                    conn.close()
            start = str(cursor.position)
            time.sleep(0.2)

    def read_pages(self, channel: str, order_id: int, key: bytes, cursor: Cursor | None = None, *,
                   limit: int = 1000, follow: bool = False, wait: int = 10) -> Iterator[Record]:  # fmt: skip
        """Opened records over REST pages from `cursor`; stops when caught up unless `follow`."""
        cursor = cursor if cursor is not None else Cursor(0, 0)
        opener = RecordOpener(key, channel, cursor)
        while True:
            items, _, ended = self.page(channel, order_id, cursor.position, limit, wait if follow else 0)
            for at, raw in items:
                yield opener.open(at, raw)
            if ended or (not items and not follow):
                return


def _json(message: bytes | str | None, *types: str) -> dict[str, Any]:
    """A text message of one of `types`; an error message becomes StreamRefusedError."""
    if message is None:
        raise StreamDisconnected("timed out waiting for the proxy")
    try:
        data = json.loads(message)
    except ValueError:
        raise StreamError("unexpected message from the proxy") from None
    if not isinstance(data, dict):
        raise StreamError("unexpected message from the proxy")
    if data.get("type") == "error":
        close = int(data.pop("close", 0) or 0)
        status = close - 4000 if close >= 4000 else close
        raise StreamRefusedError(str(data.pop("code", "closed")), str(data.pop("error", "")), status, data)
    if data.get("type") not in types:
        raise StreamError(f"expected a {'/'.join(types)} message, got {data.get('type')!r}")
    return data


class Publisher:
    """Seals and publishes records over WebSocket; keeps each until acknowledged, resends after reconnects.

    `next_seq` None takes the proxy's word for where the channel stands on first connect; a
    seller that saved the number (e.g. across restarts) passes it and any disagreement is
    an error instead.
    """

    def __init__(self, client: StreamClient, channel: str, key: bytes, *, next_seq: int | None = None,
                 window: int = 8192, batch_records: int = 256, batch_bytes: int = 1 << 20,
                 reconnect: bool = True) -> None:  # fmt: skip
        self.client = client
        self.channel = channel
        self.key = key
        self.next_seq = next_seq
        self.window = window
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.reconnect = reconnect
        self.unacked: deque[tuple[int, bytes]] = deque()
        self.acked_seq = -1 if next_seq is None else next_seq - 1
        self.last_position = -1
        self.conn: WsConnection | None = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(flush=exc[0] is None)

    def _connect(self) -> WsConnection:
        deadline = time.monotonic() + self.client.retry_for
        delay = 0.2
        while True:
            try:
                conn = self.client.connect(f"/v1/channels/{self.channel}/publish",
                                           self.client._publish_token(self.channel))  # fmt: skip
                try:
                    ready = _json(conn.recv(self.client.timeout), "ready")
                    self._reconcile(int(ready["next_seq"]))
                    self.conn = conn
                    self._send_unacked()
                except BaseException:
                    conn.close()
                    self.conn = None
                    raise
                return conn
            except (StreamDisconnected, StreamRefusedError) as exc:
                retry = isinstance(exc, StreamDisconnected) or exc.retryable
                if not self.reconnect or not retry or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _reconcile(self, server_next: int) -> None:
        """Drop what the proxy holds already; refuse if it holds more than was sent, or lost some."""
        if self.next_seq is None:
            self.next_seq = server_next
            self.acked_seq = server_next - 1
            return
        if server_next > self.next_seq:
            raise StreamError(f"the proxy holds records up to seq {server_next - 1}, beyond the {self.next_seq} "
                              "this publisher sent")  # fmt: skip
        if server_next <= self.acked_seq:
            raise StreamError(f"the proxy lost acknowledged records (it expects seq {server_next}, "
                              f"{self.acked_seq} was acknowledged)")  # fmt: skip
        while self.unacked and self.unacked[0][0] < server_next:
            self.unacked.popleft()
        self.acked_seq = max(self.acked_seq, server_next - 1)

    def _send_unacked(self) -> None:
        pending = list(self.unacked)
        for i in range(0, len(pending), self.batch_records):
            self._send_frame([r for _, r in pending[i : i + self.batch_records]])

    def _send_frame(self, records: list[bytes]) -> None:
        assert self.conn is not None
        self.conn.send_binary(pack_records(records))

    def publish(self, data: bytes) -> int:
        """Seal and send one record now; returns its sequence number."""
        return self.publish_many([data])

    def publish_many(self, items: Iterable[bytes]) -> int:
        """Seal and send records in frames; returns the last sequence number (-1 if none)."""
        if self.conn is None:
            self._connect()
        assert self.next_seq is not None
        batch: list[bytes] = []
        size = 0
        last = self.next_seq - 1
        for data in items:
            record = seal(self.key, self.channel, self.next_seq, data)
            self.unacked.append((self.next_seq, record))
            last = self.next_seq
            self.next_seq += 1
            batch.append(record)
            size += len(record)
            if len(batch) >= self.batch_records or size >= self.batch_bytes:
                self._deliver(batch)
                batch, size = [], 0
        if batch:
            self._deliver(batch)
        return last

    def _deliver(self, batch: list[bytes]) -> None:
        try:
            self._send_frame(batch)
            self._take_acks(0.0)
            while len(self.unacked) > self.window:
                if not self._take_acks(self.client.timeout):
                    raise StreamDisconnected("no acknowledgement from the proxy in time")
        except (StreamDisconnected, StreamRefusedError) as exc:
            self._reconnected(exc)

    def _reconnected(self, exc: StreamError) -> None:
        """Reconnect (resending whatever is not acknowledged) or give up."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        retry = isinstance(exc, StreamDisconnected) or (isinstance(exc, StreamRefusedError) and exc.retryable)
        if not self.reconnect or not retry:
            raise exc
        self._connect()

    def _take_acks(self, timeout: float | None) -> bool:
        """Process the proxy's messages (waiting up to `timeout` for one); True if any came."""
        assert self.conn is not None
        message = self.conn.recv(timeout)
        got = False
        while message is not None:
            got = True
            data = _json(message, "ack")
            seq = int(data["seq"])
            while self.unacked and self.unacked[0][0] <= seq:
                self.unacked.popleft()
            self.acked_seq, self.last_position = max(self.acked_seq, seq), int(data["position"])
            message = self.conn.recv(0.0)
        return got

    def flush(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until every published record is acknowledged (durable in Kafka)."""
        deadline = time.monotonic() + timeout
        while self.unacked:
            if time.monotonic() > deadline:
                raise StreamError(f"{len(self.unacked)} records not acknowledged within {timeout:.0f}s")
            try:
                if self.conn is None:
                    self._connect()
                else:
                    self._take_acks(max(0.0, deadline - time.monotonic()))
            except (StreamDisconnected, StreamRefusedError) as exc:
                self._reconnected(exc)

    def close(self, flush: bool = True) -> None:
        try:
            if flush and self.unacked:
                self.flush()
        finally:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


# ---------------------------------------------------------------- command line


def _lines(source: IO[str]) -> Iterator[bytes]:
    """JSON lines as compact UTF-8 records (blank lines skipped, invalid JSON refused)."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise StreamError(f"line {number} is not JSON") from None
        yield json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def line_groups(source: IO[str], linger: float = 0.005, batch: int = 256) -> Iterator[list[bytes]]:
    """JSON lines from `source` as records, grouped as they come for publishing (see _lingering)."""
    return _lingering(_lines(source), linger, batch)


def _lingering(items: Iterator[bytes], linger: float, batch: int) -> Iterator[list[bytes]]:
    """Group items as they come: a group is sent when full or `linger` seconds after its first item."""
    queue: Queue[bytes | BaseException | None] = Queue(maxsize=batch * 4)

    def pump() -> None:
        try:
            for item in items:
                queue.put(item)
            queue.put(None)
        except BaseException as exc:
            queue.put(exc)

    threading.Thread(target=pump, daemon=True, name="stream-input").start()
    group: list[bytes] = []
    started = 0.0
    while True:
        try:
            item = queue.get(timeout=max(0.0, started + linger - time.monotonic()) if group else None)
        except Empty:
            yield group
            group = []
            continue
        if isinstance(item, BaseException):
            raise item
        if item is None:
            if group:
                yield group
            return
        if not group:
            started = time.monotonic()
        group.append(item)
        if len(group) >= batch:
            yield group
            group = []


def _read_key(path: str) -> bytes:
    text = Path(path).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise StreamError(f"{path}: not a hex key") from None
    if len(key) != 32:
        raise StreamError(f"{path}: a key is 32 bytes (64 hex characters)")
    return key


def _write_state(path: Path, cursor: Cursor) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cursor.to_dict()))
    os.replace(tmp, path)


def _read_state(path: Path) -> Cursor | None:
    try:
        data = json.loads(path.read_text())
        seq = data["seq"]
        return Cursor(int(data["position"]), None if seq is None else int(seq))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise StreamError(f"{path}: not a stream cursor") from None


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Publish to and subscribe from PDash stream channels.")  # fmt: skip
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    parser.add_argument("--keystore", required=True, help="the account's keystore file")
    parser.add_argument("--password-file", required=True, help="file holding the keystore's password")
    sub = parser.add_subparsers(dest="command", required=True)

    def locator(p: argparse.ArgumentParser) -> None:
        p.add_argument("--locator", required=True, help="the channel's stream locator (JSON, or @file)")

    p = sub.add_parser("open", help="open a channel (seller); prints the channel, its data hash and locator")
    p.add_argument("--proxy-locator", required=True, help="any stream locator of the proxy (JSON, or @file)")
    p.add_argument("--retention", type=int, default=0, help="seconds the records stay after the channel ends")
    p = sub.add_parser("end", help="end a channel (seller)")
    locator(p)
    p = sub.add_parser("publish", help="seal and publish JSON lines from a file or stdin (seller)")
    locator(p)
    p.add_argument("--key-file", required=True, help="the stream key (64 hex characters)")
    p.add_argument("--file", help="a file of JSON lines (default: stdin)")
    p.add_argument("--rest", action="store_true", help="publish over REST instead of WebSocket")
    p.add_argument("--linger", type=float, default=0.005, help="seconds a record may wait for others to batch with")
    p = sub.add_parser("subscribe", help="print opened records, one per line (buyer)")
    locator(p)
    p.add_argument("--order", type=int, required=True, help="the paid order's id")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-file", help="the stream key (64 hex characters)")
    key.add_argument("--x25519-key-file", help="the buyer's X25519 private key (hex): fetch the key from the order")
    p.add_argument("--state", help="cursor file: resume from it, and keep it up to date")
    p.add_argument("--live", action="store_true", help="start at the end of the channel (without --state)")
    p.add_argument("--rest", action="store_true", help="read REST pages instead of a WebSocket")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a record")
    return parser


def _locator(value: str) -> StreamLocator:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return StreamLocator.from_json(text)
    except WireError as exc:
        raise StreamError(f"locator: {exc}") from None


def _main(argv: list[str] | None = None, prog: str = "python -m cpchain.proxy.streams.client") -> int:
    args = _parser(prog).parse_args(argv)
    from cpchain.chain.cli import unlock_account
    from cpchain.chain.connection import connect
    from cpchain.chain.escrow import Deployment, Escrow, registrar_path
    from cpchain.config import load_config

    config = load_config(args.config) if args.config else load_config()
    deployment = Deployment.load(registrar_path(config))
    domain = Domain(deployment.chain_id, deployment.address)
    account = unlock_account(Path(args.keystore), Path(args.password_file))
    out = sys.stdout
    if args.command == "open":
        client = StreamClient(account, domain, _locator(args.proxy_locator).endpoint)
        print(json.dumps(client.open_channel(args.retention), indent=2), file=out)
        return 0
    loc = _locator(args.locator)
    client = StreamClient.for_locator(account, domain, loc)
    if args.command == "end":
        print(json.dumps(client.end_channel(loc.channel), indent=2), file=out)
        return 0
    if args.command == "publish":
        key = _read_key(args.key_file)
        with open(args.file, encoding="utf-8") if args.file else sys.stdin as source:
            groups = line_groups(source, args.linger)
            if args.rest:
                return _publish_rest(client, loc.channel, key, groups)
            with client.publisher(loc.channel, key) as publisher:
                for group in groups:
                    publisher.publish_many(group)
                publisher.flush()
                print(f"published up to seq {publisher.acked_seq} (position {publisher.last_position})",
                      file=sys.stderr)  # fmt: skip
        return 0
    if args.x25519_key_file:
        terms = Escrow(connect(config), deployment).terms(args.order)
        stream_key = client.order_access(loc.channel, args.order, terms, _read_key(args.x25519_key_file)).stream_key
    else:
        stream_key = _read_key(args.key_file)
    state = Path(args.state) if args.state else None
    cursor = _read_state(state) if state else None
    if args.rest:
        records = client.read_pages(loc.channel, args.order, stream_key, cursor or Cursor(0, 0),
                                    follow=args.idle_timeout is None)  # fmt: skip
    else:
        records = client.subscribe(loc.channel, args.order, stream_key, cursor, live=args.live and cursor is None,
                                   idle_timeout=args.idle_timeout)  # fmt: skip
    for record in records:
        out.write(record.data.decode("utf-8", "replace") + "\n")
        out.flush()
        if state is not None:
            _write_state(state, Cursor(record.position + 1, record.seq + 1))
    return 0


def _publish_rest(client: StreamClient, channel: str, key: bytes, groups: Iterator[list[bytes]]) -> int:
    """REST publishing: ask where the channel stands, then one POST per group."""
    seq = client.publish_status(channel)["next_seq"]
    for group in groups:
        seq = client.publish_batch(channel, [seal(key, channel, seq + i, data) for i, data in enumerate(group)])
    print(f"published up to seq {seq - 1}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m cpchain.proxy.streams.client") -> None:
    from cpchain.cli_support import run_cli

    def run() -> int:
        try:
            return _main(argv, prog)
        except StreamError as exc:
            print(f"stream: {exc}", file=sys.stderr)
            return 1

    run_cli("stream", run)


if __name__ == "__main__":
    main()

"""The stream relay's logic on the reactor: channels, bound orders, publishing, reading, claims.

Owns the order of operations: verify a signed request or token (in a worker thread), read
the order on chain (worker thread), apply cpchain.proxy.streams.rules, record the result
in the registry, and only then touch Kafka. Per channel it keeps the sequence of accepted
records: a record is acknowledged to its publisher only once Kafka acknowledged it with
acks=all, each channel has at most one append in flight (so its records keep their
order), and the channel's unacknowledged bytes are bounded (publishers are paused beyond
that). After a start or a Kafka failure the end of a channel's topic is re-read before
anything is appended, so a record written by an append whose acknowledgement was lost
is never written twice. Records go to Kafka in chunks (one message per batch, records
addressed by position); a reader that has caught up takes a just-acknowledged chunk
straight from the append instead of reading it back, and others are woken to read Kafka
instead of polling it. Must not parse HTTP or WebSocket frames (cpchain.proxy.streams.rest/.ws).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from cpchain.chain.errors import ChainError, ContractRevert, UnknownOrder
from cpchain.chain.lifecycle import Windows
from cpchain.proxy.onchain import OrderView
from cpchain.proxy.protocol import Domain
from cpchain.proxy.store import ClaimKind
from cpchain.proxy.streams.kafka import KafkaBridge, KafkaReader, KafkaUnavailable
from cpchain.proxy.streams.model import (
    Binding,
    BindStage,
    Channel,
    ChannelState,
    Code,
    Delivery,
    StreamRefused,
)
from cpchain.proxy.streams.registry import Registry
from cpchain.proxy.streams.rules import (
    Access,
    BindRequest,
    SubscribeToken,
    check_bind,
    check_end,
    check_open,
    check_publisher,
    check_subscriber,
    parse_product,
    period_refusal,
    state_refusal,
)
from cpchain.proxy.streams.settings import StreamSettings
from cpchain.proxy.streams.wire import (
    PURPOSE_BIND,
    PURPOSE_END,
    PURPOSE_OPEN,
    PURPOSE_PUBLISH,
    PURPOSE_SUBSCRIBE,
    StreamEndpoint,
    StreamLocator,
    WireError,
    b64,
    channel_commitment,
    chunk_records,
    new_channel_id,
    pack_records,
    position,
    record_seq,
    split_position,
    unpack_records,
    verify_request,
    verify_token,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
RESUME_INTERVAL = 30.0
READ_TIMEOUT = 0.5  # one Kafka poll while records are known to exist
IDLE_POLL = 1.0  # a waiting reader still looks at Kafka this often
ORDER_CACHE_SECONDS = 5.0
SAVE_INTERVAL = 1.0
CHUNK_BYTES = 960 * 1024  # below Kafka's default 1 MB message limit
MAX_PAGE_WAIT = 30.0


class OrderSource(Protocol):
    """What the relay needs from the proxy's chain gateway (cpchain.proxy.onchain.ChainGateway)."""

    @property
    def address(self) -> str: ...

    @property
    def domain(self) -> Domain: ...

    @property
    def windows(self) -> Windows: ...

    def order(self, order_id: int) -> OrderView: ...

    def claim(self, order_id: int, kind: ClaimKind, deliver_hash: bytes | None = None) -> str: ...


class Signal(Generic[T]):
    """A one-shot result many waiters can await (each gets its own Deferred)."""

    def __init__(self) -> None:
        self._waiters: list[Deferred[T]] = []
        self._outcome: tuple[T] | BaseException | None = None

    def wait(self) -> Deferred[T]:
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            return fail(outcome)
        if outcome is not None:
            return succeed(outcome[0])
        d: Deferred[T] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self, value: T) -> None:
        self._outcome = (value,)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(value)

    def fail(self, error: BaseException) -> None:
        self._outcome = error
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(error)


@dataclass
class _Group:
    """Records of one publish call, acknowledged together."""

    records: list[bytes]
    first_seq: int
    size: int
    done: Deferred[tuple[int, int]] = field(default_factory=Deferred)  # (last seq, its position)


class LiveChannel:
    """A channel's state while the proxy runs: its acknowledged end, queue and waiting readers."""

    def __init__(self, info: Channel) -> None:
        self.info = info
        self.next_seq = info.next_seq  # acknowledged by Kafka
        self.next_offset = info.next_offset
        self.expected_seq = info.next_seq  # accepted into the queue
        self.verified = False  # the tail of the topic was read since the start or the last failure
        self.scan: Signal[None] | None = None
        self.queue: list[_Group] = []
        self.queued_bytes = 0
        self.appending = False
        self.publisher: Any = None  # the one WebSocket publisher connection (see cpchain.proxy.streams.ws)
        self.paused: list[Callable[[], None]] = []
        self.readers: set[Any] = set()  # live subscriptions: objects with close_for(code, reason)
        self._data: list[tuple[RecordReader | None, Deferred[None]]] = []
        self._drained: list[Deferred[None]] = []
        self.save_pending = False

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def topic(self) -> str:
        return self.info.topic

    @property
    def state(self) -> ChannelState:
        return self.info.state

    @property
    def next_position(self) -> int:
        """The position the next record will get (records are appended as whole chunks)."""
        return position(self.next_offset, 0)

    def notify(self, chunks: list[tuple[int, bytes]] | None = None) -> None:
        """Wake every reader waiting for records (new ones, or the channel's end).

        `chunks` (Kafka offset, chunk) were just acknowledged: a waiting reader that has read
        everything before them takes them from here instead of reading them back from Kafka.
        Only waiting readers (their connection had room for more) get them, at most one
        append's worth each, so memory stays bounded.
        """
        waiters, self._data = self._data, []
        for reader, d in waiters:
            if d.called:  # its wait is over: the reader may be reading these very chunks from Kafka
                continue
            if chunks and reader is not None and reader.kafka_next == chunks[0][0] and not reader.pending:
                reader.add(chunks)
            d.callback(None)

    def wait_data(self, reactor: Any, timeout: float, reader: RecordReader | None = None) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        waiter = (reader, d)
        self._data.append(waiter)

        def timed_out() -> None:
            # A wait that timed out must leave the waiters: its reader goes on to poll Kafka
            # from kafka_next, and if notify() still handed it the chunks acknowledged during
            # that poll, the poll would return them again and the subscriber would get the
            # same records twice (and stop on the replay: issue 6).
            if waiter in self._data:
                self._data.remove(waiter)
            if not d.called:
                d.callback(None)

        call = reactor.callLater(timeout, timed_out)
        d.addBoth(lambda r: (call.cancel() if call.active() else None, r)[1])
        return d

    def drained(self) -> Deferred[None]:
        if not self.appending and not self.queue:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def fire_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for d in waiters:
            d.callback(None)


class StreamService:
    def __init__(self, *, reactor: Any, settings: StreamSettings, gateway: OrderSource, registry: Registry,
                 kafka: KafkaBridge, endpoint: StreamEndpoint,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.reactor = reactor
        self.settings = settings
        self.gateway = gateway
        self.address = str(gateway.address)
        self.domain = gateway.domain
        self.registry = registry
        self.kafka = kafka
        self.endpoint = endpoint
        self.clock = clock
        self._pool = reactor.getThreadPool()
        self._channels: dict[str, LiveChannel] = {}
        self._orders: dict[int, tuple[float, OrderView]] = {}
        self._binding_jobs: dict[int, Signal[dict[str, Any]]] = {}
        self._delivering: set[int] = set()
        self._loops: list[LoopingCall] = []
        self.subscribers = 0

    def blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Chain calls and signature checks run in the reactor's thread pool."""
        return deferToThreadPool(self.reactor, self._pool, fn, *args, **kwargs)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for interval, work in ((RESUME_INTERVAL, self.resume), (self.settings.gc_interval, self.collect_garbage)):
            loop = LoopingCall(lambda w=work: Deferred.fromCoroutine(w()))  # type: ignore[misc]
            loop.clock = self.reactor
            loop.start(interval, now=True).addErrback(lambda f: log.error("periodic stream task failed: %s", f.value))
            self._loops.append(loop)

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        for live in self._channels.values():
            if live.verified:
                self.registry.save_position(live.id, live.next_seq, live.next_offset)
            for reader in list(live.readers):
                reader.close_for(4503, "the proxy is shutting down")
            if live.publisher is not None:
                live.publisher.close_for(4503, "the proxy is shutting down")

    async def resume(self) -> None:
        """Finish claims a crash or an unavailable chain left pending."""
        for binding in self.registry.bindings_in(BindStage.BINDING):
            if binding.order_id not in self._binding_jobs:
                log.info("order %d: resuming the stream binding", binding.order_id)
                self._bind_job(binding).addErrback(lambda _: None)
        for binding in self.registry.bindings_delivering():
            self._claim_delivered(binding)

    async def collect_garbage(self) -> None:
        """Delete the topics of channels that ended more than their retention ago; forget old rows."""
        now = int(self.clock())
        for channel in self.registry.channels_in(ChannelState.ENDED):
            if not channel.deletable(now):
                continue
            live = self._channels.pop(channel.id, None)
            if live is not None:
                for reader in list(live.readers):
                    reader.close_for(4410, "the channel's retention period is over")
            try:
                await self.kafka.run(self.kafka.delete_topic, channel.topic)
            except KafkaUnavailable as exc:
                log.warning("channel %s: topic not deleted yet: %s", channel.id, exc)
                continue
            self.registry.mark_deleted(channel.id)
            log.info("channel %s: retention over, topic %s deleted", channel.id, channel.topic)
        purged = self.registry.purge(ended_before=now - self.settings.retention)
        if purged:
            log.info("forgot %d deleted channels", purged)

    # ------------------------------------------------------------ helpers

    def live(self, channel: Channel) -> LiveChannel:
        live = self._channels.get(channel.id)
        if live is None:
            live = self._channels[channel.id] = LiveChannel(channel)
        return live

    def channel_reply(self, channel: Channel) -> dict[str, Any]:
        locator = StreamLocator(self.endpoint, channel.id)
        path = f"/v1/channels/{channel.id}"
        live = self._channels.get(channel.id)
        return {
            "channel": channel.id,
            "seller": channel.seller,
            "state": str(live.state if live else channel.state),
            "retention": channel.retention,
            "created_at": channel.created_at,
            "ended_at": live.info.ended_at if live else channel.ended_at,
            "data_hash": channel_commitment(self.address, channel.id).hex(),
            "locator": locator.to_dict(),
            "ws_url": self.endpoint.ws_url(path),
            "rest_url": self.endpoint.http_url(path),
        }

    async def _order(self, order_id: int, *, fresh: bool = False) -> OrderView:
        cached = self._orders.get(order_id)
        now = self.reactor.seconds()
        if cached is not None and not fresh and now - cached[0] < ORDER_CACHE_SECONDS:
            return cached[1]
        try:
            view = await self.blocking(self.gateway.order, order_id)
        except UnknownOrder:
            raise StreamRefused(Code.UNKNOWN_ORDER, f"order {order_id} does not exist") from None
        except ChainError as exc:
            raise StreamRefused(Code.UNAVAILABLE, f"chain unavailable: {exc}") from None
        if len(self._orders) > 10_000:
            self._orders.clear()
        self._orders[order_id] = (now, view)
        return view

    def _channel(self, channel_id: str) -> Channel | None:
        live = self._channels.get(channel_id)
        return live.info if live is not None else self.registry.channel(channel_id)

    async def _kafka(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await self.kafka.run(fn, *args, **kwargs)
        except KafkaUnavailable as exc:
            log.warning("%s", exc)
            raise StreamRefused(Code.UNAVAILABLE, "the stream broker is unavailable; try again") from None

    # ------------------------------------------------------------ channels

    async def open_channel(self, raw: bytes) -> dict[str, Any]:
        verified = await self.blocking(verify_request, raw, purpose=PURPOSE_OPEN, domain=self.domain,
                                       max_ttl=self.settings.token_max_ttl, now=self.clock)  # fmt: skip
        channel = self.registry.channel_by_request(verified.signer, verified.nonce)
        if channel is None:  # not a retry: a new channel
            retention = check_open(verified.body, proxy=self.address, default_retention=self.settings.retention,
                                   open_channels=self.registry.open_channels_of(verified.signer),
                                   max_channels=self.settings.max_channels_per_seller)  # fmt: skip
            channel_id = new_channel_id()
            channel = self.registry.create_channel(Channel(
                id=channel_id, seller=verified.signer, topic=self.settings.topic_prefix + channel_id,
                state=ChannelState.OPEN, created_at=int(self.clock()), ended_at=None, retention=retention,
                next_seq=0, next_offset=0, request_nonce=verified.nonce,
            ))  # fmt: skip
            log.info("channel %s opened by %s", channel.id, channel.seller)
        await self._kafka(self.kafka.create_topic, channel.topic)  # idempotent: a retry finishes a failed open
        return self.channel_reply(channel)

    async def end_channel(self, channel_id: str, raw: bytes) -> dict[str, Any]:
        verified = await self.blocking(verify_request, raw, purpose=PURPOSE_END, domain=self.domain,
                                       max_ttl=self.settings.token_max_ttl, now=self.clock)  # fmt: skip
        check_end(verified.body, signer=verified.signer, proxy=self.address, channel_id=channel_id,
                  channel=self._channel(channel_id))  # fmt: skip
        ended = self.registry.end_channel(channel_id, int(self.clock()))
        assert ended is not None
        live = self._channels.get(channel_id)
        if live is not None:
            live.info = ended
            if live.publisher is not None:
                live.publisher.close_for(4410, "the channel has ended")
            live.notify()
        log.info("channel %s ended", channel_id)
        return self.channel_reply(ended)

    # ------------------------------------------------------------ orders (the stream SELLER_DATA / BUYER_DATA)

    async def bind_order(self, channel_id: str, raw: bytes) -> dict[str, Any]:
        """Bind a paid stream order to its channel and claim proxyFetched (idempotent)."""
        verified = await self.blocking(verify_request, raw, purpose=PURPOSE_BIND, domain=self.domain,
                                       max_ttl=self.settings.token_max_ttl, now=self.clock)  # fmt: skip
        request = BindRequest.parse(verified.body, proxy=self.address, channel_id=channel_id)
        existing = self.registry.binding(request.order_id)
        if existing is not None and existing.stage is not BindStage.FAILED:
            if existing.seller.lower() != verified.signer.lower() or existing.channel_id != channel_id:
                raise StreamRefused(Code.FORBIDDEN, f"order {request.order_id} is bound by another request")
            return await self._bind_job(existing)
        view = await self._order(request.order_id, fresh=True)
        product, grant = check_bind(
            request, signer=verified.signer, proxy=self.address, channel=self._channel(channel_id),
            terms=view.terms, status=view.status, now=view.now, windows=self.gateway.windows, domain=self.domain,
        )  # fmt: skip
        binding = self.registry.begin_binding(Binding(
            order_id=request.order_id, channel_id=channel_id, seller=view.terms.seller, buyer=view.terms.buyer,
            product=product.canonical().decode(), key_grant=grant.text, stage=BindStage.BINDING, error="",
            created_at=int(self.clock()), fetched_tx="", delivery=Delivery.NONE, delivered_tx="",
        ))  # fmt: skip
        log.info("order %d: bound to channel %s, claiming proxyFetched", request.order_id, channel_id)
        return await self._bind_job(binding)

    def _bind_job(self, binding: Binding) -> Deferred[dict[str, Any]]:
        order_id = binding.order_id
        if binding.stage is BindStage.BOUND:
            return succeed(self._bind_reply(binding))
        job = self._binding_jobs.get(order_id)
        if job is None:
            job = self._binding_jobs[order_id] = Signal()

            def done(result: dict[str, Any]) -> None:
                del self._binding_jobs[order_id]
                assert job is not None
                job.fire(result)

            def failed(failure: Failure) -> None:
                del self._binding_jobs[order_id]
                assert job is not None
                job.fail(failure.value or Exception("binding failed"))

            Deferred.fromCoroutine(self._claim_fetched(binding)).addCallbacks(done, failed)
        return job.wait()

    async def _claim_fetched(self, binding: Binding) -> dict[str, Any]:
        order_id = binding.order_id
        try:
            tx = await self.blocking(self.gateway.claim, order_id, ClaimKind.FETCHED)
        except ContractRevert as exc:
            self.registry.set_stage(order_id, BindStage.FAILED, error=exc.reason)
            raise StreamRefused(Code.WRONG_STATE, f"the contract refused proxyFetched: {exc.reason}") from None
        except ChainError as exc:  # stays BINDING: resume() retries
            raise StreamRefused(Code.UNAVAILABLE, f"chain unavailable: {exc}") from None
        self.registry.set_stage(order_id, BindStage.BOUND, fetched_tx=tx)
        self._orders.pop(order_id, None)
        bound = self.registry.binding(order_id)
        assert bound is not None
        return self._bind_reply(bound)

    def _bind_reply(self, binding: Binding) -> dict[str, Any]:
        return {"order_id": binding.order_id, "channel": binding.channel_id, "fetched_tx": binding.fetched_tx,
                "data_hash": channel_commitment(self.address, binding.channel_id).hex()}  # fmt: skip

    async def order_info(self, header: str | None, order_id: int) -> dict[str, Any]:
        """The buyer's view of a stream order: the key grant, the channel and where to read it."""
        access, live, binding = await self._subscriber(header, None)
        if access.order_id != order_id:
            raise StreamRefused(Code.FORBIDDEN, "the token is for another order")
        reply = self.channel_reply(live.info)
        reply.update(order_id=order_id, key_grant=binding.key_grant, fetched_tx=binding.fetched_tx,
                     delivered_tx=binding.delivered_tx, until=access.until,
                     next_position=live.next_position)  # fmt: skip
        return reply

    def _claim_delivered(self, binding: Binding) -> None:
        """The buyer's subscription started: claim proxyDelivered with the channel commitment (once)."""
        order_id = binding.order_id
        if order_id in self._delivering:
            return
        current = self.registry.binding(order_id)
        if current is None or current.delivery in (Delivery.CLAIMED, Delivery.FAILED):
            return
        self.registry.set_delivery(order_id, Delivery.CLAIMING)
        self._delivering.add(order_id)
        commitment = channel_commitment(self.address, binding.channel_id)

        async def claim() -> None:
            try:
                tx = await self.blocking(self.gateway.claim, order_id, ClaimKind.DELIVERED, commitment)
                self.registry.set_delivery(order_id, Delivery.CLAIMED, delivered_tx=tx)
                self._orders.pop(order_id, None)
                log.info("order %d: stream delivery claimed", order_id)
            except ContractRevert as exc:
                self.registry.set_delivery(order_id, Delivery.FAILED, error=exc.reason)
                log.warning("order %d: proxyDelivered refused: %s", order_id, exc.reason)
            except Exception as exc:
                log.warning("order %d: delivery claim not made yet: %s", order_id, exc)
            finally:
                self._delivering.discard(order_id)

        Deferred.fromCoroutine(claim())

    # ------------------------------------------------------------ authorization

    async def authorize_publisher(self, header: str | None, channel_id: str) -> LiveChannel:
        verified = await self.blocking(verify_token, header, purpose=PURPOSE_PUBLISH, domain=self.domain,
                                       max_ttl=self.settings.token_max_ttl, now=self.clock)  # fmt: skip
        channel = check_publisher(verified.body, signer=verified.signer, proxy=self.address, channel_id=channel_id,
                                  channel=self._channel(channel_id))  # fmt: skip
        return self.live(channel)

    async def authorize_subscriber(self, header: str | None, channel_id: str) -> tuple[Access, LiveChannel]:
        access, live, _ = await self._subscriber(header, channel_id)
        return access, live

    async def _subscriber(self, header: str | None, channel_id: str | None) -> tuple[Access, LiveChannel, Binding]:
        verified = await self.blocking(verify_token, header, purpose=PURPOSE_SUBSCRIBE, domain=self.domain,
                                       max_ttl=self.settings.token_max_ttl, now=self.clock)  # fmt: skip
        token = SubscribeToken.parse(verified.body, proxy=self.address)
        binding = self.registry.binding(token.order_id)
        view = await self._order(token.order_id)
        channel = self._channel(token.channel_id)
        access = check_subscriber(token, signer=verified.signer, proxy=self.address, channel_id=channel_id,
                                  channel=channel, binding=binding, terms=view.terms, status=view.status,
                                  now=view.now)  # fmt: skip
        assert channel is not None and binding is not None
        return access, self.live(channel), binding

    def start_delivery(self, access: Access) -> None:
        """A subscription under `access` begins: it is the delivery of a ProxyFetched order."""
        if access.claim_delivery:
            binding = self.registry.binding(access.order_id)
            if binding is not None:
                self._claim_delivered(binding)

    async def recheck(self, access: Access, live: LiveChannel) -> StreamRefused | None:
        """Why a running subscription must stop now (refund, period over, channel gone), or None."""
        if live.state is ChannelState.DELETED:
            return StreamRefused(Code.CHANNEL_ENDED, "the channel was deleted")
        binding = self.registry.binding(access.order_id)
        if binding is None:
            return StreamRefused(Code.NOT_PAID, "the order is no longer bound")
        try:
            view = await self._order(access.order_id, fresh=True)
        except StreamRefused as exc:
            return exc if exc.code is not Code.UNAVAILABLE else None
        return state_refusal(view.status, view.now) or period_refusal(parse_product(binding.product), view.now)

    # ------------------------------------------------------------ publishing

    async def ready(self, live: LiveChannel) -> None:
        """Make sure the channel's end is known (its topic's tail read since the start or a failure)."""
        if live.verified:
            return
        if live.scan is None:
            scan: Signal[None] = Signal()
            live.scan = scan

            async def run() -> None:
                # The producer learns where the topic lives now, not on the first append: that
                # costs a metadata round trip (about 100 ms for a new topic) the first records
                # would wait for, and a backlog the live readers would take seconds to shed.
                warm = self.kafka.run(self.kafka.warm, live.topic)
                warm.addErrback(lambda f: log.debug("channel %s: producer not warmed: %s", live.id, f.value))
                try:
                    offset, seq = await self._kafka(self.kafka.scan_tail, live.topic, live.next_offset, live.next_seq)
                except Exception as exc:
                    live.scan = None
                    scan.fail(exc)
                    return
                if (offset, seq) != (live.next_offset, live.next_seq):
                    log.info("channel %s: topic holds records up to seq %d / offset %d beyond the saved position",
                             live.id, seq - 1, offset - 1)  # fmt: skip
                    self.registry.save_position(live.id, seq, offset)
                live.next_offset, live.next_seq, live.expected_seq = offset, seq, seq
                live.verified, live.scan = True, None
                scan.fire(None)
                live.notify()

            Deferred.fromCoroutine(run())
        await live.scan.wait()

    async def attach_publisher(self, live: LiveChannel, connection: Any) -> int:
        """Make `connection` the channel's one publisher; returns the next sequence number it must send.

        A previous publisher is closed first and its queued records are acknowledged or failed
        before the answer, so the number is exact.
        """
        previous, live.publisher = live.publisher, connection
        if previous is not None and previous is not connection:
            previous.close_for(4409, "replaced by a newer publisher connection")
        await self.ready(live)
        await live.drained()
        if live.publisher is not connection:
            raise StreamRefused(Code.BUSY, "replaced by a newer publisher connection")
        return live.expected_seq

    def detach_publisher(self, live: LiveChannel, connection: Any) -> None:
        if live.publisher is connection:
            live.publisher = None

    def submit(self, live: LiveChannel, records: list[bytes]) -> tuple[Deferred[tuple[int, int]], bool]:
        """Queue records for the channel; returns (acknowledgement, whether the sender should pause).

        The records must continue the channel's sequence exactly; StreamRefused otherwise.
        """
        if live.state is not ChannelState.OPEN:
            raise StreamRefused(Code.CHANNEL_ENDED, f"channel {live.id} has ended")
        if not live.verified:
            raise StreamRefused(Code.BUSY, "the channel is recovering; reconnect")
        if not records:
            raise StreamRefused(Code.MALFORMED, "no records")
        expected = live.expected_seq
        try:
            seqs = [record_seq(r) for r in records]
        except WireError as exc:
            raise StreamRefused(Code.MALFORMED, str(exc)) from None
        if seqs != list(range(expected, expected + len(records))):
            raise StreamRefused(Code.SEQ_MISMATCH, f"expected records from seq {expected}, got {seqs[0]}",
                                expected_seq=expected)
        size = sum(len(r) for r in records)
        group = _Group(records, expected, size)
        live.expected_seq += len(records)
        live.queue.append(group)
        live.queued_bytes += size
        if not live.appending:
            live.appending = True
            Deferred.fromCoroutine(self._append_loop(live))
        return group.done, live.queued_bytes > self.settings.publish_buffer_bytes

    async def _append_loop(self, live: LiveChannel) -> None:
        """Append queued records, one batch at a time, as chunks (one Kafka message each)."""
        try:
            while live.queue:
                groups: list[_Group] = []
                size = 0
                while live.queue and (not groups or size + live.queue[0].size <= self.settings.max_batch_bytes):
                    group = live.queue.pop(0)
                    groups.append(group)
                    size += group.size
                chunks = chunk_records([r for g in groups for r in g.records], CHUNK_BYTES)
                messages = [pack_records(c) for c in chunks]
                last_seq = groups[-1].first_seq + len(groups[-1].records) - 1
                try:
                    offsets = await self.kafka.append(live.topic, messages)
                except Exception as exc:
                    self._append_failed(live, groups, exc)
                    return
                live.queued_bytes -= size
                live.next_seq, live.next_offset = last_seq + 1, offsets[-1] + 1
                self._save_position(live)
                positions = [position(offsets[i], j) for i, chunk in enumerate(chunks) for j in range(len(chunk))]
                done = 0
                for group in groups:
                    done += len(group.records)
                    group.done.callback((group.first_seq + len(group.records) - 1, positions[done - 1]))
                live.notify(list(zip(offsets, messages, strict=True)))
                if live.paused and live.queued_bytes <= self.settings.publish_buffer_bytes // 2:
                    resumes, live.paused = live.paused, []
                    for resume in resumes:
                        resume()
        finally:
            live.appending = False
            live.fire_drained()

    def _save_position(self, live: LiveChannel) -> None:
        """Record the acknowledged end in the registry within SAVE_INTERVAL, at most once per interval.

        Off the acknowledgement path: the saved position is only where the tail scan after a
        restart starts reading, so a stale one costs a longer scan, never a lost record.
        """
        if live.save_pending:
            return
        live.save_pending = True

        def save() -> None:
            live.save_pending = False
            self.kafka.run(self.registry.save_position, live.id, live.next_seq, live.next_offset).addErrback(
                lambda f: log.warning("channel %s: position not saved: %s", live.id, f.value))

        self.reactor.callLater(SAVE_INTERVAL, save)

    def _append_failed(self, live: LiveChannel, groups: list[_Group], exc: Exception) -> None:
        """Some of these records may be in Kafka: fail every queued record and re-read the tail."""
        log.warning("channel %s: append failed, re-reading the topic's end: %s", live.id, exc)
        failed = groups + live.queue
        live.queue, live.queued_bytes = [], 0
        live.verified = False
        live.expected_seq = live.next_seq
        if live.publisher is not None:
            live.publisher.close_for(4503, "the stream broker failed; reconnect to resend")
        resumes, live.paused = live.paused, []
        for resume in resumes:
            resume()
        for group in failed:
            group.done.errback(StreamRefused(Code.UNAVAILABLE, "the stream broker failed; resend from the next seq"))
        Deferred.fromCoroutine(self.ready(live)).addErrback(lambda f: log.warning("channel %s: %s", live.id, f.value))

    async def publisher_status(self, header: str | None, channel_id: str) -> dict[str, Any]:
        """For the seller: where the channel stands (the next sequence number to publish)."""
        live = await self.authorize_publisher(header, channel_id)
        await self.ready(live)
        await live.drained()
        return {"channel": live.id, "state": str(live.state), "next_seq": live.expected_seq,
                "next_position": live.next_position}  # fmt: skip

    async def publish(self, header: str | None, channel_id: str, records: list[bytes]) -> dict[str, Any]:
        """REST publishing: authorize, queue, answer once Kafka acknowledged every record."""
        live = await self.authorize_publisher(header, channel_id)
        await self.ready(live)
        if live.queued_bytes > self.settings.publish_buffer_bytes:
            raise StreamRefused(Code.BUSY, "the channel's buffer is full; retry shortly")
        ack, _ = self.submit(live, records)
        last_seq, last_position = await ack
        return {"acked_seq": last_seq, "next_seq": last_seq + 1, "position": last_position}

    # ------------------------------------------------------------ reading

    @staticmethod
    def check_start(live: LiveChannel, start: int) -> None:
        """A subscription may start anywhere up to the channel's end (once its end is known)."""
        offset, index = split_position(start)
        if offset > live.next_offset or (offset == live.next_offset and index > 0):
            raise StreamRefused(Code.OFFSET_OUT_OF_RANGE, f"position {start} is beyond the channel's end "
                                                          f"(next position {live.next_position})")  # fmt: skip

    async def open_reader(self, live: LiveChannel, start: int) -> RecordReader:
        """A reader of the channel's records from position `start`."""
        await self.ready(live)
        self.check_start(live, start)
        kafka = await self._kafka(self.kafka.reader, live.topic, split_position(start)[0])
        return RecordReader(kafka, start, self.reactor.seconds())

    def close_reader(self, reader: RecordReader) -> None:
        self.kafka.run(self.kafka.release, reader.kafka).addErrback(lambda f: log.debug("release: %s", f.value))

    async def read(self, live: LiveChannel, reader: RecordReader, max_records: int, wait: float,
                   is_open: Callable[[], bool] = lambda: True) -> list[tuple[int, bytes]] | None:  # fmt: skip
        """The next records (position, record) from the reader's position, waiting up to `wait`
        seconds for some. Returns [] if none came in time, None once the channel ended and
        everything was read.
        """
        deadline = self.reactor.seconds() + wait
        limit_bytes = self.settings.max_batch_bytes
        while is_open():
            if live.state is ChannelState.DELETED or live.id not in self._channels:
                raise StreamRefused(Code.CHANNEL_ENDED, "the channel was deleted")
            now = self.reactor.seconds()
            behind = reader.kafka_next < live.next_offset
            room = reader.pending < max_records and reader.pending_bytes < limit_bytes
            idle_due = not reader.pending and now - reader.polled_at >= IDLE_POLL  # records put in Kafka by others
            if room and (behind or idle_due):
                reader.polled_at = now
                timeout = READ_TIMEOUT if behind and not reader.pending else 0.05
                chunks = await self._kafka(reader.kafka.read, max_records, timeout, reader.kafka_next)
                if chunks:
                    reader.add(chunks)
                    continue  # fill the batch with what is already there
                # Appends acknowledged during the poll woke no one (this reader was not waiting):
                # look again, or it would wait an IDLE_POLL for them, or report the end before them.
                behind = reader.kafka_next < live.next_offset
            items = reader.take(max_records)
            if items:
                return items
            if live.state is ChannelState.ENDED and not behind:
                return None
            remaining = deadline - self.reactor.seconds()
            if remaining <= 0:
                return []
            if not behind:  # else records exist that the broker has not handed out yet: read again
                await live.wait_data(self.reactor, min(remaining, IDLE_POLL), reader)
        return []

    async def page(self, header: str | None, channel_id: str, start: int, limit: int,
                   wait: float) -> dict[str, Any]:  # fmt: skip
        """REST reading: a bounded page of records from position `start`, with the position to ask next."""
        access, live = await self.authorize_subscriber(header, channel_id)
        self.start_delivery(access)
        reader = await self.open_reader(live, start)
        try:
            items = await self.read(live, reader, min(max(limit, 1), self.settings.page_limit),
                                    min(max(wait, 0.0), MAX_PAGE_WAIT))  # fmt: skip
        finally:
            self.close_reader(reader)
        records = items or []
        return {
            "records": [{"position": p, "data": b64(raw)} for p, raw in records],
            "next_position": reader.position,
            "end": items is None,
        }


class RecordReader:
    """Records by position from a reader of a channel's chunks (the first chunk may be entered midway).

    Holds the records read but not yet handed out; `read` stops filling it at one batch.
    """

    def __init__(self, kafka: KafkaReader, start: int, now: float) -> None:
        self.kafka = kafka
        self.polled_at = now
        self.position = start  # the next record to hand out
        self.kafka_next = split_position(start)[0]  # the next chunk to read
        self._pending: list[tuple[int, bytes]] = []
        self.pending_bytes = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, chunks: list[tuple[int, bytes]]) -> None:
        for offset, chunk in chunks:
            if offset < self.kafka_next:  # already added (handed over by notify, then read from Kafka too)
                continue
            try:
                records = unpack_records(chunk, len(chunk))
            except WireError:  # not a chunk: pass it on whole, the subscriber finds it does not open
                records = [chunk]
            placed = [(position(offset, i), r) for i, r in enumerate(records)]
            kept = [(p, r) for p, r in placed if p >= self.position]
            self._pending += kept
            self.pending_bytes += sum(len(r) for _, r in kept)
        if chunks:
            self.kafka_next = max(self.kafka_next, chunks[-1][0] + 1)
        if not self._pending:
            self.position = max(self.position, position(self.kafka_next, 0))

    def take(self, limit: int) -> list[tuple[int, bytes]]:
        items, self._pending = self._pending[:limit], self._pending[limit:]
        if items:
            self.pending_bytes -= sum(len(r) for _, r in items)
            self.position = items[-1][0] + 1
            if not self._pending:
                self.position = max(self.position, position(self.kafka_next, 0))
        return items

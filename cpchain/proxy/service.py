"""The proxy's trade logic on the reactor: requests, fetch jobs, delivery, recovery, cleanup.

Owns the order of operations of a trade: verify a request, check it against the chain
(cpchain.proxy.rules), record it, fetch and verify the ciphertext, claim proxyFetched, answer
the buyer, track which bytes the buyer was sent and claim proxyDelivered once it has all of
them. One job per order at a time (duplicates wait for it and get the same answer); every
blocking call (chain, storage, signatures) runs in the reactor's thread pool. Must not
parse HTTP or frames (cpchain.proxy.fileserver and cpchain.proxy.control do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from eth_account.signers.local import LocalAccount
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool

from cpchain.chain.errors import ChainError, ContractRevert, UnknownOrder
from cpchain.crypto.signing import NonceStore
from cpchain.proxy import failpoints
from cpchain.proxy.fetch import CiphertextMismatch, Fetcher, FetchInterrupted
from cpchain.proxy.onchain import ChainGateway
from cpchain.proxy.proto import trade_pb2 as pb
from cpchain.proxy.protocol import (
    PURPOSE_DOWNLOAD,
    PURPOSE_REPLY,
    PURPOSE_UPLOAD,
    REQUEST_TTL,
    Opened,
    ProtocolError,
    body_address,
    body_int,
    is_sha256_hex,
    open_envelope,
    order_id_of,
    parse_request,
    read_token,
    request_purpose,
    seal,
)
from cpchain.proxy.rules import (
    Range,
    Refused,
    check_buyer_request,
    check_identity,
    check_seller_request,
    file_removable,
    merge_ranges,
    missing_ranges,
)
from cpchain.proxy.settings import ProxySettings
from cpchain.proxy.store import ClaimKind, ClaimState, Stage, Trade, TradeStore
from cpchain.storage.base import PolicyRefused, StorageError, TransferTooLarge

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
RESUME_INTERVAL = 30.0
RANGE_FLUSH_INTERVAL = 1.0
STALE_PART_SECONDS = 86400


class _Job:
    """One order's running fetch-and-claim: later requests for the order wait for its reply."""

    def __init__(self) -> None:
        self.result: pb.Reply | None = None
        self._waiters: list[Deferred[pb.Reply]] = []

    def wait(self) -> Deferred[pb.Reply]:
        if self.result is not None:
            return succeed(self.result)
        d: Deferred[pb.Reply] = Deferred()
        self._waiters.append(d)
        return d

    def finish(self, reply: pb.Reply) -> None:
        self.result = reply
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(reply)


@dataclass
class _Delivery:
    """Bytes of one order's file handed to the buyer's connections, not all yet in the database."""

    ranges: list[Range]
    unsaved: list[Range] = field(default_factory=list)
    saved_at: float = 0.0


def reply_error(exc: BaseException) -> pb.Reply:
    """The reply for a refusal or failure (one line; no internals for unexpected errors)."""
    if isinstance(exc, ProtocolError):
        return pb.Reply(status=exc.status, error=str(exc))
    if isinstance(exc, UnknownOrder):
        return pb.Reply(status=pb.UNKNOWN_ORDER, error=str(exc))
    if isinstance(exc, ContractRevert):
        return pb.Reply(status=pb.CLAIM_FAILED, error=f"the contract refused the claim: {exc.reason}")
    if isinstance(exc, CiphertextMismatch):
        return pb.Reply(status=pb.DATA_HASH_MISMATCH, error=str(exc))
    if isinstance(exc, (PolicyRefused, TransferTooLarge)):
        return pb.Reply(status=pb.FETCH_REFUSED, error=str(exc))
    if isinstance(exc, StorageError):
        return pb.Reply(status=pb.FETCH_FAILED, error=str(exc))
    if isinstance(exc, ChainError):
        return pb.Reply(status=pb.UNAVAILABLE, error=f"chain unavailable: {exc}")
    log.error("unexpected failure", exc_info=exc)
    return pb.Reply(status=pb.INTERNAL, error="internal error")


class TradeService:
    def __init__(
        self,
        *,
        reactor: Any,
        settings: ProxySettings,
        account: LocalAccount,
        gateway: ChainGateway,
        store: TradeStore,
        fetcher: Fetcher,
        nonces: NonceStore,
    ) -> None:
        self.reactor = reactor
        self.settings = settings
        self.account = account
        self.address = account.address
        self.gateway = gateway
        self.domain = gateway.domain
        self.store = store
        self.fetcher = fetcher
        self.nonces = nonces
        self._jobs: dict[int, _Job] = {}
        self._claiming: set[int] = set()
        self._deliveries: dict[int, _Delivery] = {}
        self._loops: list[LoopingCall] = []
        self._pool = reactor.getThreadPool()
        settings.orders_dir.mkdir(parents=True, exist_ok=True)
        settings.store_dir.mkdir(parents=True, exist_ok=True)

    def blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run `fn` in the reactor's thread pool, never on the reactor thread."""
        return deferToThreadPool(self.reactor, self._pool, fn, *args, **kwargs)

    def order_file(self, order_id: int) -> Path:
        return self.settings.orders_dir / f"{order_id}.bin"

    def download_url(self, order_id: int) -> str:
        host = self.settings.public_host
        return f"https://{f'[{host}]' if ':' in host else host}:{self.settings.ports.file}/orders/{order_id}"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Resume unfinished work now and periodically; collect garbage periodically."""
        tasks: list[tuple[float, Callable[[], object]]] = [
            (RESUME_INTERVAL, self.resume),
            (self.settings.gc_interval, lambda: Deferred.fromCoroutine(self.collect_garbage())),
        ]
        for interval, work in tasks:
            loop = LoopingCall(work)
            loop.clock = self.reactor if IReactorTime.providedBy(self.reactor) else loop.clock
            loop.start(interval, now=True).addErrback(lambda f: log.error("periodic task failed: %s", f.value))
            self._loops.append(loop)

    def stop(self) -> None:
        self.fetcher.interrupt()  # running fetches end at their next chunk and resume after a restart
        for loop in self._loops:
            if loop.running:
                loop.stop()
        for order_id in list(self._deliveries):
            self._flush_served(order_id)

    def resume(self) -> None:
        """Restart fetch jobs and claims a crash or an unavailable chain left unfinished."""
        for trade in self.store.in_stages(Stage.FETCHING, Stage.FETCHED):
            if trade.order_id not in self._jobs:
                log.info("order %d: resuming from stage %s", trade.order_id, trade.stage)
                self._start_job(trade.order_id)
        for trade in self.store.in_stages(Stage.READY):
            claim = self.store.claim(trade.order_id, ClaimKind.DELIVERED)
            pending = claim is not None and claim.state in (ClaimState.INTENT, ClaimState.SENT)
            if pending or (claim is None and trade.size is not None and not self._missing(trade)):
                self._claim_delivered(trade)

    # ------------------------------------------------------------ control requests

    async def handle_frame(self, raw: bytes) -> bytes:
        """Answer one control frame with a signed Reply envelope (never raises)."""
        nonce, order_id = "", 0
        try:
            request, signed = parse_request(raw)
            nonce = str(signed.payload["nonce"])
            order_id = order_id_of(request)
            opened = await self.blocking(
                open_envelope, raw, purpose=request_purpose(request), domain=self.domain, nonce_store=self.nonces
            )
            if request.HasField("seller_data"):
                reply = await self._seller(request.seller_data, opened)
            else:
                reply = await self._buyer(order_id, opened)
        except Exception as exc:
            reply = reply_error(exc)
        if reply.status != pb.OK:
            log.info("order %d: refused (%s): %s", order_id, pb.Status.Name(reply.status), reply.error)
        return await self.sign_reply(reply, nonce, order_id)

    async def sign_reply(self, reply: pb.Reply, nonce: str = "", order_id: int = 0) -> bytes:
        answer = pb.Reply()
        answer.CopyFrom(reply)
        answer.request_nonce = nonce
        answer.order_id = order_id
        return await self.blocking(
            seal, self.account, PURPOSE_REPLY, answer.SerializeToString(), self.domain, ttl=REQUEST_TTL
        )

    async def _seller(self, data: pb.SellerData, opened: Opened) -> pb.Reply:
        order_id = int(data.order_id)
        view = await self.blocking(self.gateway.order, order_id)
        check_identity(view.terms, opened.signer, self.address, seller=True)
        existing = self.store.get(order_id)
        if existing is not None and existing.seller_reply is not None:
            return _parse_reply(existing.seller_reply)
        job = self._jobs.get(order_id)
        if job is None:
            if existing is None or existing.stage is Stage.FAILED:
                offer = check_seller_request(
                    data, terms=view.terms, status=view.status, signer=opened.signer, proxy=self.address,
                    domain=self.domain, now=view.now, windows=self.gateway.windows,
                )  # fmt: skip
                self.store.begin_trade(
                    order_id=order_id, seller=view.terms.seller, buyer=view.terms.buyer, product=data.product,
                    locator=offer.locator.to_json(), key_grant=data.key_grant, data_hash=view.terms.data_hash.hex(),
                    now=int(time.time()),
                )  # fmt: skip
                log.info("order %d: seller data accepted (%s storage)", order_id, offer.locator.type)
                failpoints.hit("after-request")
            job = self._start_job(order_id)
        return await job.wait()

    def _start_job(self, order_id: int) -> _Job:
        job = _Job()
        self._jobs[order_id] = job

        def done(reply: pb.Reply) -> None:
            del self._jobs[order_id]
            job.finish(reply)

        Deferred.fromCoroutine(self._run_job(order_id)).addCallback(done)
        return job

    async def _run_job(self, order_id: int) -> pb.Reply:
        """Fetch, verify and claim; the stored stage says where a resumed job starts."""
        try:
            trade = self.store.get(order_id)
            if trade is None:
                raise Refused("no trade recorded for this order", pb.INTERNAL)
            if trade.stage is Stage.FETCHING:
                await self._fetch(trade)
                failpoints.hit("after-fetch")
                trade = self.store.get(order_id) or trade
            if trade.stage is Stage.FETCHED:
                tx_hash = await self.blocking(self.gateway.claim, order_id, ClaimKind.FETCHED)
                reply = pb.Reply(status=pb.OK, trade=pb.Trade(data_hash=trade.data_hash, size=trade.size or 0,
                                                              fetched_tx=tx_hash))  # fmt: skip
                self.store.mark_ready(order_id, reply.SerializeToString())
            trade = self.store.get(order_id) or trade
            if trade.seller_reply is None:
                raise Refused(f"trade is {trade.stage}: {trade.error}", pb.INTERNAL)
            return _parse_reply(trade.seller_reply)
        except Exception as exc:
            if isinstance(exc, FetchInterrupted):
                return pb.Reply(status=pb.UNAVAILABLE, error="the proxy is shutting down; retry later")
            reply = reply_error(exc)
            if reply.status != pb.UNAVAILABLE:  # transient: keep the stage, resume() retries
                self._fail(order_id, reply.error)
            return reply

    async def _fetch(self, trade: Trade) -> None:
        """Re-check the order (the request may be old after a restart), then fetch and verify."""
        view = await self.blocking(self.gateway.order, trade.order_id)
        data = pb.SellerData(order_id=trade.order_id, product=trade.product, locator=trade.locator,
                             key_grant=trade.key_grant)  # fmt: skip
        offer = check_seller_request(
            data, terms=view.terms, status=view.status, signer=trade.seller, proxy=self.address, domain=self.domain,
            now=view.now, windows=self.gateway.windows,
        )  # fmt: skip
        fetched = await self.blocking(
            self.fetcher.fetch, offer.locator, self.order_file(trade.order_id),
            expected_sha256=trade.data_hash, expected_size=offer.max_bytes,
        )  # fmt: skip
        self.store.mark_fetched(trade.order_id, fetched.size, int(time.time()))
        log.info("order %d: fetched and verified %d bytes", trade.order_id, fetched.size)

    def _fail(self, order_id: int, error: str) -> None:
        self.store.set_stage(order_id, Stage.FAILED, error)
        self._remove_file(order_id)

    def _remove_file(self, order_id: int) -> None:
        self.order_file(order_id).unlink(missing_ok=True)
        self.store.mark_removed(order_id, int(time.time()))
        self._deliveries.pop(order_id, None)

    async def _buyer(self, order_id: int, opened: Opened) -> pb.Reply:
        trade = await self._servable(order_id, opened.signer)
        fetched = self.store.claim(order_id, ClaimKind.FETCHED)
        delivered = self.store.claim(order_id, ClaimKind.DELIVERED)
        size = trade.size or 0
        missing = self._missing(trade)
        return pb.Reply(
            status=pb.OK,
            trade=pb.Trade(
                data_hash=trade.data_hash,
                size=size,
                fetched_tx=fetched.tx_hash if fetched else "",
                key_grant=trade.key_grant,
                download_path=f"/orders/{order_id}",
                file_port=self.settings.ports.file,
                download_url=self.download_url(order_id),
                delivered=trade.stage is Stage.DELIVERED,
                delivered_tx=delivered.tx_hash if delivered and trade.stage is Stage.DELIVERED else "",
                missing=[pb.ByteRange(start=s, end=e) for s, e in missing],
            ),
        )

    async def _servable(self, order_id: int, signer: str) -> Trade:
        """The trade, if `signer` is its buyer and the file may be served now."""
        view = await self.blocking(self.gateway.order, order_id)
        check_buyer_request(view.terms, view.status, signer=signer, proxy=self.address)
        trade = self.store.get(order_id)
        if trade is None or trade.stage not in (Stage.READY, Stage.DELIVERED):
            raise Refused("this proxy holds no verified data for the order yet", pb.NOT_READY)
        if trade.removed_at is not None:
            raise Refused("the file was removed after the retention period", pb.WRONG_STATE)
        return trade

    # ------------------------------------------------------------ file server

    async def authorize_download(self, header: str | None, order_id: int) -> Trade:
        """The trade a download token lets its bearer fetch; Refused/ProtocolError otherwise."""
        verified = await self.blocking(
            read_token, header, purpose=PURPOSE_DOWNLOAD, domain=self.domain, nonce_store=None
        )
        body = verified.body
        if body_int(body, "order_id") != order_id:
            raise Refused("the token is for another order", pb.WRONG_SIGNER)
        if body_address(body, "proxy") != self.address:
            raise Refused("the token is for another proxy", pb.NOT_THIS_PROXY)
        return await self._servable(order_id, verified.signer)

    def authorize_upload(self, header: str | None, length: int | None) -> tuple[str, int, str]:
        """(uploader, size, sha256) a single-use upload token allows; checked before the body arrives."""
        if length is None:
            raise Refused("uploads need a Content-Length", pb.MALFORMED)
        if length > self.settings.upload_max_bytes:
            raise Refused(f"upload of {length} bytes exceeds the limit of {self.settings.upload_max_bytes}",
                          pb.FETCH_REFUSED)  # fmt: skip
        verified = read_token(header, purpose=PURPOSE_UPLOAD, domain=self.domain, nonce_store=self.nonces)
        body = verified.body
        if body_address(body, "proxy") != self.address:
            raise Refused("the token is for another proxy", pb.NOT_THIS_PROXY)
        size, sha256 = body_int(body, "size"), body.get("sha256")
        if size != length or not is_sha256_hex(sha256):
            raise Refused("the token's size or hash does not describe this upload", pb.MALFORMED)
        return verified.signer, size, str(sha256)

    def record_sent(self, order_id: int, start: int, end: int, final: bool) -> None:
        """Bytes [start, end) of an order's file were handed to the buyer's connection."""
        delivery = self._deliveries.get(order_id)
        if delivery is None:
            delivery = self._deliveries[order_id] = _Delivery(self.store.served(order_id))
        if end > start:
            delivery.ranges = merge_ranges(delivery.ranges, (start, end))
            delivery.unsaved.append((start, end))
        if final or time.monotonic() - delivery.saved_at >= RANGE_FLUSH_INTERVAL:
            self._flush_served(order_id)
        trade = self.store.get(order_id) if final else None
        if trade is not None and trade.stage is Stage.READY and trade.size is not None and not self._missing(trade):
            self._claim_delivered(trade)

    def _flush_served(self, order_id: int) -> None:
        delivery = self._deliveries.get(order_id)
        if delivery is None:
            return
        if delivery.unsaved:
            delivery.ranges = self.store.add_served(order_id, delivery.unsaved)
            delivery.unsaved = []
        delivery.saved_at = time.monotonic()

    def _missing(self, trade: Trade) -> list[Range]:
        delivery = self._deliveries.get(trade.order_id)
        ranges = delivery.ranges if delivery is not None else self.store.served(trade.order_id)
        return missing_ranges(ranges, trade.size or 0)

    def _claim_delivered(self, trade: Trade) -> None:
        """Claim proxyDelivered with the SHA-256 of the served file (verified when fetched)."""
        order_id = trade.order_id
        if order_id in self._claiming:
            return
        self._claiming.add(order_id)
        self._flush_served(order_id)

        async def claim() -> None:
            try:
                await self.blocking(self.gateway.claim, order_id, ClaimKind.DELIVERED, bytes.fromhex(trade.data_hash))
                self.store.set_stage(order_id, Stage.DELIVERED)
                self._deliveries.pop(order_id, None)
            except Exception as exc:
                log.warning("order %d: delivery claim not made: %s", order_id, reply_error(exc).error)
            finally:
                self._claiming.discard(order_id)

        Deferred.fromCoroutine(claim())

    # ------------------------------------------------------------ retention

    async def collect_garbage(self) -> None:
        """Remove files no order needs any more, expired uploads, stale partial files and old rows."""
        now = int(time.time())
        for trade in self.store.with_files():
            if trade.stage is Stage.FAILED:
                self._remove_file(trade.order_id)
                continue
            try:
                state = (await self.blocking(self.gateway.escrow.status, trade.order_id)).state
            except UnknownOrder:
                state = None
            except ChainError:
                continue
            if file_removable(state=state, fetched_at=trade.fetched_at or trade.created_at, now=now,
                              retention=self.settings.retention):  # fmt: skip
                log.info("order %d: removing its file (order %s)", trade.order_id, state.name if state else "gone")
                self._remove_file(trade.order_id)
        for upload in self.store.uploads_before(now - self.settings.upload_retention):
            (self.settings.store_dir / f"{upload.id}.bin").unlink(missing_ok=True)
            self.store.delete_upload(upload.id)
        for directory in (self.settings.orders_dir, self.settings.store_dir):
            for part in directory.glob(".*"):
                if now - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink(missing_ok=True)
        for stored in self.settings.store_dir.glob("*.bin"):  # renamed, then a crash before its row
            if self.store.upload(stored.stem) is None and now - stored.stat().st_mtime > STALE_PART_SECONDS:
                stored.unlink(missing_ok=True)
        purged = self.store.purge(removed_before=now - self.settings.retention)
        if purged:
            log.info("forgot %d old trades", purged)


def _parse_reply(raw: bytes) -> pb.Reply:
    reply = pb.Reply()
    reply.ParseFromString(raw)
    return reply

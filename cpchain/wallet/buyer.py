"""Consumer mode: find a product, buy it, receive it verified and decrypted, and close the order.

Owns the buyer's side of a file trade: searching and showing listings (each checked to be
signed by its seller and to hash to its market hash before it is trusted), placing the
order with a proxy picked by deposit and credit, receiving (BUYER_DATA, resumable download,
SHA-256 against the order's data hash, unwrapping the key with the account's X25519 key,
decrypting), and the buyer's order actions: confirm, dispute, withdraw, and the market
review. A stream purchase names the channel's proxy in its order; receiving it stores the
stream key from the seller's grant (wrapped to the account's own key) and `subscribe`
yields its opened records through the stream client, resuming from a saved cursor. Every
chain action is checked against the lifecycle first. Must not decide when to receive
(cpchain.wallet.automation does) or touch seller state.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cpchain.chain.escrow import BuyerAgent
from cpchain.chain.lifecycle import Action
from cpchain.crypto import decrypting_to, ecies, unwrap_key, wrap_key
from cpchain.proxy.client import BuyerGrant
from cpchain.proxy.streams.client import StreamClient
from cpchain.proxy.streams.records import Cursor, Record
from cpchain.proxy.streams.wire import StreamLocator, WireError
from cpchain.types import InvalidProduct, ProductDescription, ProductType, desc_hash_of
from cpchain.wallet.context import Progress, WalletContext, phased
from cpchain.wallet.db import OrderRecord, PurchaseRecord
from cpchain.wallet.errors import (
    BadInput,
    DatabaseError,
    ForbiddenAction,
    NoProxy,
    NotReady,
    ProxyUnavailable,
    UnknownProduct,
    WalletError,
    translated,
)
from cpchain.wallet.orders import Party
from cpchain.wallet.rules import (
    ROLE_BUYER,
    buy_refusal,
    default_fee,
    download_names,
    rate_refusal,
    receive_refusal,
    stream_channel,
    stream_proxy,
    verify_listing,
)

__all__ = ["DEFAULT_TIME_ALLOWED", "Buyer", "Listing"]

log = logging.getLogger(__name__)

DEFAULT_TIME_ALLOWED = 86400

_receiving: dict[str, threading.Lock] = {}
_receiving_guard = threading.Lock()


def _receive_lock(cipher: Path) -> threading.Lock:
    """One lock per download file: two receives of one order (a front end's and the
    automation's) take turns instead of appending to the same partial file."""
    with _receiving_guard:
        return _receiving.setdefault(str(cipher), threading.Lock())


class Listing:
    """A market listing whose signed description was verified; `info` is the market's reply."""

    def __init__(self, product: ProductDescription, info: dict[str, Any]) -> None:
        self.product = product
        self.info = info

    @property
    def market_hash(self) -> str:
        return self.product.market_hash()

    def __repr__(self) -> str:
        return f"Listing({self.market_hash}, {self.product.title!r}, {self.product.price} wei)"


class Buyer(Party):
    role = ROLE_BUYER

    def __init__(self, ctx: WalletContext) -> None:
        self.buyer_agent = BuyerAgent(ctx.escrow, ctx.sender)
        super().__init__(ctx, self.buyer_agent)

    # ------------------------------------------------------------------ market

    def search(self, keyword: str = "", **filters: Any) -> dict[str, Any]:
        """The market's search (filters as its API: category, tag, seller, ptype, prices, sort, page)."""
        with translated("search"):
            return self.ctx.market.search(keyword=keyword, **filters)

    def show(self, market_hash: str) -> Listing:
        """The product, verified (InvalidListing if its signature or hashes do not check out)."""
        try:
            desc_hash_of(market_hash)
        except InvalidProduct:
            raise UnknownProduct(f"{market_hash!r} is not a market hash") from None
        with translated(f"product {market_hash}"):
            info = self.ctx.market.product(market_hash)
        product = verify_listing(info)
        if product.market_hash() != market_hash:
            raise UnknownProduct(f"the market answered with another product than {market_hash}")
        return Listing(product, info)

    # ------------------------------------------------------------------ buying

    def buy(self, market_hash: str, *, proxy: str | None = None, proxy2: str | None = None,
            time_allowed: int = DEFAULT_TIME_ALLOWED, fee: int | None = None) -> OrderRecord:  # fmt: skip
        """Pay for a product into escrow: returns the recorded order.

        Without `proxy`, the live proxy with the best standing (deposit, credit) is picked,
        and the next best as the secondary proxy. Refused before paying if the listing is
        not genuine, is the account's own, or the terms could not be placed.
        """
        listing = self.show(market_hash)
        product = listing.product
        fee = default_fee(product.price) if fee is None else fee
        with translated("read the contract"):
            params = self.ctx.escrow.params()
        reason = buy_refusal(product, self.ctx.address, params, fee=fee, time_allowed=time_allowed)
        if reason is not None:
            raise ForbiddenAction("placeOrder", reason)
        if product.ptype is ProductType.STREAM:
            return self._buy_stream(listing, proxy=proxy, time_allowed=time_allowed, fee=fee,
                                    min_deposit=params.min_proxy_deposit)  # fmt: skip
        first = proxy or self.ctx.proxies.pick().address
        if proxy is not None:
            self._check_proxy(proxy, params.min_proxy_deposit)
        second = proxy2
        if second is None:
            try:
                second = self.ctx.proxies.pick(exclude=[first]).address if proxy is None else first
            except NoProxy:
                second = first
        elif second.lower() != first.lower():
            self._check_proxy(second, params.min_proxy_deposit)
        with translated("placeOrder"):
            order_id, _ = self.buyer_agent.place_order_with_receipt(
                desc_hash=product.desc_hash(), data_hash=bytes.fromhex(product.data_hash),
                buyer_key=self.ctx.me.encryption_public_key, seller=product.seller, proxy=first, proxy2=second,
                price=product.price, fee=fee, time_allowed=time_allowed,
            )  # fmt: skip
        log.info("order %d placed for %s via proxy %s", order_id, market_hash, first)
        order = self.book.refresh(order_id)
        self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order_id, title=product.title)
        return order

    def _buy_stream(self, listing: Listing, *, proxy: str | None, time_allowed: int, fee: int,
                    min_deposit: int) -> OrderRecord:  # fmt: skip
        """A stream order names exactly one channel on one proxy: the channel's, as proxy and proxy2."""
        product = listing.product
        channel = stream_channel(product)
        assert channel is not None  # buy_refusal checked it
        candidates = [proxy] if proxy is not None else [s.address for s in self.ctx.proxies.standings()]
        host = stream_proxy(product, candidates)
        if host is None:
            where = f"proxy {proxy}" if proxy is not None else "any live proxy"
            raise ForbiddenAction("placeOrder", f"the product's channel is not on {where}")
        self._check_proxy(host, min_deposit)
        locator = StreamLocator(self.ctx.proxies.stream_endpoint(host), channel)  # reachable before paying
        with translated("placeOrder"):
            order_id, _ = self.buyer_agent.place_order_with_receipt(
                desc_hash=product.desc_hash(), data_hash=bytes.fromhex(product.data_hash),
                buyer_key=self.ctx.me.encryption_public_key, seller=product.seller, proxy=host, proxy2=host,
                price=product.price, fee=fee, time_allowed=time_allowed,
            )  # fmt: skip
        log.info("order %d placed for stream %s (channel %s on proxy %s)", order_id, listing.market_hash, channel,
                 host)  # fmt: skip
        order = self.book.refresh(order_id)
        self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order_id, title=product.title,
                                    stream_locator=locator.to_json())  # fmt: skip
        return order

    def _check_proxy(self, proxy: str, minimum: int) -> None:
        with translated("read the proxy's deposit"):
            deposit, unlock_at = self.ctx.escrow.proxy_account(proxy)
        if deposit < minimum or unlock_at:
            raise ForbiddenAction("placeOrder", f"proxy {proxy} has no bonded deposit of at least {minimum} wei")

    # ------------------------------------------------------------------ receiving

    def receive(self, order_id: int, progress: Progress | None = None) -> PurchaseRecord:
        """Download, verify and decrypt the order's data (resuming an interrupted download).

        The ciphertext's SHA-256 must equal the order's data hash, and the key the seller
        wrapped must decrypt it; otherwise DataCorrupt and nothing is marked received.
        """
        order = self.book.refresh(order_id)
        if order.role != ROLE_BUYER:
            raise ForbiddenAction("receive", "only buyer", order_id)
        reason = receive_refusal(order.state)
        if reason is not None:
            raise NotReady(f"order {order_id}: {reason}")
        purchase = self._purchase(order_id)
        if purchase.is_stream:
            return self._receive_stream(order, purchase)
        cipher_name, plain_name = download_names(order_id, self.ctx.contract, purchase.title)
        cipher = self.ctx.download_dir / cipher_name
        plain = self.ctx.download_dir / plain_name
        with _receive_lock(cipher):
            return self._receive(order, plain, cipher, progress)

    def _receive(self, order: OrderRecord, plain: Path, cipher: Path, progress: Progress | None) -> PurchaseRecord:
        order_id = order.order_id
        purchase = self._purchase(order_id)
        if purchase.decrypted and Path(purchase.decrypted_path).is_file():
            return purchase
        terms = order.terms
        grant = self._grant(order)
        self.ctx.download_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with translated(f"decrypt order {order_id}"):
            key = unwrap_key(self.ctx.me.encryption_key, grant.wrapped_key)
            # The decryptor follows the download, so the file is decrypted by the time it is
            # verified; it is renamed into place only if the SHA-256 and every segment check out.
            with decrypting_to(key, plain) as decryptor:
                with translated(f"download order {order_id}"):
                    report = phased(progress, "download", grant.size)
                    self.ctx.proxy_client.download(
                        grant, cipher, terms, progress=None if report is None else (lambda done, _total: report(done)),
                        sink=decryptor,
                    )  # fmt: skip
                self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order_id, download_path=str(cipher),
                                            verified=1)  # fmt: skip
                decrypted = phased(progress, "decrypt", grant.size)
                if decryptor.abandoned:  # the download resumed: decrypt the verified file instead
                    decryptor.restart(decrypted)
                    with cipher.open("rb") as src:
                        decryptor.write_from(src)
                elif decrypted is not None:
                    decrypted(grant.size)
        self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order_id, decrypted_path=str(plain),
                                    decrypted=1)  # fmt: skip
        log.info("order %d: received, verified and decrypted", order_id)
        self.book.refresh(order_id)
        return self._purchase(order_id)

    def _receive_stream(self, order: OrderRecord, purchase: PurchaseRecord) -> PurchaseRecord:
        """The stream key from the channel's proxy (the seller's grant, checked against the order),
        stored wrapped to the account's own key; reading the records is `subscribe`."""
        if purchase.wrapped_key:
            return purchase
        locator = _stream_locator(purchase)
        client = StreamClient.for_locator(self.ctx.me.account, self.ctx.domain, locator)
        with translated(f"receive order {order.order_id}"):
            secret = ecies.private_key_bytes(self.ctx.me.encryption_key)
            access = client.order_access(locator.channel, order.order_id, order.terms, secret)
        wrapped = wrap_key(self.ctx.me.encryption_public_key, access.stream_key)
        self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order.order_id, verified=1,
                                    wrapped_key=wrapped)  # fmt: skip
        log.info("order %d: stream key of channel %s received", order.order_id, locator.channel)
        self.book.refresh(order.order_id)
        return self._purchase(order.order_id)

    def subscribe(self, order_id: int, *, live: bool = False, resume: bool = True, rest: bool = False,
                  idle_timeout: float | None = None) -> Iterator[Record]:  # fmt: skip
        """Opened records of a stream order, in order, each checked (tampering, replays, gaps).

        Gets the stream key first if the wallet has none yet (`receive`: NotReady until the
        seller bound the order). Reads from the saved cursor (`resume`), else from the
        channel's start, or only new records with `live`; the cursor is saved after each
        record, so a later call delivers every following record exactly once. Over a
        WebSocket until the channel ends or `idle_timeout` seconds pass without a record; with
        `rest`, the REST pages up to the channel's current end. The first subscription of an
        order is its delivery (the proxy claims proxyDelivered). Iteration errors are
        WalletErrors (DataCorrupt for a record that does not open).
        """
        order = self.book.mine(order_id, ROLE_BUYER)
        purchase = self._purchase(order_id)
        if not purchase.is_stream:
            raise BadInput(f"order {order_id} is not a stream purchase")
        purchase = self.receive(order_id)
        locator = _stream_locator(purchase)
        with translated("unwrap the stream key"):
            key = unwrap_key(self.ctx.me.encryption_key, purchase.wrapped_key)
        cursor = _cursor(purchase) if resume else None
        client = StreamClient.for_locator(self.ctx.me.account, self.ctx.domain, locator)
        if rest:
            records = client.read_pages(locator.channel, order.order_id, key, cursor or Cursor(0, 0))
        else:
            records = client.subscribe(locator.channel, order.order_id, key, cursor, live=live and cursor is None,
                                       idle_timeout=idle_timeout)  # fmt: skip
        return self._opened(order_id, records)

    def _opened(self, order_id: int, records: Iterator[Record]) -> Iterator[Record]:
        with translated(f"subscribe to order {order_id}"):
            for record in records:
                cursor = json.dumps(Cursor(record.position + 1, record.seq + 1).to_dict())
                self.ctx.db.update_purchase(self.ctx.contract, self.ctx.address, order_id, stream_cursor=cursor)
                yield record

    def _grant(self, order: OrderRecord) -> BuyerGrant:
        """BUYER_DATA from the order's proxy, else from its secondary proxy."""
        failure: WalletError | None = None
        for proxy in dict.fromkeys([order.proxy, order.proxy2]):
            try:
                endpoint = self.ctx.proxies.endpoint(proxy)
                with translated(f"receive order {order.order_id}"):
                    return self.ctx.proxy_client.send_buyer_data(endpoint, order.order_id, order.terms)
            except ProxyUnavailable as exc:
                self.ctx.proxies.forget(proxy)
                failure = exc
        assert failure is not None
        raise failure

    def _purchase(self, order_id: int) -> PurchaseRecord:
        found = self.ctx.db.purchase(self.ctx.contract, self.ctx.address, order_id)
        if found is None:
            self.book.mine(order_id, ROLE_BUYER)
            found = self.ctx.db.purchase(self.ctx.contract, self.ctx.address, order_id)
        assert found is not None
        return found

    def purchases(self) -> list[PurchaseRecord]:
        return self.ctx.db.purchases(self.ctx.contract, self.ctx.address)

    # ------------------------------------------------------------------ order actions

    def confirm(self, order_id: int) -> OrderRecord:
        """Accept the delivery: the seller and the proxies are paid."""
        return self.act(Action.BUYER_CONFIRM, order_id, lambda: self.buyer_agent.confirm(order_id))

    def dispute(self, order_id: int) -> OrderRecord:
        """Contest the delivery; the order's proxy rules first, then the arbiter if appealed."""
        return self.act(Action.BUYER_DISPUTE, order_id, lambda: self.buyer_agent.dispute(order_id))

    def withdraw(self, order_id: int) -> OrderRecord:
        """Take the payment back before the seller's data was fetched (before the deadline)."""
        return self.act(Action.BUYER_WITHDRAW, order_id, lambda: self.buyer_agent.withdraw(order_id))

    def rate(self, order_id: int, rating: int, comment: str = "", *, proxy_rating: int | None = None) -> dict[str, Any]:
        """Review a completed purchase on the market (1-5), and optionally rate its proxy on chain."""
        order = self.book.refresh(order_id)
        reason = rate_refusal(order.role, order.state)
        if reason is None and not 1 <= rating <= 5:
            reason = "the rating must be between 1 and 5"
        if reason is not None:
            raise ForbiddenAction("rate", reason, order_id)
        body = {"market_hash": order.market_hash, "order_id": order_id, "rating": rating, "content": comment}
        review = dict(self.ctx.market_call(lambda: self.ctx.market.post("/comment/v1/comments/", body), "review"))
        if proxy_rating is not None:
            self.rate_proxy(order_id, proxy_rating)
        return review


def _stream_locator(purchase: PurchaseRecord) -> StreamLocator:
    try:
        return StreamLocator.from_json(purchase.stream_locator)
    except WireError as exc:
        raise DatabaseError(f"order {purchase.order_id}: the stored stream locator is invalid ({exc})") from None


def _cursor(purchase: PurchaseRecord) -> Cursor | None:
    if not purchase.stream_cursor:
        return None
    try:
        data = json.loads(purchase.stream_cursor)
        return Cursor(int(data["position"]), None if data["seq"] is None else int(data["seq"]))
    except (ValueError, KeyError, TypeError):
        raise DatabaseError(f"order {purchase.order_id}: the stored stream cursor is invalid") from None

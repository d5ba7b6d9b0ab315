"""Provider mode: encrypt and upload a file, publish it, and serve the orders for it.

Owns the seller's side of a file trade: encrypting with a fresh data key (stored wrapped to
the account's own X25519 key, never in clear), uploading through a storage plugin,
publishing the signed description with its data hash (recorded locally before the market
sees it, so an order can never arrive for a product the wallet forgot), accepting an order
(the contract's sellerConfirm with its deposit, only for a fair order for one of its
products) and handing the proxy SELLER_DATA with the key wrapped to the buyer. A stream
product is a channel opened on a proxy's stream server (kept as an upload of storage type
"stream" with its key wrapped like a file's), listed with the channel commitment as data
hash, fed through the stream client's publisher, and delivered by binding the order to the
channel. Must not decide when to do these (cpchain.wallet.automation does) or touch buyer
state; the stream protocol itself is cpchain.proxy.streams.client's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mimetypes
import secrets
import time
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from cpchain.chain.escrow import SellerAgent
from cpchain.chain.lifecycle import Action
from cpchain.crypto import encrypt_file, generate_data_key, sign_product, unwrap_key, wrap_key
from cpchain.proxy.client import SellerReceipt
from cpchain.proxy.streams.client import Publisher, StreamClient
from cpchain.proxy.streams.wire import STORAGE_TYPE as STREAM_STORAGE
from cpchain.proxy.streams.wire import StreamLocator, WireError, channel_commitment
from cpchain.storage.base import Locator, Plugin
from cpchain.storage.s3 import S3Storage
from cpchain.types import InvalidProduct, OrderState, ProductDescription, ProductType
from cpchain.wallet.context import Progress, WalletContext, phased
from cpchain.wallet.db import OrderRecord, ProductRecord, UploadRecord
from cpchain.wallet.errors import (
    BadInput,
    ForbiddenAction,
    MarketRefused,
    ProxyFailed,
    ProxyUnavailable,
    StorageFailed,
    UnknownProduct,
    UnknownUpload,
    translated,
)
from cpchain.wallet.orders import Party
from cpchain.wallet.rules import ROLE_SELLER, seller_refusal, stream_channel

__all__ = ["Seller"]

log = logging.getLogger(__name__)


class Seller(Party):
    role = ROLE_SELLER

    def __init__(self, ctx: WalletContext) -> None:
        self.seller_agent = SellerAgent(ctx.escrow, ctx.sender)
        super().__init__(ctx, self.seller_agent)

    # ------------------------------------------------------------------ data

    def upload(self, path: Path, *, name: str | None = None, storage: str | Plugin | None = None,
               progress: Progress | None = None) -> UploadRecord:  # fmt: skip
        """Encrypt `path` with a new data key and store the ciphertext through a storage plugin.

        `storage` is a plugin, or the type name of one the wallet builds from its config
        (default: `wallet.storage.default`).
        """
        source = Path(path)
        try:
            plain_size = source.stat().st_size
        except OSError as exc:
            raise StorageFailed(f"cannot read {source}: {exc.strerror}") from None
        plugin = storage if storage is not None and not isinstance(storage, str) else self.ctx.storage(storage)
        self.ctx.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cipher = self.ctx.work_dir / f"upload-{secrets.token_hex(8)}.pdash"
        key = generate_data_key()
        try:
            with translated("encrypt"):
                data_hash = encrypt_file(key, source, cipher, progress=phased(progress, "encrypt", plain_size))
            cipher_size = cipher.stat().st_size
            with translated("upload"):
                locator = plugin.upload(cipher, phased(progress, "upload", cipher_size))
        finally:
            with suppress(FileNotFoundError):
                cipher.unlink()
        record = self.ctx.db.add_upload(
            owner=self.ctx.address, name=name or source.name, source_path=str(source.resolve()),
            plain_size=plain_size, cipher_size=cipher_size, data_hash=data_hash, storage_type=locator.type,
            locator=locator.to_json(), wrapped_key=wrap_key(self.ctx.me.encryption_public_key, key),
        )  # fmt: skip
        log.info("uploaded %s as upload %d (%d bytes of ciphertext, %s)", record.name, record.id, cipher_size,
                 locator.type)  # fmt: skip
        return record

    def uploads(self) -> list[UploadRecord]:
        return self.ctx.db.uploads(self.ctx.address)

    def publish(self, upload_id: int, *, title: str, price: int, description: str = "", category: str = "",
                tags: Sequence[str] = (), start_date: int = 0, end_date: int = 0) -> ProductRecord:  # fmt: skip
        """List an upload on the market (price in wei); returns the local product record.

        An upload of storage type "stream" (a channel, `open_channel`) is listed as a stream
        product; `start_date`/`end_date` (unix times, 0: open) bound its subscription period.

        The record is written before the market is asked, so if publishing fails the
        product can be published again with `republish` under the same market hash.
        """
        upload = self.ctx.db.upload(upload_id)
        if upload is None or upload.owner != self.ctx.address:
            raise UnknownUpload(f"no upload {upload_id} of {self.ctx.address}")
        stream = upload.storage_type == STREAM_STORAGE
        try:
            product = ProductDescription(
                seller=self.ctx.address, title=title, ptype=ProductType.STREAM if stream else ProductType.FILE,
                description=description, price=price, category=category, tags=tuple(tags),
                data_hash=upload.data_hash, storage_type=upload.storage_type, size=upload.cipher_size,
                start_date=start_date, end_date=end_date,
                # a stream listing's nonce is its channel id (cpchain.wallet.rules.stream_channel)
                nonce=_locator(upload).channel if stream else secrets.token_hex(16),
            )  # fmt: skip
        except InvalidProduct as exc:
            raise BadInput(str(exc)) from None
        record = ProductRecord(
            market_hash=product.market_hash(), owner=self.ctx.address, upload_id=upload.id, title=title,
            price=price, canonical=product.canonical().decode(),
            signature=sign_product(self.ctx.me.account, product.canonical()), published=0,
        )  # fmt: skip
        self.ctx.db.add_product(record)
        return self.republish(record.market_hash)

    def republish(self, market_hash: str) -> ProductRecord:
        """Send a recorded, not yet published listing to the market again."""
        record = self._product(market_hash)
        if record.published:
            return record
        product = _description(record)
        try:
            reply = self.ctx.market_call(lambda: self.ctx.market.publish(self.ctx.me.account, product), "publish")
        except MarketRefused as exc:
            if exc.status != 409:  # 409: the market has it already (an earlier try got through)
                raise
        else:
            if reply.get("market_hash") != market_hash:
                raise MarketRefused(f"the market listed the product as {reply.get('market_hash')}, not {market_hash}")
        self.ctx.db.mark_published(market_hash, int(time.time()))
        return self._product(market_hash)

    def products(self) -> list[ProductRecord]:
        return self.ctx.db.products(self.ctx.address)

    # ------------------------------------------------------------------ listings on the market

    def market_products(self, status: str = "") -> list[dict[str, Any]]:
        """This account's listings on the market (visible and hidden; or only `status`), newest first."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {"page": page, "page_size": 100, **({"status": status} if status else {})}
            call = partial(self.ctx.market.get, "/product/v1/my_products/", params)
            reply = self.ctx.market_call(call, "my products")
            found += list(reply.get("results", []))
            if len(found) >= int(reply.get("count", 0)) or not reply.get("results"):
                return found
            page += 1

    def set_cover(self, market_hash: str, image: Path) -> dict[str, Any]:
        """Upload `image` (PNG, JPEG, GIF or WebP) as the cover of one of this account's listings."""
        source = Path(image)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise StorageFailed(f"cannot read {source}: {exc.strerror}") from None
        mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        path = f"/product/v1/products/{market_hash}/cover/"
        return dict(self.ctx.market_call(
            lambda: self.ctx.market.request("PUT", path, files={"image": (source.name, data, mime)}), "cover image"
        ))  # fmt: skip

    def hide(self, market_hash: str) -> dict[str, Any]:
        """Take a listing out of the market's lists (orders on it stay valid); `show` undoes it."""
        path = f"/product/v1/products/{market_hash}/hide/"
        return dict(self.ctx.market_call(lambda: self.ctx.market.post(path), "hide"))

    def show(self, market_hash: str) -> dict[str, Any]:
        path = f"/product/v1/products/{market_hash}/show/"
        return dict(self.ctx.market_call(lambda: self.ctx.market.post(path), "show"))

    def delete(self, market_hash: str) -> None:
        """Delete a listing from the market for good (the local record and upload stay)."""
        path = f"/product/v1/products/{market_hash}/"
        self.ctx.market_call(lambda: self.ctx.market.request("DELETE", path), "delete")

    def edit(self, market_hash: str, *, title: str | None = None, price: int | None = None,
             description: str | None = None, category: str | None = None,
             tags: Sequence[str] | None = None) -> ProductRecord:  # fmt: skip
        """Replace a published listing with a new signed version (same data); returns the new record.

        The market keeps the old version as superseded (orders placed on it stay
        verifiable) and the new one inherits its visibility and cover.
        """
        old = self._product(market_hash)
        if not old.published:
            raise ForbiddenAction("edit", "the listing is not published yet: publish it first")
        changes: dict[str, Any] = {"title": title, "price": price, "description": description,
                                   "category": category, "tags": None if tags is None else tuple(tags)}  # fmt: skip
        previous = _description(old)
        nonce = previous.nonce if stream_channel(previous) is not None else secrets.token_hex(16)
        try:
            product = dataclasses.replace(
                previous, nonce=nonce, **{k: v for k, v in changes.items() if v is not None}
            )
        except InvalidProduct as exc:
            raise BadInput(str(exc)) from None
        record = ProductRecord(
            market_hash=product.market_hash(), owner=self.ctx.address, upload_id=old.upload_id, title=product.title,
            price=product.price, canonical=product.canonical().decode(),
            signature=sign_product(self.ctx.me.account, product.canonical()), published=0,
        )  # fmt: skip
        self.ctx.db.add_product(record)
        try:
            reply = self.ctx.market_call(
                lambda: self.ctx.market.replace(self.ctx.me.account, market_hash, product), "edit"
            )
        except MarketRefused:  # refused for certain (unlike a lost reply): forget the new version
            self.ctx.db.remove_pending_product(record.market_hash)
            raise
        if reply.get("market_hash") != record.market_hash:
            raise MarketRefused(f"the market listed the new version as {reply.get('market_hash')}")
        self.ctx.db.mark_published(record.market_hash, int(time.time()))
        return self._product(record.market_hash)

    def _product(self, market_hash: str) -> ProductRecord:
        record = self.ctx.db.product(market_hash)
        if record is None or record.owner != self.ctx.address:
            raise UnknownProduct(f"{market_hash} is not one of this wallet's products")
        return record

    # ------------------------------------------------------------------ streams

    def open_channel(self, *, proxy: str | None = None, name: str = "", retention: int = 0) -> UploadRecord:
        """Open a stream channel on `proxy` (default: the live proxy with the best standing).

        The channel is recorded as an upload of storage type "stream": its locator, the
        channel commitment as data hash, and a fresh stream key wrapped to the account's own
        X25519 key. `publish` lists it; `stream_publisher` publishes records to it.
        """
        address = proxy or self.ctx.proxies.pick().address
        endpoint = self.ctx.proxies.stream_endpoint(address)
        client = StreamClient(self.ctx.me.account, self.ctx.domain, endpoint)
        with translated(f"open a channel on proxy {address}"):
            reply = client.open_channel(retention)
        try:
            locator = StreamLocator.from_json(json.dumps(reply["locator"]))
            data_hash = channel_commitment(endpoint.proxy, locator.channel).hex()
        except (KeyError, TypeError, WireError) as exc:
            raise ProxyFailed(f"open a channel on proxy {address}: malformed answer ({exc})") from None
        if locator.endpoint.proxy.lower() != endpoint.proxy.lower() or reply.get("data_hash") != data_hash:
            raise ProxyFailed(f"open a channel on proxy {address}: the answer names another proxy or data hash")
        locator = StreamLocator(endpoint, locator.channel)  # keep the pinned certificate we trust
        record = self.ctx.db.add_upload(
            owner=self.ctx.address, name=name or f"stream {locator.channel}", source_path="", plain_size=0,
            cipher_size=0, data_hash=data_hash, storage_type=STREAM_STORAGE, locator=locator.to_json(),
            wrapped_key=wrap_key(self.ctx.me.encryption_public_key, generate_data_key()),
        )  # fmt: skip
        log.info("opened channel %s on proxy %s as upload %d", locator.channel, endpoint.proxy, record.id)
        return record

    def publish_stream(self, *, title: str, price: int, proxy: str | None = None, retention: int = 0,
                       **listing: Any) -> ProductRecord:  # fmt: skip
        """Open a channel (`open_channel`) and list it on the market (`publish`'s keywords)."""
        upload = self.open_channel(proxy=proxy, name=title, retention=retention)
        return self.publish(upload.id, title=title, price=price, **listing)

    def stream_publisher(self, product: str | int, **kwargs: Any) -> Publisher:
        """The stream client's publisher for a stream product (market hash) or channel (upload id).

        It seals each record under the channel's stream key before it leaves; use it as a
        context manager (closing flushes: every record acknowledged by the proxy). Its
        errors are the stream client's (cpchain.proxy.streams.client.StreamError).
        """
        upload = self._channel_upload(product)
        locator = _locator(upload)
        with translated("unwrap the stream key"):
            key = unwrap_key(self.ctx.me.encryption_key, upload.wrapped_key)
        client = StreamClient.for_locator(self.ctx.me.account, self.ctx.domain, locator)
        return client.publisher(locator.channel, key, **kwargs)

    def end_channel(self, product: str | int) -> dict[str, Any]:
        """End a stream product's channel: no more records; buyers read what is there until the retention ends."""
        locator = _locator(self._channel_upload(product))
        client = StreamClient.for_locator(self.ctx.me.account, self.ctx.domain, locator)
        with translated(f"end channel {locator.channel}"):
            return client.end_channel(locator.channel)

    def _channel_upload(self, product: str | int) -> UploadRecord:
        upload_id = product if isinstance(product, int) else self._product(product).upload_id
        upload = self.ctx.db.upload(upload_id)
        if upload is None or upload.owner != self.ctx.address:
            raise UnknownUpload(f"no upload {upload_id} of {self.ctx.address}")
        if upload.storage_type != STREAM_STORAGE:
            raise BadInput(f"{product} is not a stream product or channel")
        return upload

    # ------------------------------------------------------------------ orders

    def product_for(self, order: OrderRecord) -> ProductDescription | None:
        """The local product an order is for, or None if it is not one of this wallet's."""
        record = self.ctx.db.product(order.market_hash)
        if record is None or record.owner != self.ctx.address:
            return None
        return _description(record)

    def confirm(self, order_id: int) -> OrderRecord:
        """Accept an order: the contract's sellerConfirm, depositing the order's price.

        Refused (ForbiddenAction, nothing sent) unless the lifecycle allows it and the order
        is a fair one for one of this wallet's products: same description, data hash, and
        at least the listed price.
        """
        order = self.book.mine(order_id, ROLE_SELLER)
        reason = seller_refusal(order.terms, self.product_for(order), self.ctx.address)
        if reason is not None:
            raise ForbiddenAction(str(Action.SELLER_CONFIRM), reason, order_id)
        return self.act(Action.SELLER_CONFIRM, order_id, lambda: self.seller_agent.confirm(order_id))

    def deliver(self, order_id: int) -> SellerReceipt:
        """Send SELLER_DATA (product, locator, key wrapped to the buyer) to the order's proxy.

        Blocks until the proxy has fetched and verified the ciphertext and claimed
        proxyFetched; safe to repeat. Falls back to the secondary proxy when the first
        cannot be reached. For a stream product, binds the order to the channel instead (the
        stream key wrapped to the buyer; the channel's proxy claims proxyFetched).
        """
        order = self.book.refresh(order_id)
        if order.role != ROLE_SELLER:
            raise ForbiddenAction("deliver", "only seller", order_id)
        if order.state is not OrderState.SELLER_CONFIRMED:
            raise ForbiddenAction("deliver", f"wrong state {order.state.name}", order_id)
        record = self._product(order.market_hash)
        upload = self.ctx.db.upload(record.upload_id)
        if upload is None:
            raise UnknownUpload(f"the upload of product {record.market_hash} is missing from the database")
        terms = order.terms
        with translated("unwrap the data key"):
            key = unwrap_key(self.ctx.me.encryption_key, upload.wrapped_key)
        product = _description(record)
        if upload.storage_type == STREAM_STORAGE:
            reply = self._bind(order, product, _locator(upload), key)
            return SellerReceipt(order_id=order_id, data_hash=str(reply.get("data_hash", upload.data_hash)), size=0,
                                 fetched_tx=str(reply.get("fetched_tx", "")))  # fmt: skip
        wrapped = wrap_key(terms.buyer_key, key)
        locator = self._fetchable(upload)
        receipt: SellerReceipt | None = None
        failure: ProxyUnavailable | None = None
        for proxy in dict.fromkeys([terms.proxy, terms.proxy2]):
            try:
                endpoint = self.ctx.proxies.endpoint(proxy)
                with translated(f"deliver order {order_id}"):
                    receipt = self.ctx.proxy_client.send_seller_data(
                        endpoint, order_id, product, locator, wrapped_key=wrapped, buyer_key=terms.buyer_key
                    )
                break
            except ProxyUnavailable as exc:
                self.ctx.proxies.forget(proxy)
                failure = exc
        if receipt is None:
            assert failure is not None
            raise failure
        self.ctx.db.set_progress(self.ctx.contract, self.ctx.address, order_id, delivered=1)
        self.book.refresh(order_id)
        log.info("order %d: delivered to the proxy (%d bytes)", order_id, receipt.size)
        return receipt

    def _bind(self, order: OrderRecord, product: ProductDescription, locator: StreamLocator,
              key: bytes) -> dict[str, Any]:  # fmt: skip
        """The stream delivery: bind the order to the channel with the stream key wrapped to the
        buyer; the channel's proxy claims proxyFetched before answering (safe to repeat)."""
        terms = order.terms
        proxy = locator.endpoint.proxy.lower()
        if proxy not in (terms.proxy.lower(), terms.proxy2.lower()):
            raise ForbiddenAction("deliver", f"the order does not name the channel's proxy {proxy}", order.order_id)
        client = StreamClient.for_locator(self.ctx.me.account, self.ctx.domain, locator)
        with translated(f"bind order {order.order_id} to channel {locator.channel}"):
            reply = client.bind_order(locator.channel, order.order_id, product, key, terms.buyer_key)
        self.ctx.db.set_progress(self.ctx.contract, self.ctx.address, order.order_id, delivered=1)
        self.book.refresh(order.order_id)
        log.info("order %d: bound to channel %s (proxyFetched in %s)", order.order_id, locator.channel,
                 reply.get("fetched_tx", "?"))  # fmt: skip
        return reply

    def _fetchable(self, upload: UploadRecord) -> str:
        """The upload's locator as a proxy can fetch it: an S3 object (in the seller's own,
        private bucket) gets a presigned GET URL, made fresh for each delivery."""
        if upload.storage_type != S3Storage.type_name:
            return upload.locator
        plugin = self.ctx.storage(S3Storage.type_name)
        assert isinstance(plugin, S3Storage)
        with translated("presign the upload"):
            return plugin.presign(Locator.from_json(upload.locator)).to_json()


def _description(record: ProductRecord) -> ProductDescription:
    return ProductDescription.from_dict(json.loads(record.canonical))


def _locator(upload: UploadRecord) -> StreamLocator:
    try:
        return StreamLocator.from_json(upload.locator)
    except WireError as exc:
        raise StorageFailed(f"upload {upload.id}: not a stream locator ({exc})") from None

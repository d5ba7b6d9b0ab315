"""`pdash search|show|publish`: the market, as a buyer looks at it and as a seller lists on it
(a file, or with `--stream` a stream channel opened on a proxy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cpchain.market.client import MarketClient
from cpchain.types import InvalidProduct, ProductDescription, ProductType, desc_hash_of
from cpchain.wallet.commands.base import CliError, Parser, Result, Session, add_command, format_cpc, parse_amount, table
from cpchain.wallet.db import ProductRecord, UploadRecord
from cpchain.wallet.errors import UnknownProduct, translated
from cpchain.wallet.rules import verify_listing
from cpchain.wallet.seller import Seller


def _market(s: Session) -> MarketClient:
    return MarketClient(str(s.config.get("market.market_url")))


def search(s: Session, args: argparse.Namespace) -> Result:
    """No password needed: listings are public."""
    filters: dict[str, Any] = {"category": args.category, "tag": ",".join(args.tag), "seller": ",".join(args.seller),
                               "ptype": args.type, "sort": args.sort, "page": args.page}  # fmt: skip
    if args.min_price is not None:
        filters["min_price"] = parse_amount(args.min_price)
    if args.max_price is not None:
        filters["max_price"] = parse_amount(args.max_price)
    with translated("search"):
        found = _market(s).search(keyword=args.keyword, **filters)
    results = list(found.get("results", []))
    rows = [(r.get("market_hash"), _short(str(r.get("title", "")), 40), format_cpc(int(r.get("price", 0))),
             r.get("ptype"), r.get("seller"), _rating(r)) for r in results]  # fmt: skip
    text = table(["MARKET HASH", "TITLE", "PRICE", "TYPE", "SELLER", "RATING"], rows)
    if found.get("count") is not None:
        text += f"\n{found['count']} found"
    return Result(found, text)


def show(s: Session, args: argparse.Namespace) -> Result:
    """The listing, verified: signed by its seller, hashing to its market hash."""
    try:
        desc_hash_of(args.market_hash)
    except InvalidProduct:
        raise UnknownProduct(f"{args.market_hash!r} is not a market hash") from None
    with translated(f"product {args.market_hash}"):
        info = _market(s).product(args.market_hash)
    product = verify_listing(info)
    if product.market_hash() != args.market_hash:
        raise UnknownProduct(f"the market answered with another product than {args.market_hash}")
    lines = [
        f"{product.title}",
        f"  market hash  {args.market_hash}",
        f"  seller       {product.seller}" + (f" ({info['seller_name']})" if info.get("seller_name") else ""),
        f"  price        {format_cpc(product.price)} ({product.price} wei)",
        f"  type         {product.ptype}, {product.size} bytes on {product.storage_type}",
        f"  category     {product.category or '-'}; tags: {', '.join(product.tags) or '-'}",
        f"  data hash    {product.data_hash}",
        f"  rating       {_rating(info)}; sales: {info.get('sales', 0)}; status: {info.get('status', '?')}",
        "  signature    verified (signed by the seller, hashes to the market hash)",
    ]
    if product.description:
        lines += ["", product.description]
    return Result({**info, "verified": True}, "\n".join(lines))


def publish(s: Session, args: argparse.Namespace) -> Result:
    if args.retry:
        if args.file or args.stream:
            raise CliError("--retry publishes the pending listings again; it takes no file")
        return _retry(s)
    if args.stream:
        return _publish_stream(s, args)
    if not args.file or args.title is None or args.price is None:
        raise CliError("publish needs a FILE, --title and --price (or --retry)")
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: not a file")
    price = parse_amount(args.price)
    tags = tuple(dict.fromkeys(t.strip() for t in args.tag))
    # Check the listing's fields before anything is encrypted or uploaded.
    ctx = s.wallet
    try:
        ProductDescription(seller=ctx.address, title=args.title, ptype=ProductType.FILE, description=args.description,
                           price=price, category=args.category, tags=tags, data_hash="0" * 64,
                           storage_type=args.storage or "local", size=0)  # fmt: skip
    except InvalidProduct as exc:
        raise CliError(f"invalid listing: {exc}") from None
    seller = Seller(ctx)
    upload = seller.upload(path, name=args.name, storage=args.storage, progress=s.progress())
    s.progress().close()
    record = seller.publish(upload.id, title=args.title, price=price, description=args.description,
                            category=args.category, tags=tags)  # fmt: skip
    text = (f"published {record.title!r} as {record.market_hash}\n"
            f"  price {format_cpc(record.price)}; {upload.plain_size} bytes encrypted to {upload.cipher_size}, "
            f"stored on {upload.storage_type}; data hash {upload.data_hash}")  # fmt: skip
    return Result({**_product(record), "upload": _upload(upload)}, text)


def _publish_stream(s: Session, args: argparse.Namespace) -> Result:
    """Open a channel on a proxy's stream server (the best live proxy, or --proxy) and list it."""
    if args.file or args.storage:
        raise CliError("publish --stream opens a channel: it takes no FILE or --storage")
    if args.title is None or args.price is None:
        raise CliError("publish --stream needs --title and --price")
    price = parse_amount(args.price)
    tags = tuple(dict.fromkeys(t.strip() for t in args.tag))
    ctx = s.wallet
    try:  # the listing's fields, checked before a channel is opened
        ProductDescription(seller=ctx.address, title=args.title, ptype=ProductType.STREAM,
                           description=args.description, price=price, category=args.category, tags=tags,
                           data_hash="0" * 64, storage_type="stream", size=0)  # fmt: skip
    except InvalidProduct as exc:
        raise CliError(f"invalid listing: {exc}") from None
    seller = Seller(ctx)
    record = seller.publish_stream(title=args.title, price=price, proxy=args.proxy, description=args.description,
                                   category=args.category, tags=tags)  # fmt: skip
    upload = ctx.db.upload(record.upload_id)
    assert upload is not None
    locator = json.loads(upload.locator)
    text = (f"published stream {record.title!r} as {record.market_hash}\n"
            f"  price {format_cpc(record.price)}; channel {locator['channel']} on proxy {locator['proxy']}\n"
            f"  locator {upload.locator}")  # fmt: skip
    return Result({**_product(record), "upload": _upload(upload), "locator": locator}, text)


def _retry(s: Session) -> Result:
    seller = Seller(s.wallet)
    pending = [p for p in seller.products() if not p.published]
    done = [_product(seller.republish(p.market_hash)) for p in pending]
    text = "\n".join(f"published {d['title']!r} as {d['market_hash']}" for d in done) or "nothing pending"
    return Result({"published": done}, text)


def _product(record: ProductRecord) -> dict[str, object]:
    return {"market_hash": record.market_hash, "title": record.title, "price": str(record.price),
            "upload_id": record.upload_id, "published": record.published}  # fmt: skip


def _upload(upload: UploadRecord) -> dict[str, object]:
    return {"id": upload.id, "name": upload.name, "plain_size": upload.plain_size, "cipher_size": upload.cipher_size,
            "data_hash": upload.data_hash, "storage_type": upload.storage_type}  # fmt: skip


def _rating(info: dict[str, Any]) -> str:
    rating = info.get("rating") or {}
    count = int(rating.get("count", 0)) if isinstance(rating, dict) else 0
    return f"{rating['average']:.1f} ({count})" if count else "-"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    p = add_command(sub, "search", search, "search the market's listings", [common])
    p.add_argument("keyword", nargs="?", default="", help="words in the title, description or tags")
    p.add_argument("--category", default="")
    p.add_argument("--tag", action="append", default=[], help="any of these tags (repeatable)")
    p.add_argument("--seller", action="append", default=[], help="any of these sellers (repeatable)")
    p.add_argument("--type", choices=["file", "stream"], default="")
    p.add_argument("--min-price", help="CPC, or wei with the suffix 'wei'")
    p.add_argument("--max-price", help="CPC, or wei with the suffix 'wei'")
    p.add_argument("--sort", default="relevance", help="relevance, newest, price, -price, rating, sales")
    p.add_argument("--page", type=int, default=1)
    p = add_command(sub, "show", show, "a listing, with its signature checked", [common])
    p.add_argument("market_hash")
    p = add_command(sub, "publish", publish, "encrypt a file, upload it (storage plugin) and list it on the market;"
                    " or, with --stream, open a stream channel on a proxy and list it", [common])  # fmt: skip
    p.add_argument("file", nargs="?", help="the data to sell")
    p.add_argument("--stream", action="store_true", help="sell a stream: open a channel (no FILE) and list it")
    p.add_argument("--proxy", help="with --stream: the proxy hosting the channel (default: the best live one)")
    p.add_argument("--title")
    p.add_argument("--price", help="in CPC (e.g. 10), or in wei with the suffix 'wei'")
    p.add_argument("--description", default="")
    p.add_argument("--category", default="")
    p.add_argument("--tag", action="append", default=[], help="repeatable")
    p.add_argument("--name", help="the upload's local name (default: the file's)")
    p.add_argument("--storage", help="storage plugin (default: [wallet.storage] default)")
    p.add_argument("--retry", action="store_true",
                   help="publish again the listings the market did not take (e.g. it was down)")  # fmt: skip

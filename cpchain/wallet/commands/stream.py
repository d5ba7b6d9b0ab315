"""`pdash stream publish|subscribe|end`: stream trades with the wallet's own account and keys.

The seller publishes to the channel of one of its stream products (the stream key is the
one the wallet keeps, wrapped to its X25519 key); the buyer subscribes to a paid stream
order (the key comes from the order through the wallet, the cursor is kept in the wallet's
database, so each call goes on where the last stopped). Records are printed as they come,
one per line. The stream client's own keystore-and-key-file mode is still there for
scripts without a wallet: `pdash stream --keystore FILE --password-file FILE ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO

from cpchain.proxy.streams.client import line_groups
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.commands.base import CliError, Parser, Result, Session, add_command
from cpchain.wallet.errors import translated
from cpchain.wallet.seller import Seller


def _product(text: str) -> str | int:
    """A market hash, or a channel's upload id (a channel not listed yet)."""
    return int(text) if text.isdigit() else text


def publish(s: Session, args: argparse.Namespace) -> Result:
    seller = Seller(s.wallet)
    path = Path(args.file) if args.file else None
    if path is not None and not path.is_file():
        raise CliError(f"{path}: not a file")
    publisher = seller.stream_publisher(_product(args.product))
    with open(path, encoding="utf-8") if path else sys.stdin as source, translated("publish"), publisher:
        count = 0
        for group in line_groups(source):
            publisher.publish_many(group)
            count += len(group)
        publisher.flush()
        acked, position = publisher.acked_seq, publisher.last_position
    data = {"product": args.product, "records": count, "acked_seq": acked, "position": position}
    return Result(data, f"published {count} records; the channel is at seq {acked} (position {position})")


def subscribe(s: Session, args: argparse.Namespace) -> Result:
    buyer = Buyer(s.wallet)
    out: IO[str] = sys.stdout
    count = 0
    records = buyer.subscribe(args.order_id, live=args.live, resume=not args.from_start, rest=args.rest,
                              idle_timeout=args.idle_timeout)  # fmt: skip
    for record in records:
        text = record.data.decode("utf-8", "replace")
        if args.json:
            text = json.dumps({"seq": record.seq, "position": record.position, "data": text}, ensure_ascii=False)
        out.write(text + "\n")
        out.flush()
        count += 1
    return Result({"order_id": args.order_id, "records": count}, printed=True)


def end(s: Session, args: argparse.Namespace) -> Result:
    reply = Seller(s.wallet).end_channel(_product(args.product))
    return Result(reply, f"channel ended: {json.dumps(reply, sort_keys=True)}")


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "stream",
        help="publish to and subscribe from stream channels with the wallet's account (see: pdash stream --help)",
        description="Stream trades with the wallet's own account and keys. Without a wallet: pdash stream "
        "--keystore FILE --password-file FILE {open,end,publish,subscribe} (the stream client's own options).",
    )
    actions = group.add_subparsers(dest="stream_command", required=True, metavar="ACTION")
    p = add_command(actions, "publish", publish,
                    "seal and publish JSON lines from a file or stdin to a stream product's channel (seller)",
                    [common])  # fmt: skip
    p.add_argument("product", help="the stream product's market hash (or its channel's upload id)")
    p.add_argument("--file", help="a file of JSON lines (default: stdin)")
    p = add_command(actions, "subscribe", subscribe,
                    "print a stream order's records as they come, one per line, from where the last call "
                    "stopped (buyer)", [common])  # fmt: skip
    p.add_argument("order_id", type=int)
    p.add_argument("--live", action="store_true", help="only records published from now on")
    p.add_argument("--from-start", action="store_true", help="the whole channel again, not from the saved cursor")
    p.add_argument("--rest", action="store_true", help="read the REST pages up to the channel's end, then stop")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a record")
    p = add_command(actions, "end", end, "end a stream product's channel: no more records (seller)", [common])
    p.add_argument("product", help="the stream product's market hash (or its channel's upload id)")

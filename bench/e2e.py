#!/usr/bin/env python3
"""A purchase end to end on the local testnet: the wall time from `buy` to a verified, decrypted file.

Starts its own testnet (cpchain.testnet.up: chain, contract, market, tracker, two bonded
proxies...) in a temp CPCHAIN_HOME on free ports, and stops it at the end. For each size
(10 MiB and 100 MiB by default; 10 MiB only with --quick; 1 GiB too with --large) the
seller's wallet encrypts, uploads and publishes a random file (not timed), then, timed,
through the wallet core as a front end drives it:

* chain: the buyer's placeOrder (the proxies picked from the tracker by standing) and the
  seller's sellerConfirm, each waiting for its receipt and the configured confirmations;
* proxy fetch: the seller's SELLER_DATA until the proxy fetched the ciphertext from the
  seller's storage, verified its hash and claimed proxyFetched on chain;
* buyer data: the buyer's BUYER_DATA (the grant: the wrapped key and where to download);
* download + decrypt: the resumable, pinned-TLS download with its SHA-256 check against the
  order's data hash, decrypting as the bytes arrive (they overlap), and the proxy's
  delivery records;
* decrypt finish: the last segment, the plaintext's fsync and rename.

The baseline, in the same run: a raw HTTPS download of the same ciphertext from the same
proxy (the buyer's token, the pinned TLS connection, bytes read into a 1 MiB buffer and
discarded). Then, for the smallest size, the same purchase with both wallets' automation
loops running (`pdash run`) instead of driven step by step, at the front ends' interval
(2 s) and at 0.5 s (only 0.5 s with --quick): what polling adds. Goals: 100 MiB in under
5 s; with --large, the 1 GiB purchase within 2x of the raw download. Prints progress, then
the figures last, one `name: value unit` per line.
Run: .venv/bin/python bench/e2e.py [--quick | --large]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpchain.crypto import sha256_file
from cpchain.proxy.protocol import authorization, download_token
from cpchain.proxy.tls import PinnedHTTPSConnection
from cpchain.testnet import running_testnet
from cpchain.types import OrderState
from cpchain.wallet.automation import Automation
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext
from cpchain.wallet.demo import open_party
from cpchain.wallet.seller import Seller

MIB = 1 << 20
READ = 1 << 20
GOAL_100MIB_S = 5.0
GOAL_RATIO_1GIB = 2.0
PRICE = 10**16
AUTOMATION_INTERVALS = (2.0, 0.5)  # what `pdash run` and the Qt wallet step at by default; a shorter one


def log(message: str) -> None:
    print(message, flush=True)


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n
    return path


class Timed:
    """Wraps the buyer's proxy client so the receive step's parts can be told apart."""

    def __init__(self, ctx: WalletContext) -> None:
        self.marks: dict[str, float] = {}
        client = ctx.proxy_client
        original_download = client.download

        def download(*args: Any, **kwargs: Any) -> Path:
            self.marks["download start"] = time.perf_counter()
            try:
                return original_download(*args, **kwargs)
            finally:
                self.marks["download end"] = time.perf_counter()

        client.download = download  # type: ignore[method-assign]


@dataclass
class Result:
    size: int
    total: float
    chain: float
    place_order: float
    seller_confirm: float
    fetch: float
    grant: float
    download: float
    decrypt: float
    raw: float

    @property
    def ratio(self) -> float:
        return self.total / self.raw

    @property
    def buyer_side(self) -> float:
        return self.grant + self.download + self.decrypt


def raw_download(ctx: WalletContext, order_id: int, proxy: str, size: int) -> float:
    """Seconds for one whole GET of the order's ciphertext from the proxy, bytes discarded."""
    endpoint = ctx.proxies.endpoint(proxy)
    token = download_token(ctx.me.account, order_id=order_id, proxy=endpoint.address, domain=ctx.domain)
    buffer = memoryview(bytearray(READ))
    began = time.perf_counter()
    conn = PinnedHTTPSConnection(endpoint.host, endpoint.file_port, endpoint.fingerprint, timeout=60, blocksize=READ)
    try:
        conn.request("GET", f"/orders/{order_id}", headers={"Authorization": authorization(token)})
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"raw download refused: {response.status} {response.read(200)!r}")
        got = 0
        while n := response.readinto(buffer):
            got += n
    finally:
        conn.close()
    seconds = time.perf_counter() - began
    if got != size:
        raise SystemExit(f"raw download: {got} of {size} bytes")
    return seconds


def trade(seller: Seller, buyer: Buyer, timed: Timed, work: Path, size: int) -> Result:
    source = random_file(work / f"data-{size // MIB}MiB.bin", size)
    upload = seller.upload(source)
    product = seller.publish(upload.id, title=f"Bench {size // MIB} MiB {secrets.token_hex(3)}", price=PRICE)
    buyer.show(product.market_hash)  # the listing is live before the clock starts
    os.sync()  # the set-up's writes (the random file, the seller's ciphertext) are not the purchase's

    t0 = time.perf_counter()
    order = buyer.buy(product.market_hash)
    t1 = time.perf_counter()
    seller.confirm(order.order_id)
    t2 = time.perf_counter()
    seller.deliver(order.order_id)
    t3 = time.perf_counter()
    purchase = buyer.receive(order.order_id)
    t4 = time.perf_counter()

    decrypted = Path(purchase.decrypted_path)
    if decrypted.stat().st_size != size or sha256_file(decrypted) != sha256_file(source):
        raise SystemExit(f"{decrypted} is not the file the seller published")
    raw = raw_download(buyer.ctx, order.order_id, order.proxy, upload.cipher_size)
    marks = timed.marks
    deadline = time.monotonic() + 60
    while buyer.book.refresh(order.order_id).state is not OrderState.PROXY_DELIVERED:
        if time.monotonic() > deadline:
            raise SystemExit(f"order {order.order_id}: the proxy did not attest delivery")
        time.sleep(0.1)
    buyer.confirm(order.order_id)
    for path in (source, decrypted, Path(purchase.download_path)):
        path.unlink(missing_ok=True)
    return Result(size=size, total=t4 - t0, chain=t2 - t0, place_order=t1 - t0, seller_confirm=t2 - t1,
                  fetch=t3 - t2, grant=marks["download start"] - t3,
                  download=marks["download end"] - marks["download start"], decrypt=t4 - marks["download end"],
                  raw=raw)  # fmt: skip


def automated(manifest: dict[str, Any], seller: Seller, buyer: Buyer, work: Path, size: int, interval: float) -> float:
    """Buy to decrypted file with both wallets' automation loops running (as `pdash run` runs
    them) every `interval` seconds: the seller's confirms and delivers, the buyer's receives."""
    source = random_file(work / f"auto-{size // MIB}MiB.bin", size)
    product = seller.publish(seller.upload(source).id, title=f"Bench auto {secrets.token_hex(3)}", price=PRICE)
    buyer.show(product.market_hash)
    stop = threading.Event()
    opened: list[WalletContext] = []

    def loop(name: str) -> None:
        ctx = open_party(manifest, name)
        opened.append(ctx)
        Automation(ctx).run(stop, interval)

    threads = [threading.Thread(target=loop, args=(name,), daemon=True) for name in ("seller", "buyer")]
    for thread in threads:
        thread.start()
    try:
        time.sleep(interval)  # both loops are past their first (empty) step
        began = time.perf_counter()
        order_id = buyer.buy(product.market_hash).order_id
        ctx = buyer.ctx
        deadline = time.monotonic() + 120
        while not ((found := ctx.db.purchase(ctx.contract, ctx.address, order_id)) and found.decrypted):
            if time.monotonic() > deadline:
                raise SystemExit(f"order {order_id}: the automation did not deliver within 120 s")
            time.sleep(0.01)
        seconds = time.perf_counter() - began
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for opened_ctx in opened:
            opened_ctx.close()
    source.unlink()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size_group = parser.add_mutually_exclusive_group()
    size_group.add_argument("--quick", action="store_true", help="10 MiB only")
    size_group.add_argument("--large", action="store_true", help="also 1 GiB (needs about 5 GiB of temp space)")
    size_group.add_argument("--sizes", type=int, nargs="+", metavar="MIB", help="these sizes only (MiB)")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [n * MIB for n in args.sizes]
    else:
        sizes = [10 * MIB] if args.quick else [10 * MIB, 100 * MIB] + ([1024 * MIB] if args.large else [])
    started = time.monotonic()
    results: list[Result] = []
    auto: dict[float, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp,
        running_testnet(Path(tmp) / "home", "bench/e2e.py's testnet", say=log) as config,
    ):
        manifest: dict[str, Any] = json.loads((config.path("testnet.dir") / "testnet.json").read_text())
        sctx, bctx = open_party(manifest, "seller"), open_party(manifest, "buyer")
        try:
            seller, buyer, timed = Seller(sctx), Buyer(bctx), Timed(bctx)
            work = Path(tmp) / "work"
            work.mkdir()
            for size in sizes:
                result = trade(seller, buyer, timed, work, size)
                log(f"{size // MIB} MiB: buy to decrypted file {result.total:.2f} s, raw download {result.raw:.2f} s")
                results.append(result)
            intervals = () if args.sizes else AUTOMATION_INTERVALS[-1:] if args.quick else AUTOMATION_INTERVALS
            for interval in intervals:
                auto[interval] = automated(manifest, seller, buyer, work, sizes[0], interval)
                log(f"{sizes[0] // MIB} MiB with both automation loops every {interval:g} s: buy to decrypted "
                    f"file {auto[interval]:.2f} s")  # fmt: skip
        finally:
            sctx.close()
            bctx.close()
    load = os.getloadavg()
    log(f"done in {time.monotonic() - started:.1f} s on {os.cpu_count()} cores; goals: 100 MiB in < "
        f"{GOAL_100MIB_S:.0f} s, 1 GiB within {GOAL_RATIO_1GIB:.0f}x of the raw download")  # fmt: skip
    for r in results:
        name = f"{r.size // MIB} MiB"
        figures: list[tuple[str, float, str]] = [
            ("buy to decrypted file", r.total, "s"),
            ("chain (placeOrder + sellerConfirm)", r.chain, "s"),
            ("chain placeOrder", r.place_order, "s"),
            ("chain sellerConfirm", r.seller_confirm, "s"),
            ("proxy fetch", r.fetch, "s"),
            ("buyer data", r.grant, "s"),
            ("download + decrypt", r.download, "s"),
            ("decrypt finish", r.decrypt, "s"),
            ("raw https download", r.raw, "s"),
            ("purchase / raw download", r.ratio, "x"),
            ("buyer side (buyer data + download + decrypt) / raw download", r.buyer_side / r.raw, "x"),
            ("purchase throughput", r.size / r.total / 1e6, "MB/s"),
        ]
        for label, value, unit in figures:
            print(f"{name} {label}: {value:.3f} {unit}")
    for interval, seconds in auto.items():
        print(f"{sizes[0] // MIB} MiB buy to decrypted file, automation every {interval:g} s: {seconds:.2f} s")
    print(f"cores: {os.cpu_count()} cores")
    print(f"load average: {load[0]:.2f} runnable")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One complete file trade on a running local testnet, step by step (`pdash-testnet up --demo`).

Owns the demo's script only: open the testnet's seller and buyer wallets from the configs
`pdash-testnet up` wrote (passwords from their 0600 files), then run one trade through the
wallet core exactly as a front end would — encrypt and upload, publish, search, buy with
the two best proxies, the seller's confirmation, the proxy's fetch, the buyer's download,
verification and decryption, the proxy's delivery attestation, the buyer's confirmation —
and report each step as one line with its time. Must not start or stop services
(cpchain.testnet does) or hold trade logic (cpchain.wallet.seller and .buyer do).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from cpchain.config import Config, ConfigError, load_config
from cpchain.crypto import keystore, sha256_file
from cpchain.types import OrderState
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext, open_wallet
from cpchain.wallet.errors import NoProxy, NotReady, WalletError
from cpchain.wallet.seller import Seller

__all__ = ["DemoFailed", "DemoResult", "run_demo", "sample_file"]

ETHER = 10**18
DEFAULT_SIZE = 1 << 20
PRICE = ETHER  # 1 ETH
DELIVERY_TIMEOUT = 60.0


class DemoFailed(Exception):
    """A demo step failed; str() is one line naming the step."""


@dataclass
class DemoResult:
    order_id: int
    market_hash: str
    source: Path
    decrypted: Path
    sha256: str
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds


def sample_file(path: Path, size: int) -> Path:
    """`size` bytes of CSV sensor readings (random values, so no two demos sell the same data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["time,station,temperature_c,humidity_pct\n"]
    written = len(rows[0])
    start = int(time.time()) - 86400
    i = 0
    while written < size:
        value = secrets.randbelow(10**6)
        row = f"{start + 60 * i},st-{value % 97:02d},{value % 4000 / 100 - 10:.2f},{value % 1000 / 10:.1f}\n"
        rows.append(row)
        written += len(row)
        i += 1
    path.write_text("".join(rows)[:size], encoding="utf-8")
    return path


def _manifest(config: Config) -> dict[str, Any]:
    path = config.path("testnet.dir") / "testnet.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DemoFailed(f"no testnet at {path.parent}: run `pdash-testnet up` first") from None
    except (OSError, ValueError) as exc:
        raise DemoFailed(f"cannot read {path}: {exc}") from None
    return data


def open_party(manifest: dict[str, Any], name: str) -> WalletContext:
    """The testnet wallet `name` (seller, buyer) opened from its generated config and password file."""
    account = manifest["accounts"][name]
    config = load_config(Path(account["config"]))
    password = keystore.read_password_file(config.path("account.password_file"))
    return open_wallet(config, password, account["address"])


def _ether(wei: int) -> str:
    return f"{(Decimal(wei) / ETHER).quantize(Decimal('0.0001')).normalize():f} ETH"


def _delta(wei: int) -> str:
    return ("+" if wei >= 0 else "-") + _ether(abs(wei))


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


class _Steps:
    """Times the steps and prints one line each: `[n/total] name   seconds  detail`."""

    def __init__(self, out: Callable[[str], None], total: int) -> None:
        self.out = out
        self.total = total
        self.done = 0
        self.times: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """The body appends its one-line detail to the yielded list."""
        detail: list[str] = []
        began = time.perf_counter()
        try:
            yield detail
        except WalletError as exc:
            raise DemoFailed(f"{name} failed: {exc}") from exc
        except OSError as exc:
            raise DemoFailed(f"{name} failed: {exc}") from exc
        seconds = time.perf_counter() - began
        self.done += 1
        self.times[name] = seconds
        self.out(f"[{self.done:>2}/{self.total}] {name:24} {seconds:6.2f} s  {' '.join(detail)}".rstrip())


def run_demo(config: Config, *, size: int = DEFAULT_SIZE, out: Callable[[str], None] = print,
             source: Path | None = None) -> DemoResult:  # fmt: skip
    """Run one file trade between the testnet's seller and buyer; DemoFailed (one line) if a step fails."""
    manifest = _manifest(config)
    proxy_names = {str(p["address"]).lower(): name for name, p in manifest["proxies"].items()}
    steps = _Steps(out, total=11)
    began = time.perf_counter()
    try:
        with steps.step("open wallets") as detail:
            sctx, bctx = open_party(manifest, "seller"), open_party(manifest, "buyer")
            detail.append(f"seller {sctx.address}, buyer {bctx.address}")
    except ConfigError as exc:
        raise DemoFailed(f"open wallets failed: {exc}") from None
    try:
        return _trade(manifest, proxy_names, steps, sctx, bctx, size, source, began, out)
    finally:
        sctx.close()
        bctx.close()


def _trade(manifest: dict[str, Any], proxy_names: dict[str, str], steps: _Steps, sctx: WalletContext,
           bctx: WalletContext, size: int, source: Path | None, began: float,
           out: Callable[[str], None]) -> DemoResult:  # fmt: skip
    seller, buyer = Seller(sctx), Buyer(bctx)
    w3 = sctx.escrow.w3
    watched = {"seller": sctx.address, "buyer": bctx.address}
    watched.update({name: p["address"] for name, p in manifest["proxies"].items()})
    before = {name: int(w3.eth.get_balance(to_checksum_address(a))) for name, a in watched.items()}
    tag = secrets.token_hex(3)
    if source is None:
        source = sample_file(Path(manifest["accounts"]["seller"]["home"]) / "demo" / f"readings-{tag}.csv", size)
    original = sha256_file(source)

    def named(address: str) -> str:
        return proxy_names.get(address.lower(), address)

    with steps.step("encrypt+upload") as detail:
        upload = seller.upload(source)
        detail.append(f"{source.name}: {_mib(upload.plain_size)} encrypted to {upload.cipher_size} bytes, "
                      f"stored in {upload.storage_type} storage (data hash {upload.data_hash[:16]}...)")  # fmt: skip
    title = f"Demo sensor readings {tag}"
    with steps.step("publish") as detail:
        product = seller.publish(upload.id, title=title, price=PRICE, category="demo", tags=["demo", "sensors"],
                                 description="Sensor readings published by pdash-testnet --demo")  # fmt: skip
        detail.append(f"{product.market_hash} for {_ether(PRICE)} at {manifest['market']}")
    with steps.step("search") as detail:
        deadline = time.monotonic() + 10
        while True:
            results = buyer.search(keyword=tag).get("results", [])
            if any(r.get("market_hash") == product.market_hash for r in results):
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"search failed: the market does not list {product.market_hash}")
            time.sleep(0.2)
        detail.append(f"{tag!r}: {len(results)} result(s), the listing's signature and hashes verified")
    with steps.step("buy") as detail:
        buyer.show(product.market_hash)
        eligible = [s for s in bctx.proxies.standings() if s.eligible]
        if not eligible:
            raise NoProxy("no live proxy with a bonded deposit is registered with the tracker")
        first, second = eligible[0], eligible[1] if len(eligible) > 1 else eligible[0]
        order = buyer.buy(product.market_hash, proxy=first.address, proxy2=second.address)
        oid = order.order_id
        credit = "no ratings yet" if first.credit is None else f"credit {first.credit:.1f}"
        detail.append(f"order {oid}: {_ether(order.price)} + fee {_ether(order.fee)} in escrow; proxy "
                      f"{named(first.address)} (deposit {_ether(first.deposit)}, {credit}), secondary "
                      f"{named(second.address)}")  # fmt: skip
    with steps.step("seller confirm") as detail:
        confirmed = seller.confirm(oid)
        detail.append(f"order {oid} {confirmed.state.name} (seller deposit {_ether(confirmed.price)})")
    with steps.step("proxy fetch") as detail:
        receipt = seller.deliver(oid)
        state = seller.book.refresh(oid).state
        detail.append(f"the proxy fetched and verified {receipt.size} bytes; order {state.name}")
    with steps.step("download+verify+decrypt") as detail:
        purchase = buyer.receive(oid)
        decrypted = Path(purchase.decrypted_path)
        detail.append(f"{_mib(decrypted.stat().st_size)}; ciphertext SHA-256 equals the order's data hash")
    with steps.step("proxy delivery") as detail:
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while (state := buyer.book.refresh(oid).state) is not OrderState.PROXY_DELIVERED:
            if time.monotonic() > deadline:
                raise NotReady(f"order {oid} is {state.name}: the proxy did not attest delivery within "
                               f"{DELIVERY_TIMEOUT:.0f} s")  # fmt: skip
            time.sleep(0.1)
        detail.append(f"the proxy attested delivery on chain; order {state.name}")
    with steps.step("buyer confirm") as detail:
        finished = buyer.confirm(oid)
        detail.append(f"order {oid} {finished.state.name}: seller and proxies paid")
    with steps.step("final balances") as detail:
        after = {name: int(w3.eth.get_balance(to_checksum_address(a))) for name, a in watched.items()}
        detail.append(", ".join(f"{name} {_ether(after[name])} ({_delta(after[name] - before[name])})"
                                for name in watched))  # fmt: skip
    digest = sha256_file(decrypted)
    if digest != original:
        raise DemoFailed(f"hash check failed: {decrypted} has SHA-256 {digest}, the original {original}")
    out(f"trade complete in {time.perf_counter() - began:.1f} s")
    out(f"decrypted file: {decrypted}")
    out(f"sha256 {digest} matches the original ({source})")
    return DemoResult(oid, product.market_hash, source, decrypted, digest, steps.times)

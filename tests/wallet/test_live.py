"""The wallet core end to end on real services: anvil + escrow, market, tracker, DHT, two proxies.

A seller's wallet encrypts, uploads and publishes; a buyer's wallet buys; both automations
run the trade to a decrypted file equal to the original; a seller wallet that dies between
its confirmation and its delivery resumes after a restart; and the bad paths (wrong
signer, wrong state, unknown product, market down, proxy down) end in typed errors with
the local database consistent and no transaction sent.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cpchain.crypto import sha256_file
from cpchain.proxy.protocol import Endpoint
from cpchain.types import OrderState
from cpchain.wallet.automation import Automation, StepReport
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext
from cpchain.wallet.db import ProductRecord
from cpchain.wallet.errors import (
    ForbiddenAction,
    InsufficientFunds,
    MarketUnavailable,
    NotReady,
    ProxyUnavailable,
    UnknownOrder,
    UnknownProduct,
)
from cpchain.wallet.rules import Policy, Task
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.wallet.conftest import Services, random_file, wait_registered

PRICE = 10 * ETHER


def drive(*autos: Automation, until: Callable[[], bool], timeout: float = 60.0) -> list[StepReport]:
    """Step the automations in turn (as their loops would) until `until()` holds."""
    reports: list[StepReport] = []
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; last reports: {reports[-len(autos) :]}"
        for auto in autos:
            reports.append(auto.step())
        time.sleep(0.05)
    return reports


def publish(services: Services, ctx: WalletContext, tmp_path: Path, size: int = 200_000,
            price: int = PRICE) -> tuple[ProductRecord, Path]:  # fmt: skip
    original = random_file(tmp_path / f"data-{secrets.token_hex(4)}.csv", size)
    seller = Seller(ctx)
    upload = seller.upload(original)
    return seller.publish(upload.id, title=f"Readings {secrets.token_hex(4)}", price=price), original


def chain_state(services: Services, order_id: int) -> OrderState:
    return services.chain.world.escrow.status(order_id).state


def nonces(services: Services, *names: str) -> list[int]:
    w3 = services.chain.world.w3
    return [w3.eth.get_transaction_count(services.chain.world.address(n)) for n in names]


def test_a_file_trade_run_by_both_automations(services: Services, tmp_path: Path) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    seller, buyer = Seller(sctx), Buyer(bctx)
    original = random_file(tmp_path / "weather.csv", 300_000)
    seen: list[tuple[str, int, int]] = []
    upload = seller.upload(original, progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert {p for p, _, _ in seen} == {"encrypt", "upload"}
    assert seen[-1][1] == seen[-1][2] == upload.cipher_size and upload.plain_size == 300_000
    assert upload.storage_type == "local" and str(services.seller_files) in upload.locator
    product = seller.publish(upload.id, title="Hourly weather of Shanghai", price=PRICE, category="climate",
                             tags=["weather"])  # fmt: skip
    assert product.published and seller.products() == [product]

    found = buyer.search(keyword="Shanghai")
    assert product.market_hash in [r["market_hash"] for r in found["results"]]
    listing = buyer.show(product.market_hash)
    assert listing.product.data_hash == upload.data_hash and listing.product.seller == sctx.address
    order = buyer.buy(product.market_hash)
    proxies = {p.address for p in services.proxies.values()}
    assert order.state is OrderState.CREATED and order.role == "buyer"
    assert {order.proxy, order.proxy2} == proxies  # the best proxy, and the next best as secondary
    assert order.price == PRICE and order.fee == PRICE // 100
    assert order.buyer_key == bctx.me.encryption_public_key.hex()

    sellers, buyers = Automation(sctx), Automation(bctx)
    oid = order.order_id

    def received() -> bool:
        purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
        return bool(purchase and purchase.decrypted) and chain_state(services, oid) is OrderState.PROXY_DELIVERED

    reports = drive(sellers, buyers, until=received)
    done = [d for r in reports for d in r.done if d[0] == oid]
    assert done[:2] == [(oid, Task.SELLER_CONFIRM), (oid, Task.DELIVER)] and (oid, Task.RECEIVE) in done
    assert not [f for r in reports for f in r.failed if f[0] == oid]
    purchase = buyer.purchases()[-1]
    assert purchase.order_id == oid and purchase.verified and purchase.title == "Hourly weather of Shanghai"
    assert Path(purchase.decrypted_path).read_bytes() == original.read_bytes()
    assert sha256_file(purchase.download_path) == upload.data_hash
    assert Path(purchase.decrypted_path).parent == bctx.download_dir

    assert buyer.confirm(oid).state is OrderState.FINISHED
    assert chain_state(services, oid) is OrderState.FINISHED
    sellers.step()
    seller_view = sctx.db.order(sctx.contract, sctx.address, oid)
    assert seller_view is not None and seller_view.state is OrderState.FINISHED and seller_view.delivered
    assert buyers.step().done == [] and sellers.step().done == []  # nothing left to do: idempotent

    services.index_market()
    review = buyer.rate(oid, 5, "accurate and complete", proxy_rating=4)
    assert review["rating"] == 5 and review["author"] == bctx.address
    assert services.market.client().product(product.market_hash)["rating"] == {"count": 1, "average": 5.0}
    assert services.chain.world.escrow.status(oid).buyer_rated
    with pytest.raises(ForbiddenAction, match="already rated"):
        buyer.rate_proxy(oid, 3)


def test_a_seller_wallet_restarted_mid_trade_resumes_it(services: Services, tmp_path: Path) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    product, original = publish(services, sctx, tmp_path)
    oid = Buyer(bctx).buy(product.market_hash).order_id

    class Crash(BaseException):
        """The process dies (no exception handler runs)."""

    def die(*args: object, **kwargs: object) -> None:
        raise Crash

    sctx.proxy_client.send_seller_data = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        Automation(sctx).step()  # confirmed on chain, then died before the delivery
    sctx.close()
    assert chain_state(services, oid) is OrderState.SELLER_CONFIRMED

    restarted = services.open("seller")
    local = restarted.db.order(restarted.contract, restarted.address, oid)
    assert local is not None and local.state is OrderState.SELLER_CONFIRMED and not local.delivered
    report = Automation(restarted).step()
    assert (oid, Task.DELIVER) in report.done and (oid, Task.SELLER_CONFIRM) not in report.done
    assert chain_state(services, oid) in (OrderState.PROXY_FETCHED, OrderState.PROXY_DELIVERED)

    # The buyer's automation loop, as a front end runs it, receives and confirms on its own.
    stop, reports = threading.Event(), []
    loop = threading.Thread(target=Automation(bctx, Policy(auto_confirm=True)).run,
                            args=(stop, 0.1, reports.append), daemon=True)  # fmt: skip
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while chain_state(services, oid) is not OrderState.FINISHED:
            assert time.monotonic() < deadline and loop.is_alive(), reports[-3:]
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    assert [t for r in reports for o, t in r.done if o == oid] == [Task.RECEIVE, Task.BUYER_CONFIRM]
    purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
    assert purchase is not None and Path(purchase.decrypted_path).read_bytes() == original.read_bytes()


def test_a_receive_cut_short_resumes_and_decrypts_the_verified_file(services: Services, tmp_path: Path) -> None:
    """A receive killed mid-download leaves its partial file; the next one resumes it (the
    bytes already there never reached a decryptor, so the verified file is decrypted)."""
    sctx, bctx = services.open("seller"), services.open("buyer")
    product, original = publish(services, sctx, tmp_path, size=3 << 20)
    buyer, seller = Buyer(bctx), Seller(sctx)
    oid = buyer.buy(product.market_hash).order_id
    seller.confirm(oid)
    seller.deliver(oid)

    class Crash(BaseException):
        """The process dies (no exception handler runs)."""

    def dies_midway(phase: str, done: int, total: int) -> None:
        if phase == "download" and done >= 1 << 20:
            raise Crash

    with pytest.raises(Crash):
        buyer.receive(oid, progress=dies_midway)
    assert [p.name for p in bctx.download_dir.iterdir() if p.name.endswith(".part")]  # the partial download
    purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
    assert purchase is not None and not purchase.verified and not purchase.decrypted

    phases: list[tuple[str, int, int]] = []
    purchase = buyer.receive(oid, progress=lambda *report: phases.append(report))
    assert purchase.verified and purchase.decrypted
    assert Path(purchase.decrypted_path).read_bytes() == original.read_bytes()
    decrypting = [done for phase, done, _ in phases if phase == "decrypt"]
    assert len(decrypting) > 1 and decrypting[-1] == phases[-1][2]  # decrypted from the file, with progress
    assert [p.name for p in bctx.download_dir.iterdir() if p.name.endswith(".part")] == []


def test_forbidden_actions_are_refused_before_any_transaction(services: Services, tmp_path: Path) -> None:
    sctx, bctx, octx = services.open("seller"), services.open("buyer"), services.open("other")
    seller, buyer, other = Seller(sctx), Buyer(bctx), Buyer(octx)
    product, _ = publish(services, sctx, tmp_path, size=1000)
    oid = buyer.buy(product.market_hash).order_id
    before = nonces(services, "seller", "buyer", "other")

    with pytest.raises(ForbiddenAction) as refused:
        other.confirm(oid)  # wrong signer
    assert refused.value.reason == "only buyer" and refused.value.order_id == oid
    with pytest.raises(UnknownOrder, match="neither its buyer nor its seller"):
        Seller(octx).confirm(oid)
    with pytest.raises(UnknownOrder, match="its buyer, not its seller"):
        Seller(bctx).confirm(oid)
    for action in (buyer.confirm, buyer.dispute):  # wrong state: nothing delivered yet
        with pytest.raises(ForbiddenAction, match="wrong state"):
            action(oid)
    with pytest.raises(NotReady, match="not fetched"):
        buyer.receive(oid)
    with pytest.raises(ForbiddenAction, match="wrong state"):
        seller.deliver(oid)  # not confirmed yet
    with pytest.raises(ForbiddenAction, match="not complete"):
        buyer.rate(oid, 5)
    with pytest.raises(ForbiddenAction, match="deadline not reached"):
        buyer.claim_timeout(oid)
    with pytest.raises(ForbiddenAction, match="own product"):
        Buyer(sctx).buy(product.market_hash)
    assert nonces(services, "seller", "buyer", "other") == before
    assert octx.db.orders(octx.contract, octx.address) == []

    assert buyer.withdraw(oid).state is OrderState.WITHDRAWN  # allowed: the seller has not confirmed
    with pytest.raises(ForbiddenAction, match="wrong state"):
        buyer.withdraw(oid)
    with pytest.raises(ForbiddenAction, match="wrong state"):
        seller.confirm(oid)
    assert Automation(sctx).step().done == []  # a withdrawn order is left alone
    assert nonces(services, "seller") == before[:1]

    # An order for the product at half its price: the seller's wallet will not accept it.
    listed = buyer.show(product.market_hash).product
    cheap = services.chain.world.buyer.place_order(
        desc_hash=listed.desc_hash(), data_hash=bytes.fromhex(listed.data_hash),
        buyer_key=bctx.me.encryption_public_key, seller=sctx.address, proxy=services.proxies["proxy"].address,
        price=PRICE // 2, fee=0, time_allowed=3600,
    )  # fmt: skip
    assert Automation(sctx).step().done == [(cheap, Task.IGNORE)]
    ignored = sctx.db.order(sctx.contract, sctx.address, cheap)
    assert ignored is not None and "less than the listed" in ignored.ignored
    assert Automation(sctx).step().done == []  # recorded once, never confirmed
    with pytest.raises(ForbiddenAction, match="less than the listed"):
        seller.confirm(cheap)
    assert chain_state(services, cheap) is OrderState.CREATED
    assert buyer.withdraw(cheap).state is OrderState.WITHDRAWN


def test_unknown_products_and_a_market_that_is_down(services: Services, tmp_path: Path) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    buyer = Buyer(bctx)
    with pytest.raises(UnknownProduct):
        buyer.buy("A" * 43)
    with pytest.raises(UnknownProduct, match="not a market hash"):
        buyer.show("../etc")
    existing, _ = publish(services, sctx, tmp_path, size=1000)
    orders = bctx.db.orders(bctx.contract, bctx.address)
    before = nonces(services, "buyer")
    too_dear, _ = publish(services, sctx, tmp_path, size=1000, price=10**6 * ETHER)
    with pytest.raises(InsufficientFunds, match=r"^placeOrder: Insufficient funds"):
        buyer.buy(too_dear.market_hash)

    dead = f"http://127.0.0.1:{services.chain.nobody}"
    offline = Buyer(services.open("buyer", market_url=dead))
    with pytest.raises(MarketUnavailable):
        offline.buy(existing.market_hash)
    with pytest.raises(MarketUnavailable):
        offline.search("weather")
    assert bctx.db.orders(bctx.contract, bctx.address) == orders and nonces(services, "buyer") == before

    offline_seller = Seller(services.open("seller", market_url=dead))
    upload = offline_seller.upload(random_file(tmp_path / "late.csv", 1000))
    with pytest.raises(MarketUnavailable):
        offline_seller.publish(upload.id, title="Published later", price=PRICE)
    pending = [p for p in offline_seller.products() if not p.published]
    assert [p.title for p in pending] == ["Published later"]  # kept, so orders for it can be served
    published = Seller(services.open("seller")).republish(pending[0].market_hash)
    assert published.published and buyer.show(published.market_hash).product.title == "Published later"


def test_a_proxy_that_is_down(services: Services, tmp_path: Path) -> None:
    sctx, bctx = services.open("seller"), services.open("buyer")
    buyer, down = Buyer(bctx), services.proxies["proxy2"]
    alone, original = publish(services, sctx, tmp_path)
    backed, backed_original = publish(services, sctx, tmp_path)
    single = buyer.buy(alone.market_hash, proxy=down.address).order_id  # proxy2 is its only proxy
    fallback = buyer.buy(backed.market_hash, proxy=down.address, proxy2=services.proxies["proxy"].address).order_id
    clock = [time.time()]
    sellers = Automation(sctx, clock=lambda: clock[0])
    down.stop()
    try:
        report = sellers.step()
        assert (single, Task.SELLER_CONFIRM) in report.done and (fallback, Task.DELIVER) in report.done
        assert [(o, t) for o, t, _ in report.failed] == [(single, Task.DELIVER)]
        local = sctx.db.order(sctx.contract, sctx.address, single)
        assert local is not None and local.state is OrderState.SELLER_CONFIRMED and not local.delivered
        assert local.attempts == 1 and local.next_try > clock[0] and "proxy" in local.last_error
        assert sellers.step().failed == []  # backing off: not retried yet

        # The buyer gets the other order from its secondary proxy.
        purchase = buyer.receive(fallback)
        assert Path(purchase.decrypted_path).read_bytes() == backed_original.read_bytes()
    finally:
        down.start()
    wait_registered(services)
    clock[0] += 3600
    assert (single, Task.DELIVER) in sellers.step().done

    # The buyer's side of a proxy that cannot be reached: a typed error, nothing recorded.
    nowhere = services.chain.nobody
    bctx.proxies.remember(Endpoint(down.address, "127.0.0.1", nowhere, nowhere, down.fingerprint))
    with pytest.raises(ProxyUnavailable):
        buyer.receive(single)
    purchase = bctx.db.purchase(bctx.contract, bctx.address, single)
    assert purchase is not None and not purchase.verified and not purchase.decrypted and not purchase.download_path
    purchase = buyer.receive(single)  # found again through the tracker
    assert Path(purchase.decrypted_path).read_bytes() == original.read_bytes()

"""The wallet's other end-to-end paths on real services: disputes, timeouts, IPFS and S3 storage.

One anvil + escrow, tracker and DHT boot node, two proxies and a market for the module; the
market runs on MariaDB (on SQLite only when no MariaDB server answers and CI does not
require one, and then the storage trades skip), and the proxies' fetch policy admits the
seller's IPFS node and S3 server on 127.0.0.1 (as an operator would for storage on its own
host, cf. tests/proxy/test_fetch_backends.py).

- Disputes: several trades run by both wallets' automations to a verified delivery, then
  disputed through the buyer's core. Each way the v2 contract ends a dispute: the proxy's
  verdict (ruled with the operator's `proxy-ctl dispute`) accepted by both parties, for
  either side (the favoured party's automation agrees on its own, the other's never
  answers for its user); a party appealing and the arbiter (the deployment's arbiter
  account) deciding, with and without the proxy at fault (its deposit slashed); and, last
  in the module because they move the chain's clock (evm_increaseTime), the arbiter ruling
  on a dispute the proxy left unanswered, a verdict nobody appealed standing after the
  arbiter's window, and a dispute nobody ruled on refunding both.
- Timeout refunds: an order its seller never confirms, and one it confirmed but never
  delivered to the proxy; the buyer's automation claims them after the deadline.
- Storage: the same file trade with the seller's wallet storing on IPFS (js-ipfs) and on S3
  (moto, the proxy fetching through the presigned URL the wallet makes for the delivery).

Balances are checked exactly: each account's gain over a window of blocks, with the gas it
spent in them added back, against the contract's payout rules.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpchain.chain.errors import ContractRevert
from cpchain.config import load_config
from cpchain.crypto import sha256_file
from cpchain.proxy import ctl
from cpchain.storage import Locator, S3Credentials
from cpchain.storage.settings import credential_store
from cpchain.types import OrderState, Verdict
from cpchain.wallet.automation import Automation
from cpchain.wallet.buyer import Buyer
from cpchain.wallet.context import WalletContext
from cpchain.wallet.db import OrderRecord
from cpchain.wallet.errors import ForbiddenAction
from cpchain.wallet.rules import Policy, Task
from cpchain.wallet.seller import Seller
from tests.chain.conftest import ETHER
from tests.conftest import S3_BUCKET
from tests.market.conftest import mariadb_available, require_mariadb
from tests.proxy.conftest import Chain, ProxyProc
from tests.wallet.conftest import Services, password, random_file, start_services
from tests.wallet.test_live import chain_state, drive

ROOT = Path(__file__).resolve().parents[2]
PROXY_CTL = ROOT / "bin" / "proxy-ctl"
PRICE = 10 * ETHER
FETCH = {"fetch_types": ["local", "proxy", "ipfs", "s3"], "fetch_allow_internal": True, "fetch_hosts": ["127.0.0.1"]}
# moto accepts any key pair; this stands for the seller's own, sealed in its wallet.
SELLER_S3 = S3Credentials("AKIAPDASHWALLET00001", "pdash-wallet-seller-secret-0a1b2c3d")

DISPUTES = ("agreed-seller", "agreed-buyer", "appeal-by-buyer", "appeal-by-seller", "unanswered", "unruled",
            "arbiter-late")  # fmt: skip


@pytest.fixture(scope="module")
def services(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    backend = "mariadb" if mariadb_available() or os.environ.get("PDASH_REQUIRE_MARIADB") else "sqlite"
    with start_services(chain, tmp_path_factory.mktemp("wallet-paths"), market_backend=backend, fetch=FETCH) as live:
        yield live


# --------------------------------------------------------------------------- helpers


class Ledger:
    """What named accounts gained from the blocks mined since it was made, gas spent added
    back, so a payout can be compared exactly with the contract's rules."""

    def __init__(self, services: Services) -> None:
        world = services.chain.world
        self.w3 = world.w3
        self.who = {name: world.address(name) for name in ("buyer", "seller", "proxy", "proxy2", "arbiter")}
        self.who["escrow"] = str(world.escrow.address)
        self.start = self.w3.eth.block_number
        self.before = {name: self.w3.eth.get_balance(a, self.start) for name, a in self.who.items()}

    def gains(self) -> dict[str, int]:
        end = self.w3.eth.block_number
        names = {address.lower(): name for name, address in self.who.items()}
        gas = dict.fromkeys(self.who, 0)
        for number in range(self.start + 1, end + 1):
            for tx in self.w3.eth.get_block(number, full_transactions=True)["transactions"]:
                name = names.get(str(tx["from"]).lower())
                if name is not None:
                    receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                    gas[name] += receipt["gasUsed"] * receipt["effectiveGasPrice"]
        return {name: self.w3.eth.get_balance(a, end) - self.before[name] + gas[name] for name, a in self.who.items()}


def expect(**gains: int) -> dict[str, int]:
    """Gains of the Ledger's accounts: the ones named, 0 for the others."""
    return {name: gains.get(name, 0) for name in ("buyer", "seller", "proxy", "proxy2", "arbiter", "escrow")}


def travel(services: Services, seconds: int) -> None:
    """Move the chain's clock forward and mine a block at the new time."""
    provider = services.chain.world.w3.provider
    provider.make_request("evm_increaseTime", [seconds])
    provider.make_request("evm_mine", [])


def deposits(services: Services) -> dict[str, int]:
    world = services.chain.world
    return {name: world.escrow.proxy_account(world.address(name))[0] for name in ("proxy", "proxy2")}


def rule(services: Services, order_id: int, at_fault: str, *, cli: bool = False) -> None:
    """The order's proxy operator rules on the dispute (`proxy-ctl dispute`), as a command or in-process."""
    terms = services.chain.world.escrow.terms(order_id)
    proxy: ProxyProc = next(p for p in services.proxies.values() if p.address == terms.proxy)
    if cli:
        done = subprocess.run(
            [str(PROXY_CTL), "--config", str(proxy.config_path), "dispute", str(order_id), "--at-fault", at_fault],
            env=proxy.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"order {order_id}: ruled that the {at_fault} is at fault"
    else:
        ctl.dispute(ctl._agent(load_config(proxy.config_path)), order_id, at_fault)


@dataclass
class Trades:
    """Both wallets (cores and automations) and the disputed orders, by the path each takes."""

    sctx: WalletContext
    bctx: WalletContext
    seller: Seller
    buyer: Buyer
    sellers: Automation
    buyers: Automation
    orders: dict[str, int]

    def local(self, ctx: WalletContext, order_id: int) -> OrderRecord:
        found = ctx.db.order(ctx.contract, ctx.address, order_id)
        assert found is not None
        return found

    def synced(self, order_id: int) -> tuple[OrderState, OrderState]:
        """Both wallets' recorded state of the order after a step of their automations."""
        self.sellers.step()
        self.buyers.step()
        return self.local(self.sctx, order_id).state, self.local(self.bctx, order_id).state

    def done(self, auto: Automation, order_id: int) -> list[Task]:
        return [task for oid, task in auto.step().done if oid == order_id]


@pytest.fixture(scope="module")
def trades(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Trades:
    """One order per dispute path, run by both automations to a verified delivery, then
    disputed by the buyer through the core."""
    sctx, bctx = services.open("seller"), services.open("buyer")
    seller, buyer = Seller(sctx), Buyer(bctx)
    original = random_file(tmp_path_factory.mktemp("disputed") / "readings.csv", 3000)
    product = seller.publish(seller.upload(original).id, title="Readings to dispute", price=PRICE)
    orders = {path: buyer.buy(product.market_hash).order_id for path in DISPUTES}
    sellers, buyers = Automation(sctx), Automation(bctx)

    def delivered() -> bool:
        return all(
            (p := bctx.db.purchase(bctx.contract, bctx.address, oid)) is not None and p.decrypted
            and chain_state(services, oid) is OrderState.PROXY_DELIVERED
            for oid in orders.values()
        )  # fmt: skip

    drive(sellers, buyers, until=delivered)
    for oid in orders.values():
        purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
        assert purchase is not None and Path(purchase.decrypted_path).read_bytes() == original.read_bytes()
        assert buyer.dispute(oid).state is OrderState.DISPUTED
    return Trades(sctx, bctx, seller, buyer, sellers, buyers, orders)


# --------------------------------------------------------------------------- disputes


def test_a_disputed_order_refuses_what_the_lifecycle_forbids(services: Services, trades: Trades) -> None:
    oid = trades.orders["agreed-seller"]
    assert trades.synced(oid) == (OrderState.DISPUTED, OrderState.DISPUTED)
    world = services.chain.world
    before = [world.w3.eth.get_transaction_count(world.address(n)) for n in ("buyer", "seller", "other")]
    for action, reason in [
        (lambda: trades.buyer.dispute(oid), "wrong state"),
        (lambda: trades.buyer.confirm(oid), "wrong state"),
        (lambda: trades.buyer.withdraw(oid), "wrong state"),
        (lambda: trades.buyer.answer_verdict(oid, True), "no verdict yet"),
        (lambda: trades.seller.answer_verdict(oid, False), "no verdict yet"),
        (lambda: trades.buyer.claim_timeout(oid), "deadline not reached"),
        (lambda: trades.seller.claim_timeout(oid), "deadline not reached"),
        (lambda: Buyer(services.open("other")).claim_timeout(oid), "only buyer or seller"),
    ]:
        with pytest.raises(ForbiddenAction) as refused:
            action()
        assert refused.value.reason == reason and refused.value.order_id == oid
    with pytest.raises(ContractRevert, match="agreement window open"):  # nobody appealed
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    assert [world.w3.eth.get_transaction_count(world.address(n)) for n in ("buyer", "seller", "other")] == before
    # The operator's tool refuses an order that is not disputed, in one line.
    withdrawn = trades.buyer.buy(trades.local(trades.bctx, oid).market_hash).order_id
    assert trades.buyer.withdraw(withdrawn).state is OrderState.WITHDRAWN
    proxy = next(p for p in services.proxies.values() if p.address == trades.local(trades.bctx, withdrawn).proxy)
    command = [str(PROXY_CTL), "--config", str(proxy.config_path), "dispute", str(withdrawn), "--at-fault", "seller"]
    done = subprocess.run(command, env=proxy.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == f"proxy-ctl: order {withdrawn} is WITHDRAWN, not disputed"


@pytest.mark.parametrize("at_fault", ["seller", "buyer"])
def test_both_parties_accept_the_proxys_verdict(services: Services, trades: Trades, at_fault: str) -> None:
    oid = trades.orders[f"agreed-{at_fault}"]
    fee = trades.local(trades.bctx, oid).fee
    winner, loser = ("buyer", "seller") if at_fault == "seller" else ("seller", "buyer")
    wallets = {"buyer": (trades.buyer, trades.buyers), "seller": (trades.seller, trades.sellers)}
    ledger = Ledger(services)

    rule(services, oid, at_fault, cli=at_fault == "seller")
    status = services.chain.world.escrow.status(oid)
    assert status.state is OrderState.DISPUTED
    assert status.verdict is (Verdict.SELLER_AT_FAULT if at_fault == "seller" else Verdict.BUYER_AT_FAULT)
    with pytest.raises(ContractRevert, match="verdict already given"):  # final once given
        rule(services, oid, "buyer" if at_fault == "seller" else "seller")

    assert trades.done(wallets[loser][1], oid) == []  # never answers for its user
    assert trades.done(wallets[winner][1], oid) == [Task.ACCEPT_VERDICT]
    assert trades.done(wallets[winner][1], oid) == []  # once
    with pytest.raises(ForbiddenAction, match="already agreed"):
        wallets[winner][0].answer_verdict(oid, True)
    assert services.chain.world.escrow.status(oid).state is OrderState.DISPUTED
    assert wallets[loser][0].answer_verdict(oid, True).state is OrderState.SETTLED

    assert chain_state(services, oid) is OrderState.SETTLED
    assert ledger.gains() == expect(**{winner: 2 * PRICE - 2 * fee}, proxy=fee, proxy2=fee, escrow=-2 * PRICE)
    assert trades.synced(oid) == (OrderState.SETTLED, OrderState.SETTLED)
    with pytest.raises(ForbiddenAction, match="wrong state"):
        wallets[loser][0].answer_verdict(oid, False)


@pytest.mark.parametrize("appellant", ["buyer", "seller"])
def test_an_appeal_is_decided_by_the_arbiter(services: Services, trades: Trades, appellant: str) -> None:
    """The verdict goes against the appellant, who rejects it; the arbiter rules for the
    appellant with the proxy at fault (the buyer appealing), or against it (the seller)."""
    oid = trades.orders[f"appeal-by-{appellant}"]
    fee = trades.local(trades.bctx, oid).fee
    world = services.chain.world
    wallets = {"buyer": (trades.buyer, trades.buyers), "seller": (trades.seller, trades.sellers)}
    other = "seller" if appellant == "buyer" else "buyer"
    staked = deposits(services)
    ledger = Ledger(services)

    rule(services, oid, appellant)  # the verdict goes against the appellant
    assert trades.done(wallets[other][1], oid) == [Task.ACCEPT_VERDICT]
    assert trades.done(wallets[appellant][1], oid) == []
    with pytest.raises(ContractRevert, match="agreement window open"):
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
    assert wallets[appellant][0].answer_verdict(oid, False).state is OrderState.DISPUTED  # the appeal
    assert world.escrow.status(oid).appealed
    with pytest.raises(ForbiddenAction, match="already agreed"):
        wallets[other][0].answer_verdict(oid, False)

    if appellant == "buyer":  # the arbiter overturns the verdict and finds the proxy at fault
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=True)
        assert ledger.gains() == expect(buyer=2 * PRICE + 2 * fee, escrow=-2 * PRICE - 2 * fee)
        assert deposits(services) == {name: staked[name] - fee for name in staked}
    else:  # the arbiter upholds it
        world.arbiter.rule(oid, seller_at_fault=True, proxy_at_fault=False)
        assert ledger.gains() == expect(buyer=2 * PRICE - 2 * fee, proxy=fee, proxy2=fee, escrow=-2 * PRICE)
        assert deposits(services) == staked
    assert world.escrow.status(oid).verdict is Verdict.SELLER_AT_FAULT
    assert trades.synced(oid) == (OrderState.SETTLED, OrderState.SETTLED)
    with pytest.raises(ContractRevert, match="wrong state"):
        world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=False)
    with pytest.raises(ForbiddenAction, match="wrong state"):
        trades.buyer.dispute(oid)


# --------------------------------------------------------------------------- storage


def storage_sections(kind: str, request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    """The seller's `[wallet.storage]` for `kind`, on the session's js-ipfs daemon or moto server."""
    if kind == "ipfs":
        daemon = request.getfixturevalue("ipfs_daemon")
        return {"wallet.storage": {"default": "ipfs"}, "wallet.storage.ipfs": {"api": daemon.api}}
    moto = request.getfixturevalue("moto")
    return {"wallet.storage": {"default": "s3"},
            "wallet.storage.s3": {"endpoint": moto.endpoint, "bucket": S3_BUCKET, "prefix": "wallet-e2e/",
                                  "part_size_mib": 5, "presign_seconds": 600}}  # fmt: skip


@pytest.mark.mariadb
@pytest.mark.parametrize("kind", ["ipfs", "s3"])
def test_a_file_trade_with_the_market_on_mariadb_and_the_data_on(
    services: Services, request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    require_mariadb()
    assert services.market.backend == "mariadb"
    sections = storage_sections(kind, request)
    if kind == "s3":
        config = load_config(services.home("seller", sections=sections) / "cpchain.toml")
        credential_store(config).set_s3(SELLER_S3, password("seller"))
    sctx, bctx = services.open("seller", sections=sections), services.open("buyer")
    seller, buyer = Seller(sctx), Buyer(bctx)
    original = random_file(tmp_path / f"survey-{kind}.csv", (1 << 20) + 4321)  # more than one 1 MiB chunk
    upload = seller.upload(original)
    locator = Locator.from_json(upload.locator)
    assert upload.storage_type == locator.type == kind
    if kind == "s3":  # the seller's bucket is private: no URL, and never a key, in what it keeps
        assert locator.params["url"] == "" and locator.params["bucket"] == S3_BUCKET
        assert SELLER_S3.secret_access_key not in upload.locator
    else:
        assert locator.params["api"] == request.getfixturevalue("ipfs_daemon").api
    title = f"Survey stored on {kind}"
    product = seller.publish(upload.id, title=title, price=PRICE, category="survey")
    assert product.market_hash in [r["market_hash"] for r in buyer.search(keyword=title)["results"]]
    assert buyer.show(product.market_hash).product.storage_type == kind

    oid = buyer.buy(product.market_hash).order_id
    sellers, buyers = Automation(sctx), Automation(bctx, Policy(auto_confirm=True))
    reports = drive(sellers, buyers, until=lambda: chain_state(services, oid) is OrderState.FINISHED)
    done = [task for r in reports for o, task in r.done if o == oid]
    assert done == [Task.SELLER_CONFIRM, Task.DELIVER, Task.RECEIVE, Task.BUYER_CONFIRM]
    purchase = bctx.db.purchase(bctx.contract, bctx.address, oid)
    assert purchase is not None and purchase.verified and purchase.decrypted
    assert Path(purchase.decrypted_path).read_bytes() == original.read_bytes()
    # The order's proxy fetched its copy from that storage (the only place the locator names).
    proxy = next(p for p in services.proxies.values() if p.address == purchase_proxy(bctx, oid))
    assert sha256_file(proxy.home / "proxy" / "server_root" / "orders" / f"{oid}.bin") == upload.data_hash
    sellers.step()
    assert state_in(sctx, oid) is OrderState.FINISHED and state_in(bctx, oid) is OrderState.FINISHED


def purchase_proxy(ctx: WalletContext, order_id: int) -> str:
    found = ctx.db.order(ctx.contract, ctx.address, order_id)
    assert found is not None
    return found.proxy


def state_in(ctx: WalletContext, order_id: int) -> OrderState:
    found = ctx.db.order(ctx.contract, ctx.address, order_id)
    assert found is not None
    return found.state


# --------------------------------------------------------------------------- timeouts (last: they move the clock)


def test_timeouts_refund_and_close_disputes(services: Services, trades: Trades) -> None:
    """Orders left without an answer: each wallet claims what the deadline gives it back."""
    world = services.chain.world
    windows = world.escrow.windows
    buyer, seller = trades.buyer, trades.seller
    listed = buyer.show(trades.local(trades.bctx, trades.orders["unruled"]).market_hash)
    # A seller that never confirms, and one that confirms but never hands the data to the proxy.
    unconfirmed = buyer.buy(listed.market_hash, time_allowed=600).order_id
    undelivered = buyer.buy(listed.market_hash, time_allowed=600).order_id
    assert seller.confirm(undelivered).state is OrderState.SELLER_CONFIRMED
    # A verdict the seller never answers (the buyer's automation agrees with it).
    unanswered, unruled, late = (trades.orders[k] for k in ("unanswered", "unruled", "arbiter-late"))
    rule(services, unanswered, "seller")
    assert trades.done(trades.buyers, unanswered) == [Task.ACCEPT_VERDICT]
    for oid in (unconfirmed, undelivered):
        with pytest.raises(ForbiddenAction, match="deadline not reached"):
            buyer.claim_timeout(oid)

    # ---- past the orders' deadlines and the disputes' agreement windows
    travel(services, windows.dispute + 60)
    with pytest.raises(ForbiddenAction, match="deadline passed"):
        seller.confirm(unconfirmed)
    with pytest.raises(ForbiddenAction, match="deadline passed"):
        seller.answer_verdict(unanswered, True)
    with pytest.raises(ContractRevert, match="deadline passed"):  # too late for the proxy too
        rule(services, unruled, "seller")
    with pytest.raises(ForbiddenAction, match="deadline not reached"):  # the arbiter's window is open
        buyer.claim_timeout(unruled)
    ledger = Ledger(services)
    assert buyer.claim_timeout(undelivered).state is OrderState.WITHDRAWN  # through the core
    assert trades.done(trades.sellers, unconfirmed) == []  # too late to confirm: left alone
    assert trades.done(trades.buyers, unconfirmed) == [Task.CLAIM_TIMEOUT]  # by the automation
    assert ledger.gains() == expect(buyer=2 * PRICE, seller=PRICE, escrow=-3 * PRICE)
    for oid in (unconfirmed, undelivered):
        assert trades.synced(oid) == (OrderState.WITHDRAWN, OrderState.WITHDRAWN)
    with pytest.raises(ForbiddenAction, match="wrong state"):
        buyer.claim_timeout(unconfirmed)

    # The arbiter rules on the dispute its proxy left unanswered (and finds the proxy at fault).
    fee = trades.local(trades.bctx, late).fee
    staked, ledger = deposits(services), Ledger(services)
    world.arbiter.rule(late, seller_at_fault=True, proxy_at_fault=True)
    assert ledger.gains() == expect(buyer=2 * PRICE + 2 * fee, escrow=-2 * PRICE - 2 * fee)
    assert deposits(services) == {name: staked[name] - fee for name in staked}
    assert trades.synced(late) == (OrderState.SETTLED, OrderState.SETTLED)

    # ---- past the arbiter's window: the verdict stands; without one, both are refunded
    travel(services, windows.arbiter)
    with pytest.raises(ContractRevert, match="arbiter window closed"):
        world.arbiter.rule(unruled, seller_at_fault=False, proxy_at_fault=False)
    ledger = Ledger(services)
    report = trades.sellers.step()  # refunded without a verdict: claimed; the verdict against it: not
    assert [(o, t) for o, t in report.done if o in (unanswered, unruled)] == [(unruled, Task.CLAIM_TIMEOUT)]
    assert trades.done(trades.buyers, unanswered) == [Task.CLAIM_TIMEOUT]  # the verdict for it stands
    assert chain_state(services, unanswered) is OrderState.SETTLED
    assert world.escrow.status(unanswered).verdict is Verdict.SELLER_AT_FAULT
    assert chain_state(services, unruled) is OrderState.WITHDRAWN
    fee = trades.local(trades.bctx, unanswered).fee
    assert ledger.gains() == expect(buyer=2 * PRICE - 2 * fee + PRICE, seller=PRICE, proxy=fee, proxy2=fee,
                                    escrow=-4 * PRICE)  # fmt: skip
    assert trades.synced(unanswered) == (OrderState.SETTLED, OrderState.SETTLED)
    assert trades.synced(unruled) == (OrderState.WITHDRAWN, OrderState.WITHDRAWN)
    assert trades.sellers.step().done == [] and trades.buyers.step().done == []  # nothing left to do

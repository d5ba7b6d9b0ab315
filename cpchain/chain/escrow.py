"""The escrow contract from Python: deployment, the registrar, reads, and one agent per role.

Owns the mapping between contract calls and typed Python values; the rules themselves are
in the contract (mirrored by cpchain.chain.lifecycle). Agents sign with a local account via
TxSender; reads need no account.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from cpchain.chain.artifact import load_artifact
from cpchain.chain.connection import checksum
from cpchain.chain.errors import ChainError, ContractNotDeployed, InvalidArgument, UnknownOrder
from cpchain.chain.lifecycle import Windows
from cpchain.chain.tx import TxSender
from cpchain.config import Config
from cpchain.fsutil import atomic_write_text
from cpchain.types import Order, OrderState, OrderStatus, OrderTerms, Verdict

ORDER_TUPLE = "(address,address,address,address,uint96,uint96,bytes32,bytes32,bytes32)"
UINT96_MAX = 2**96 - 1


@dataclass(frozen=True)
class EscrowParams:
    """Deployment-time constants of the contract (config section [chain.contract])."""

    min_proxy_deposit: int
    min_time_allowed: int
    max_time_allowed: int
    confirm_window: int
    dispute_window: int
    arbiter_window: int

    @classmethod
    def from_config(cls, config: Config) -> EscrowParams:
        section = config.section("chain.contract")
        return cls(**{name: int(section[name]) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Deployment:
    """Where the contract lives: written to the registrar file, read by every client."""

    address: ChecksumAddress
    chain_id: int
    block: int

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(address=checksum(data["address"]), chain_id=int(data["chain_id"]), block=int(data["block"]))
        except FileNotFoundError:
            raise ContractNotDeployed(f"{path}: no registrar file; run bin/deploy-contract") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ContractNotDeployed(f"{path}: malformed registrar file ({exc})") from None


def deploy(sender: TxSender, arbiter: str, params: EscrowParams) -> Deployment:
    """Deploy a new escrow from `sender`'s account with `arbiter` as the first arbiter."""
    artifact = load_artifact()
    factory = sender.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    ctor = factory.constructor(
        checksum(arbiter),
        params.min_proxy_deposit,
        params.min_time_allowed,
        params.max_time_allowed,
        params.confirm_window,
        params.dispute_window,
        params.arbiter_window,
    )
    receipt = sender.transact(ctor)  # type: ignore[arg-type]
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError("deployment receipt has no contract address")
    return Deployment(address=checksum(address), chain_id=sender.w3.eth.chain_id, block=receipt["blockNumber"])


def registrar_path(config: Config) -> Path:
    return config.path("chain.registrar_json")


def _bytes32(value: bytes | str, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    except (ValueError, TypeError):
        raise InvalidArgument(f"{name} must be 32 bytes or 64 hex digits") from None
    if len(raw) != 32:
        raise InvalidArgument(f"{name} must be 32 bytes, got {len(raw)}")
    return raw


def order_commitment(terms: OrderTerms) -> bytes:
    """What the contract stores for an order: keccak256(abi.encode(Order))."""
    return keccak(abi_encode([ORDER_TUPLE], [terms.as_tuple()]))


class Escrow:
    """Read access to one deployed escrow contract."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        if w3.eth.chain_id != deployment.chain_id:
            raise ContractNotDeployed(f"registrar names chain {deployment.chain_id}, node is chain {w3.eth.chain_id}")
        if not w3.eth.get_code(deployment.address):
            raise ContractNotDeployed(f"no contract code at {deployment.address}; run bin/deploy-contract")
        self.w3 = w3
        self.deployment = deployment
        self.address = deployment.address
        self.contract: Contract = w3.eth.contract(address=deployment.address, abi=load_artifact().abi)
        self._terms: dict[int, OrderTerms] = {}
        self._windows: Windows | None = None

    @classmethod
    def from_config(cls, w3: Web3, config: Config) -> Escrow:
        return cls(w3, Deployment.load(registrar_path(config)))

    # ------------------------------------------------------------ reads
    @property
    def windows(self) -> Windows:
        if self._windows is None:
            f = self.contract.functions
            self._windows = Windows(
                confirm=f.confirmWindow().call(), dispute=f.disputeWindow().call(), arbiter=f.arbiterWindow().call()
            )
        return self._windows

    def params(self) -> EscrowParams:
        f = self.contract.functions
        return EscrowParams(
            min_proxy_deposit=f.minProxyDeposit().call(),
            min_time_allowed=f.minTimeAllowed().call(),
            max_time_allowed=f.maxTimeAllowed().call(),
            confirm_window=f.confirmWindow().call(),
            dispute_window=f.disputeWindow().call(),
            arbiter_window=f.arbiterWindow().call(),
        )

    def arbiter(self) -> str:
        return str(self.contract.functions.arbiter().call())

    def num_orders(self) -> int:
        return int(self.contract.functions.numOrders().call())

    def now(self) -> int:
        """The latest block's timestamp: the clock the contract's deadlines use."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def terms(self, order_id: int) -> OrderTerms:
        """The order's terms, from its OrderPlaced event, checked against the stored commitment."""
        cached = self._terms.get(order_id)
        if cached is not None:
            return cached
        logs = self.contract.events.OrderPlaced().get_logs(
            argument_filters={"id": order_id}, from_block=self.deployment.block
        )
        commitment = bytes(self.contract.functions.orderCommitment(order_id).call())
        for log in logs:
            a = log["args"]
            terms = OrderTerms(
                buyer=a["buyer"],
                seller=a["seller"],
                proxy=a["proxy"],
                proxy2=a["proxy2"],
                price=a["price"],
                fee=a["fee"],
                desc_hash=bytes(a["descHash"]),
                data_hash=bytes(a["dataHash"]),
                buyer_key=bytes(a["buyerKey"]),
            )
            if order_commitment(terms) == commitment:
                self._terms[order_id] = terms
                return terms
        raise UnknownOrder(f"order {order_id} does not exist")

    def status(self, order_id: int) -> OrderStatus:
        raw = self.contract.functions.orderStatus(order_id).call()
        return OrderStatus(
            state=OrderState(raw[0]),
            end_time=raw[1],
            dispute_end=raw[2],
            verdict=Verdict(raw[3]),
            buyer_agreed=raw[4],
            seller_agreed=raw[5],
            appealed=raw[6],
            buyer_rated=raw[7],
            seller_rated=raw[8],
        )

    def order(self, order_id: int) -> Order:
        return Order(order_id, self.terms(order_id), self.status(order_id))

    def proxy_account(self, proxy: str) -> tuple[int, int]:
        """(deposit in wei, unlock time or 0 while bonded)."""
        deposit, unlock_at = self.contract.functions.proxyAccounts(checksum(proxy)).call()
        return int(deposit), int(unlock_at)

    def proxy_rating(self, proxy: str) -> tuple[int, int]:
        """(sum of ratings, number of ratings); the credit shown to buyers is sum / count."""
        total, count = self.contract.functions.proxyRatings(checksum(proxy)).call()
        return int(total), int(count)

    def deferred_payout(self, address: str) -> int:
        return int(self.contract.functions.deferredPayouts(checksum(address)).call())


class Agent:
    """Base of the role agents: an escrow plus a sender for the acting account."""

    def __init__(self, escrow: Escrow, sender: TxSender) -> None:
        self.escrow = escrow
        self.sender = sender
        self.address = sender.address
        self.fn = escrow.contract.functions

    def _order_call(self, name: str, order_id: int, *extra: Any, value: int = 0) -> TxReceipt:
        terms = self.escrow.terms(order_id)
        return self.sender.transact(self.fn[name](order_id, terms.as_tuple(), *extra), value=value)

    def claim_deferred(self) -> TxReceipt:
        return self.sender.transact(self.fn.claimDeferred())


class PartyAgent(Agent):
    """What buyers and sellers share: answering a verdict, timeouts, ratings."""

    def answer_verdict(self, order_id: int, agree: bool) -> TxReceipt:
        return self._order_call("answerVerdict", order_id, agree)

    def claim_timeout(self, order_id: int) -> TxReceipt:
        return self._order_call("claimTimeout", order_id)

    def rate_proxy(self, order_id: int, rating: int) -> TxReceipt:
        if not 1 <= rating <= 5:
            raise InvalidArgument("rating must be between 1 and 5")
        return self._order_call("rateProxy", order_id, rating)


class BuyerAgent(PartyAgent):
    def place_order(self, **terms: Any) -> int:
        """Pay `price` wei into escrow; returns the new order id (arguments as below)."""
        return self.place_order_with_receipt(**terms)[0]

    def place_order_with_receipt(
        self,
        *,
        desc_hash: bytes | str,
        data_hash: bytes | str,
        buyer_key: bytes | str,
        seller: str,
        proxy: str,
        proxy2: str | None = None,
        price: int,
        fee: int,
        time_allowed: int,
    ) -> tuple[int, TxReceipt]:
        """As place_order, also returning the transaction receipt."""
        if not 0 < price <= UINT96_MAX:
            raise InvalidArgument("price must be positive and below 2**96 wei")
        if not 0 <= fee <= UINT96_MAX:
            raise InvalidArgument("fee must be between 0 and 2**96 wei")
        if not 0 < time_allowed < 2**32:
            raise InvalidArgument("time allowed must be a positive number of seconds")
        fn = self.fn.placeOrder(
            _bytes32(desc_hash, "desc hash"),
            _bytes32(data_hash, "data hash"),
            _bytes32(buyer_key, "buyer key"),
            checksum(seller),
            checksum(proxy),
            checksum(proxy2 or proxy),
            fee,
            time_allowed,
        )
        receipt = self.sender.transact(fn, value=price)
        events = self.escrow.contract.events.OrderPlaced().process_receipt(receipt, errors=DISCARD)
        if not events:
            raise ChainError("placeOrder succeeded but emitted no OrderPlaced event")
        return int(events[0]["args"]["id"]), receipt

    def withdraw(self, order_id: int) -> TxReceipt:
        return self._order_call("buyerWithdraw", order_id)

    def confirm(self, order_id: int) -> TxReceipt:
        return self._order_call("buyerConfirmDeliver", order_id)

    def dispute(self, order_id: int) -> TxReceipt:
        return self._order_call("buyerDispute", order_id)


class SellerAgent(PartyAgent):
    def confirm(self, order_id: int) -> TxReceipt:
        """Accept the order by depositing its price (returned on a normal sale)."""
        price = self.escrow.terms(order_id).price
        return self._order_call("sellerConfirm", order_id, value=price)


class ProxyAgent(Agent):
    def deposit(self, amount: int) -> TxReceipt:
        if amount <= 0:
            raise InvalidArgument("deposit must be positive")
        return self.sender.transact(self.fn.proxyDeposit(), value=amount)

    def request_withdraw(self) -> TxReceipt:
        return self.sender.transact(self.fn.proxyRequestWithdraw())

    def withdraw(self, amount: int) -> TxReceipt:
        if amount <= 0:
            raise InvalidArgument("amount must be positive")
        return self.sender.transact(self.fn.proxyWithdraw(amount))

    def claim_fetched(self, order_id: int) -> TxReceipt:
        return self._order_call("proxyFetched", order_id)

    def claim_delivered(self, order_id: int, deliver_hash: bytes | str) -> TxReceipt:
        return self._order_call("proxyDelivered", order_id, _bytes32(deliver_hash, "deliver hash"))

    def process_dispute(self, order_id: int, seller_at_fault: bool) -> TxReceipt:
        return self._order_call("proxyProcessDispute", order_id, seller_at_fault)


class ArbiterAgent(Agent):
    def rule(self, order_id: int, *, seller_at_fault: bool, proxy_at_fault: bool) -> TxReceipt:
        return self._order_call("arbiterRule", order_id, seller_at_fault, proxy_at_fault)

    def propose_arbiter(self, new_arbiter: str) -> TxReceipt:
        return self.sender.transact(self.fn.proposeArbiter(checksum(new_arbiter)))

    def accept_arbiter(self) -> TxReceipt:
        return self.sender.transact(self.fn.acceptArbiter())

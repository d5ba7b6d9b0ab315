"""Payout edge cases on both backends: plain transfers, deferred payouts to contracts that
reject ether, claimDeferred; and the chain client's handling of refusals (TxSender).

The rejecting recipient is a hand-assembled forwarder (no compiler needed): called with
calldata it forwards the call and its value to the escrow (so it can act as a seller or a
proxy); called without calldata it accepts ether only when given at least `min_gas` gas, so
the escrow's 2300-gas pushes (_pay) fail while a full-gas claim (_send) succeeds — or, with
an unreachable `min_gas`, always fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from web3.contract import Contract

from cpchain.chain.connection import is_in_process, revert, snapshot
from cpchain.chain.errors import ChainError
from cpchain.chain.escrow import PartyAgent
from cpchain.chain.tx import TxSender
from cpchain.types import OrderState
from tests.chain.conftest import ETHER, World
from tests.chain.escrow.test_escrow_lifecycle import (
    DATA_HASH,
    FEE,
    PRICE,
    PROXY_DEPOSIT,
    TIME_ALLOWED,
    UNBONDING,
    Books,
    agent,
    assert_solvent,
    at,
    escrow_balance,
    one_event,
    order_in,
    place,
    refused,
    state,
    terms_of,
    travel,
)

ACCEPTS_WITH_GAS = 10_000  # above the 2300-gas stipend
NEVER = 2**32 - 1  # more gas than a block holds


# ---------------------------------------------------------------------------- the forwarder


def forwarder_initcode(target: str, min_gas: int) -> bytes:
    """EVM init code for the forwarder described in the module docstring."""
    code = bytearray()
    labels: dict[str, int] = {}
    fixups: list[tuple[int, str]] = []

    def op(*codes: int) -> None:
        code.extend(codes)

    def push_label(name: str) -> None:
        op(0x60)  # PUSH1
        fixups.append((len(code), name))
        op(0x00)

    def label(name: str) -> None:
        labels[name] = len(code)
        op(0x5B)  # JUMPDEST

    op(0x36)  # CALLDATASIZE
    push_label("forward")
    op(0x57)  # JUMPI
    op(0x63, *min_gas.to_bytes(4, "big"))  # PUSH4 min_gas
    op(0x5A, 0x10)  # GAS LT -> gas < min_gas
    push_label("reject")
    op(0x57, 0x00)  # JUMPI, STOP (accept the ether)
    label("reject")
    op(0x60, 0x00, 0x80, 0xFD)  # REVERT(0, 0)
    label("forward")
    op(0x36, 0x60, 0x00, 0x80, 0x37)  # CALLDATACOPY(0, 0, calldatasize)
    op(0x60, 0x00, 0x80, 0x36, 0x81, 0x34)  # retSize=0 retOffset=0 argsSize argsOffset=0 value
    op(0x73, *bytes.fromhex(target.removeprefix("0x")))  # PUSH20 target
    op(0x5A, 0xF1)  # GAS CALL
    op(0x3D, 0x60, 0x00, 0x80, 0x3E)  # RETURNDATACOPY(0, 0, returndatasize)
    push_label("ok")
    op(0x57)  # JUMPI
    op(0x3D, 0x60, 0x00, 0xFD)  # REVERT(0, returndatasize): bubble the escrow's refusal
    label("ok")
    op(0x3D, 0x60, 0x00, 0xF3)  # RETURN(0, returndatasize)
    for position, name in fixups:
        code[position] = labels[name]
    runtime = bytes(code)
    assert len(runtime) < 256
    # PUSH1 len DUP1 PUSH1 11 PUSH1 0 CODECOPY PUSH1 0 RETURN (11 bytes)
    return bytes([0x60, len(runtime), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3]) + runtime


def deploy_forwarder(world: World, min_gas: int) -> Contract:
    """A forwarder to the escrow, returned as a contract with the escrow's ABI at its address."""
    factory = world.w3.eth.contract(abi=[], bytecode=forwarder_initcode(world.escrow.address, min_gas))
    receipt = world.sender("other").transact(factory.constructor())  # type: ignore[arg-type]
    address = receipt["contractAddress"]
    assert address and world.w3.eth.get_code(address)
    return world.w3.eth.contract(address=address, abi=world.escrow.contract.abi)


def via(world: World, fwd: Contract, function: str, *args: Any, value: int = 0) -> Any:
    """Call the escrow through the forwarder (any account may drive it; `other` does)."""
    return world.sender("other").transact(fwd.functions[function](*args), value=value)


def fwd_balance(world: World, fwd: Contract) -> int:
    return int(world.w3.eth.get_balance(fwd.address))


def _transfer(world: World, to: str, gas: int) -> int:
    """A plain 1-wei transfer from `other` with an exact gas limit; returns the receipt status."""
    account, w3 = world.accounts["other"], world.w3
    tx = {
        "to": to, "value": 1, "gas": gas, "gasPrice": 2 * w3.eth.gas_price, "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address),
    }  # fmt: skip
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    return int(w3.eth.wait_for_transaction_receipt(tx_hash)["status"])


def test_forwarder_works(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    with refused("nothing to claim"):  # a refusal bubbles up through the forwarder
        via(world, fwd, "claimDeferred")
    assert _transfer(world, fwd.address, 21_000 + 2_000) == 0  # a stipend's worth of gas: rejected
    assert _transfer(world, fwd.address, 21_000 + 30_000) == 1  # plenty of gas: accepted
    assert fwd_balance(world, fwd) == 1
    never = deploy_forwarder(world, NEVER)
    assert _transfer(world, never.address, 1_000_000) == 0
    assert fwd_balance(world, never) == 0


# ---------------------------------------------------------------------------- plain transfers


def test_plain_ether_transfer_to_the_escrow_is_rejected(world: World) -> None:
    before = escrow_balance(world)
    with pytest.raises(ChainError):
        world.sender("other").send_value(world.escrow.address, 1)
    with pytest.raises(ChainError):
        world.sender("other").send_value(world.escrow.address, ETHER)
    # an unknown function with ether is rejected too (no fallback)
    fake = world.w3.eth.contract(
        address=world.escrow.address,
        abi=[{"type": "function", "name": "donate", "inputs": [], "outputs": [], "stateMutability": "payable"}],
    )
    with pytest.raises(ChainError):
        world.sender("other").transact(fake.functions.donate(), value=1)
    assert escrow_balance(world) == before
    assert_solvent(world)


def test_claim_deferred_with_nothing(world: World) -> None:
    for name in world.accounts:
        with refused("nothing to claim"):
            agent(world, PartyAgent, name).claim_deferred()
    order_in(world, OrderState.FINISHED)  # EOAs are always paid directly
    for name in world.accounts:
        assert world.escrow.deferred_payout(world.address(name)) == 0
        with refused("nothing to claim"):
            agent(world, PartyAgent, name).claim_deferred()


# ---------------------------------------------------------------------------- deferred payouts


def test_refund_to_a_rejecting_seller_is_deferred_then_claimed(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    books = Books(world)
    oid = place(world, books, seller=fwd.address)
    terms = terms_of(world, oid)
    receipt = via(world, fwd, "sellerConfirm", oid, terms.as_tuple(), value=PRICE)
    books.paid("other", receipt)
    assert one_event(world, receipt, "SellerConfirmed")["seller"] == fwd.address
    receipt = books.paid("buyer", world.buyer.withdraw(oid))
    assert state(world, oid) is OrderState.WITHDRAWN
    assert one_event(world, receipt, "PayoutDeferred") == {"to": fwd.address, "amount": PRICE}
    assert world.escrow.deferred_payout(fwd.address) == PRICE
    assert fwd_balance(world, fwd) == 0
    books.assert_deltas(other=-PRICE)  # the buyer got its refund directly
    assert escrow_balance(world) == books.escrow_start + PRICE
    assert_solvent(world, [fwd.address])

    receipt = books.paid("other", via(world, fwd, "claimDeferred"))
    assert one_event(world, receipt, "PayoutClaimed") == {"to": fwd.address, "amount": PRICE}
    assert world.escrow.deferred_payout(fwd.address) == 0
    assert fwd_balance(world, fwd) == PRICE
    assert escrow_balance(world) == books.escrow_start
    assert_solvent(world, [fwd.address])
    with refused("nothing to claim"):
        via(world, fwd, "claimDeferred")


def test_sale_to_a_rejecting_seller_still_completes(world: World) -> None:
    """One bad recipient cannot block an order: the proxies are paid, the seller's share waits."""
    fwd = deploy_forwarder(world, NEVER)
    books = Books(world)
    oid = place(world, books, seller=fwd.address, proxy2=world.address("proxy2"))
    books.paid("other", via(world, fwd, "sellerConfirm", oid, terms_of(world, oid).as_tuple(), value=PRICE))
    books.paid("proxy", world.proxy.claim_fetched(oid))
    books.paid("proxy", world.proxy.claim_delivered(oid, DATA_HASH))
    receipt = books.paid("buyer", world.buyer.confirm(oid))
    assert state(world, oid) is OrderState.FINISHED
    assert one_event(world, receipt, "PayoutDeferred") == {"to": fwd.address, "amount": 2 * PRICE - 2 * FEE}
    books.assert_deltas(buyer=-PRICE, other=-PRICE, proxy=FEE, proxy2=FEE)
    assert_solvent(world, [fwd.address])
    # this recipient can never take ether: the claim fails and the credit stays
    with refused("transfer failed"):
        via(world, fwd, "claimDeferred")
    assert world.escrow.deferred_payout(fwd.address) == 2 * PRICE - 2 * FEE
    assert_solvent(world, [fwd.address])


def test_settlement_to_a_rejecting_winner_is_deferred(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    oid = place(world, seller=fwd.address)
    via(world, fwd, "sellerConfirm", oid, terms_of(world, oid).as_tuple(), value=PRICE)
    world.proxy.claim_fetched(oid)
    world.proxy.claim_delivered(oid, DATA_HASH)
    world.buyer.dispute(oid)
    world.proxy.process_dispute(oid, False)  # buyer at fault: the seller (forwarder) wins
    world.buyer.answer_verdict(oid, False)
    receipt = world.arbiter.rule(oid, seller_at_fault=False, proxy_at_fault=True)
    assert one_event(world, receipt, "PayoutDeferred") == {"to": fwd.address, "amount": 2 * PRICE + FEE}
    assert_solvent(world, [fwd.address])
    via(world, fwd, "claimDeferred")
    assert fwd_balance(world, fwd) == 2 * PRICE + FEE
    assert_solvent(world, [fwd.address])


def test_fee_to_a_rejecting_proxy_is_deferred(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    via(world, fwd, "proxyDeposit", value=PROXY_DEPOSIT)
    assert world.escrow.proxy_account(fwd.address) == (PROXY_DEPOSIT, 0)
    oid = place(world, proxy=fwd.address, proxy2=world.address("proxy2"))
    terms = terms_of(world, oid)
    world.seller.confirm(oid)
    via(world, fwd, "proxyFetched", oid, terms.as_tuple())
    via(world, fwd, "proxyDelivered", oid, terms.as_tuple(), DATA_HASH)
    receipt = world.buyer.confirm(oid)
    assert one_event(world, receipt, "PayoutDeferred") == {"to": fwd.address, "amount": FEE}
    assert world.escrow.deferred_payout(fwd.address) == FEE
    assert_solvent(world, [fwd.address])
    via(world, fwd, "claimDeferred")
    assert fwd_balance(world, fwd) == FEE
    assert_solvent(world, [fwd.address])


def test_withdrawal_to_a_rejecting_proxy_fails_and_keeps_the_deposit(world: World) -> None:
    fwd = deploy_forwarder(world, NEVER)
    via(world, fwd, "proxyDeposit", value=PROXY_DEPOSIT)
    via(world, fwd, "proxyRequestWithdraw")
    travel(world, UNBONDING + 1)
    with refused("transfer failed"):
        via(world, fwd, "proxyWithdraw", PROXY_DEPOSIT)
    assert world.escrow.proxy_account(fwd.address)[0] == PROXY_DEPOSIT
    assert_solvent(world, [fwd.address])


def test_withdrawal_to_a_contract_proxy_with_full_gas(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    via(world, fwd, "proxyDeposit", value=PROXY_DEPOSIT)
    via(world, fwd, "proxyRequestWithdraw")
    travel(world, UNBONDING + 1)
    receipt = via(world, fwd, "proxyWithdraw", PROXY_DEPOSIT)
    assert one_event(world, receipt, "ProxyWithdrawn")["remaining"] == 0
    assert fwd_balance(world, fwd) == PROXY_DEPOSIT
    assert_solvent(world, [fwd.address])


def test_timeout_refund_to_a_rejecting_buyer_is_deferred(world: World) -> None:
    fwd = deploy_forwarder(world, ACCEPTS_WITH_GAS)
    receipt = via(
        world, fwd, "placeOrder", b"\x01" * 32, DATA_HASH, b"\x02" * 32, world.address("seller"),
        world.address("proxy"), world.address("proxy"), FEE, TIME_ALLOWED, value=PRICE,
    )  # fmt: skip
    oid = one_event(world, receipt, "OrderPlaced")["id"]
    assert terms_of(world, oid).buyer == fwd.address
    world.seller.confirm(oid)
    travel(world, TIME_ALLOWED + 1)
    receipt = world.seller.claim_timeout(oid)  # the seller exits; the buyer's refund waits
    assert one_event(world, receipt, "PayoutDeferred") == {"to": fwd.address, "amount": PRICE}
    assert_solvent(world, [fwd.address])
    via(world, fwd, "claimDeferred")
    assert fwd_balance(world, fwd) == PRICE
    assert_solvent(world, [fwd.address])


# ---------------------------------------------------------------------------- client (TxSender) behaviour


def _wrong_seller_call(world: World) -> tuple[TxSender, Any, int]:
    oid = place(world)
    terms = terms_of(world, oid)
    fn = world.escrow.contract.functions.sellerConfirm(oid, terms.as_tuple())
    return world.sender("buyer"), fn, terms.price


def test_estimated_refusal_has_the_contract_reason(world: World) -> None:
    sender, fn, price = _wrong_seller_call(world)
    with refused("only seller"):
        sender.transact(fn, value=price)


def test_sender_call_decodes_the_refusal_reason(world: World) -> None:
    """Regression: in-process, eth-tester reports eth_call reverts as 'execution reverted: b"..."'
    (the repr of the raw data); TxSender.call used to pass that repr through as the reason."""
    sender, fn, price = _wrong_seller_call(world)
    with refused("only seller"):
        sender.call(fn, value=price)


def test_mined_refusal_keeps_the_contract_reason(world: World) -> None:
    """Regression: with an explicit gas limit there is no estimate, so the refused transaction
    is mined and TxSender must replay it to find the reason. It used to replay at block N-1:
    in-process that gave the undecoded bytes repr, on anvil (--prune-history) the state of
    N-1 is gone, so it raised TransactionFailed with no reason."""
    sender, fn, price = _wrong_seller_call(world)
    with refused("only seller"):
        sender.transact(fn, value=price, gas=300_000)


def test_refusal_mined_at_the_deadline_keeps_the_contract_reason(world: World) -> None:
    """Regression, the realistic race: estimated just before the deadline, mined at it (forced
    here by an explicit gas limit). A replay at block N-1 runs at N-1's time, before the
    deadline, where the call succeeds: the refusal was reported without a reason."""
    oid = place(world)
    at(world, world.escrow.status(oid).end_time)
    with refused("deadline passed"):
        world.sender("seller").transact(
            world.escrow.contract.functions.sellerConfirm(oid, terms_of(world, oid).as_tuple()),
            value=PRICE, gas=300_000,
        )  # fmt: skip
    assert state(world, oid) is OrderState.CREATED


def test_sender_recovers_after_chain_revert(world: World) -> None:
    """conftest reverts the chain after every test but keeps the agents' TxSenders: a sender
    must take its nonce from the node, never from a local cache that only grows (an earlier
    TxSender did; anvil then queued the transaction forever)."""
    sender = TxSender(world.w3, world.accounts["other"], timeout=2, poll_interval=0.05)
    to = Account.create().address
    snap = snapshot(world.w3)
    sender.send_value(to, 1)
    revert(world.w3, snap)
    try:
        sender.send_value(to, 2)  # the account's next nonce is 0 again
    finally:
        if not is_in_process(world.w3):  # anvil queued it: drop it before it can ever be mined
            world.w3.provider.make_request("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
    assert world.w3.eth.get_balance(to) == 2

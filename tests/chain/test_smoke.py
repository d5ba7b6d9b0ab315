from __future__ import annotations

from tests.chain.conftest import World


def test_normal_sale_smoke(world: World) -> None:
    oid = world.place()
    world.seller.confirm(oid)
    world.proxy.claim_fetched(oid)
    world.proxy.claim_delivered(oid, b"\xda" * 32)
    world.buyer.confirm(oid)
    assert world.escrow.status(oid).state.name == "FINISHED"

"""Chain layer: the escrow contract's artifact, connections, locally signed transactions,
role agents, event following, the local node and the faucet.

Owns everything that talks to the chain; must not touch the market, proxies or storage.
"""

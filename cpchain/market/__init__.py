"""Market service (Django + DRF): product listings, accounts, search, chain indexer.

Owns the market database; must not hold private keys or talk to proxies.
"""

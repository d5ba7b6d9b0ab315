"""Relay proxy (Twisted): fetches sellers' data, attests delivery on chain, serves buyers.

Owns the proxy's trade database and served files; must not read wallet or market storage.
"""

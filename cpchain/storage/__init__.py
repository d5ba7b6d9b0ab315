"""Storage plugins (local, proxy, IPFS, S3): stream encrypted files to and from backends.

Owns locators and transfer code; must not decide who may fetch what (that is the caller's policy).
"""

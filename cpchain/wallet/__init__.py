"""Wallet core, CLI and Qt front end: accounts, trades and automation for one user.

Owns the user's local database and keystores; must not run services for others.
"""

"""Wallet core, CLI and Qt front end: accounts, trades and automation for one user.

The headless core, shared by the front ends:

- `accounts`: keystores and X25519 encryption keys (create, import, export, list, switch, unlock);
- `db`: the local SQLite database (uploads, products, orders, purchases) and its migrations;
- `context`: one unlocked wallet and the clients it acts through (`open_wallet`);
- `orders`: the account's orders mirrored from chain events, and the actions both parties share;
- `seller` / `buyer`: the provider and consumer flows of a file trade;
- `rules`: the wallet's decisions as pure functions; `automation`: the loop that applies them;
- `errors`: the typed errors every front end catches (`WalletError`).

Owns the user's local database and keystores; must not run services for others.
"""

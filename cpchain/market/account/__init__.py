"""Market accounts: signed-nonce login, expiring tokens, the caller's own profile."""

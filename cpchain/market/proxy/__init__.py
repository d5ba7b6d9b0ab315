"""The proxy registry: proxies announce themselves with a signed request; deposit and credit
come from the chain indexer, never from the proxy."""

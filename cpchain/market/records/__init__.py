"""Chain records: the indexer's view of the escrow contract (orders, their states, the
events that moved them) and its checkpoint. Written only by the indexer, read by the API."""

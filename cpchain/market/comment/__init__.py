"""Reviews: one per completed purchase (as recorded by the chain indexer), rating 1-5, with
the product's rating summary updated in the same transaction."""

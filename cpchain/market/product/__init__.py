"""Products: signed listings, their visibility, covers, follows, and search."""

"""PDash: an open data-sharing platform (wallet, market, proxy network, escrow chain).

Each sub-package owns one component; shared types live in :mod:`cpchain.types`.
"""

__version__ = "0.1.0"

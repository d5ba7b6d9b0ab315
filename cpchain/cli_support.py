"""What every command-line entry point shares: logging setup and one-line errors.

Owns turning expected failures into one line on stderr and an exit code; a traceback is
only ever shown for a bug (an exception type nobody anticipated), and then with --debug.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from cpchain.config import Config, ConfigError

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, OSError)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input or environment, not a bug."""
    from cpchain.chain.errors import ChainError
    from cpchain.crypto.errors import CryptoError
    from cpchain.services import ServiceError

    return (*EXPECTED_ERRORS, ChainError, CryptoError, ServiceError)


def setup_logging(config: Config, level: str | None = None) -> None:
    """Configure logging from the [logging] section (to a file when `logging.file` is set)."""
    section = config.section("logging")
    handler: logging.Handler = (
        logging.FileHandler(config.path("logging.file")) if section["file"] else logging.StreamHandler(sys.stderr)
    )
    logging.basicConfig(
        level=(level or section["level"]).upper(), format=section["format"], handlers=[handler], force=True
    )


def run_cli(name: str, main: Callable[[], int | None]) -> None:
    """Run `main`, printing `name: message` for expected failures; exit with its code."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except expected_errors() as exc:
        if os.environ.get("CPCHAIN_DEBUG"):
            raise
        print(f"{name}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code or 0)

"""`market-manage`: Django's manage.py for the market (migrate, createsuperuser, reindex, ...)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpchain.market.settings")
    from django.core.management import execute_from_command_line

    from cpchain.cli_support import run_cli

    run_cli("market-manage", lambda: execute_from_command_line(sys.argv))


if __name__ == "__main__":
    main()

"""`market-start` and `market-sync-chain` entry points.

market-start applies migrations (and the cache table and admin static files), then replaces
itself with gunicorn, a production WSGI server, on the configured host and port.
"""

from __future__ import annotations

import argparse
import os
import sys

from cpchain.cli_support import run_cli
from cpchain.config import load_config


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpchain.market.settings")
    import django

    django.setup()


def prepare() -> None:
    """Bring the database up to date; safe to run while another instance serves."""
    _django_setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)


def start(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="market-start", description="Serve the PDash market with gunicorn.")
    parser.add_argument("--host", help="override market.host")
    parser.add_argument("--port", type=int, help="override market.server_port")
    parser.add_argument("--workers", type=int, help="override market.workers")
    args = parser.parse_args(argv)
    config = load_config()
    market = config.section("market")
    host = args.host or market["host"]
    port = args.port if args.port is not None else market["server_port"]
    workers = args.workers or market["workers"]
    prepare()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    argv_out = [
        gunicorn,
        "cpchain.market.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--keep-alive",
        "30",
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
        "--max-requests",
        "100000",
        # gunicorn 27 opens a control socket at one fixed path in $HOME, shared by every market
        # on the machine (tests run several); the market does not use it.
        "--no-control-socket",
        # An access log only at DEBUG: without one gunicorn skips formatting a line per request.
        *(["--access-logfile", "-"] if config.get("logging.level").upper() == "DEBUG" else []),
        "--error-logfile",
        "-",
        "--log-level",
        str(config.get("logging.level")).lower(),
    ]
    os.execv(gunicorn, argv_out)
    return 0  # not reached


def sync_chain(argv: list[str] | None = None) -> int:
    _django_setup()
    from django.core.management import call_command

    call_command("sync_chain", *(argv if argv is not None else sys.argv[1:]))
    return 0


def main_start() -> None:
    run_cli("market-start", start)


def main_sync_chain() -> None:
    run_cli("market-sync-chain", sync_chain)

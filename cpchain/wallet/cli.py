"""`pdash`: the PDash command line. Today it carries the `stream` commands (open, end,
publish, subscribe); the wallet's account, trade and market commands join it with the
wallet core.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="pdash", description="The PDash command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "stream",
        add_help=False,
        help="open and end stream channels, publish sealed records, subscribe (see: pdash stream --help)",
    )
    args, _ = parser.parse_known_args(argv[:1])
    if args.command == "stream":
        from cpchain.proxy.streams import client

        client.main(argv[1:], prog="pdash stream")


if __name__ == "__main__":
    main()

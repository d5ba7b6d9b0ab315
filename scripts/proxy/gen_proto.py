#!/usr/bin/env python3
"""Regenerate cpchain/proxy/proto/trade_pb2.py and trade_pb2.pyi from trade.proto.

Uses grpc_tools.protoc (pinned in requirements.txt), so the committed code matches the
pinned protobuf runtime. `--check` exits non-zero when the committed files are stale.
Run: .venv/bin/python scripts/proxy/gen_proto.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Compiled relative to the repository root, so the descriptor is registered under its
# unique repository path rather than a bare "trade.proto".
PROTO = Path("cpchain/proxy/proto/trade.proto")
PROTO_DIR = ROOT / PROTO.parent
OUTPUTS = ("trade_pb2.py", "trade_pb2.pyi")


def generate() -> dict[str, bytes]:
    """The generated files, by name, without touching the committed ones."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}", str(ROOT / PROTO)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {PROTO}")
        return {name: (Path(out) / PROTO.parent / name).read_bytes() for name in OUTPUTS}


def stale_files() -> list[str]:
    """Names of committed files that differ from what the generator produces now."""
    return [name for name, data in generate().items() if not (PROTO_DIR / name).is_file()
            or (PROTO_DIR / name).read_bytes() != data]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale: {', '.join(stale)}; run scripts/proxy/gen_proto.py", file=sys.stderr)
            return 1
        return 0
    for name, data in generate().items():
        (PROTO_DIR / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Rebuild cpchain/chain/assets/PdashEscrow.json from contracts/PdashEscrow.sol.

Uses py-solc-x with a native `solc` when one is on PATH at the pinned version, otherwise
the pinned npm `solc` (solcjs, the official wasm build) behind scripts/chain/solc-shim.js.
Run: .venv/bin/python scripts/chain/compile.py [--check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import solcx
from solcx.wrapper import get_solc_version

from cpchain.chain.artifact import (
    ARTIFACT_PATH,
    CONTRACT_NAME,
    EVM_VERSION,
    OPTIMIZER_RUNS,
    REPO_ROOT,
    SOLC_VERSION,
    SOURCE_PATH,
    source_digest,
)

SHIM = REPO_ROOT / "scripts" / "chain" / "solc-shim.js"


class CompileError(Exception):
    """The compiler is missing, the wrong version, or rejected the source."""


def find_solc() -> str:
    """A solc binary of the pinned version: native if installed, else the solcjs shim."""
    native = shutil.which("solc")
    if native and str(get_solc_version(native)) == SOLC_VERSION:
        return native
    if not (REPO_ROOT / "node_modules" / "solc").is_dir():
        raise CompileError("no solc found: run bin/setup (installs npm solc)")
    return str(SHIM)


def compile_contract(source: str, solc_binary: str | None = None) -> dict[str, Any]:
    """Compile the source and return the artifact dict that is committed."""
    binary = solc_binary or find_solc()
    version = get_solc_version(binary, with_commit_hash=True)
    if str(get_solc_version(binary)) != SOLC_VERSION:
        raise CompileError(f"solc {version} found, {SOLC_VERSION} required")
    standard_input = {
        "language": "Solidity",
        "sources": {f"{CONTRACT_NAME}.sol": {"content": source}},
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "viaIR": True,
            "metadata": {"bytecodeHash": "none"},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    try:
        output = solcx.compile_standard(standard_input, solc_binary=binary)
    except solcx.exceptions.SolcError as exc:
        raise CompileError(str(exc).splitlines()[0]) from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(errors[0].get("formattedMessage", str(errors[0])))
    contract = output["contracts"][f"{CONTRACT_NAME}.sol"][CONTRACT_NAME]
    return {
        "contractName": CONTRACT_NAME,
        "compiler": str(version).split("+")[0],
        "evmVersion": EVM_VERSION,
        "optimizerRuns": OPTIMIZER_RUNS,
        "sourceSha256": source_digest(source),
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed artifact is stale")
    args = parser.parse_args(argv)
    try:
        fresh = render(compile_contract(SOURCE_PATH.read_text(encoding="utf-8")))
    except CompileError as exc:
        print(f"compile: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = ARTIFACT_PATH.read_text(encoding="utf-8") if ARTIFACT_PATH.exists() else ""
        if current != fresh:
            print(f"compile: {ARTIFACT_PATH} is stale; run scripts/chain/compile.py", file=sys.stderr)
            return 1
        print("compile: artifact is fresh")
        return 0
    ARTIFACT_PATH.write_text(fresh, encoding="utf-8")
    print(f"compile: wrote {ARTIFACT_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The committed contract artifact must match contracts/PdashEscrow.sol."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from cpchain.chain.artifact import ARTIFACT_PATH, EVM_VERSION, SOLC_VERSION, SOURCE_PATH, load_artifact, source_digest

ROOT = Path(__file__).resolve().parents[2]


def compile_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pdash_compile", ROOT / "scripts" / "chain" / "compile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["pdash_compile"] = module
    spec.loader.exec_module(module)
    return module


def test_artifact_records_the_current_source() -> None:
    artifact = load_artifact()
    assert artifact.source_sha256 == source_digest(SOURCE_PATH.read_text(encoding="utf-8")), (
        "contracts/PdashEscrow.sol changed: run .venv/bin/python scripts/chain/compile.py"
    )
    assert artifact.compiler == SOLC_VERSION
    assert artifact.evm_version == EVM_VERSION == "cancun"


def test_recompiling_reproduces_the_committed_artifact_byte_for_byte() -> None:
    """Uses the pinned npm solc through the shim (or a native solc of the same version)."""
    module = compile_script()
    fresh = module.render(module.compile_contract(SOURCE_PATH.read_text(encoding="utf-8")))
    assert fresh == ARTIFACT_PATH.read_text(encoding="utf-8")


def test_a_changed_source_is_detected_as_stale() -> None:
    module = compile_script()
    changed = SOURCE_PATH.read_text(encoding="utf-8").replace("deadline passed", "deadline over")
    artifact = module.compile_contract(changed)
    assert artifact["sourceSha256"] != load_artifact().source_sha256
    assert artifact["bytecode"] != load_artifact().bytecode


def test_shim_speaks_solc_command_line() -> None:
    import subprocess

    shim = ROOT / "scripts" / "chain" / "solc-shim.js"
    version = subprocess.run([str(shim), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Version: {SOLC_VERSION}+" in version
    bad = subprocess.run([str(shim), "--bin", "x.sol"], capture_output=True, text=True)
    assert bad.returncode == 2 and "only --version and --standard-json" in bad.stderr
    request = {"language": "Solidity", "sources": {"a.sol": {"content": "contract {"}}, "settings": {}}
    out = subprocess.run(
        [str(shim), "--standard-json"], input=json.dumps(request), capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["errors"][0]["severity"] == "error"  # stdout is pure JSON

"""The compiled escrow contract as committed in the package: ABI, bytecode, provenance.

Owns reading the artifact; compiling it is scripts/chain/compile.py's job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_NAME = "PdashEscrow"
SOURCE_PATH = REPO_ROOT / "contracts" / f"{CONTRACT_NAME}.sol"
ARTIFACT_PATH = Path(__file__).with_name("assets") / f"{CONTRACT_NAME}.json"

SOLC_VERSION = "0.8.37"
# solc 0.8.37 defaults to "osaka"; cancun runs on anvil and on the in-process chain.
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 20000


def source_digest(source: str) -> str:
    """SHA-256 of the Solidity source, recorded in the artifact to detect staleness."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ContractArtifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str
    evm_version: str
    source_sha256: str


@lru_cache(maxsize=4)
def load_artifact(path: Path = ARTIFACT_PATH) -> ContractArtifact:
    data = json.loads(path.read_text(encoding="utf-8"))
    return ContractArtifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        compiler=data["compiler"],
        evm_version=data["evmVersion"],
        source_sha256=data["sourceSha256"],
    )

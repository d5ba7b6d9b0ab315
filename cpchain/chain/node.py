"""Running a local chain node: geth in dev mode when installed, otherwise anvil from npm.

Owns the node process and funding the operator account at first start; must not deploy
contracts (bin/deploy-contract does). Anvil runs with no pre-funded well-known accounts
(`--accounts 0`) and `--prune-history` (without it anvil writes gigabytes under ~/.foundry);
its state is kept in data_dir/anvil-state.json across restarts.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3
from web3.types import Wei

from cpchain.chain.artifact import REPO_ROOT
from cpchain.chain.connection import checksum, connect_url
from cpchain.chain.errors import ChainError, NodeUnreachable
from cpchain.config import Config

OPERATOR_FUNDS_WEI = 10**31  # as the original genesis: 10^13 CPC for the operator/faucet


@dataclass(frozen=True)
class NodeSpec:
    host: str
    port: int
    chain_id: int
    data_dir: Path
    block_time: int = 0

    @classmethod
    def from_config(cls, config: Config) -> NodeSpec:
        node = config.section("chain.node")
        return cls(
            host=node["host"],
            port=int(node["port"]),
            chain_id=int(node["chain_id"]),
            data_dir=config.path("chain.node.data_dir"),
            block_time=int(node["block_time"]),
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def anvil_binary() -> str | None:
    local = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    return str(local) if local.exists() else shutil.which("anvil")


def node_kind() -> str:
    """'geth' when a geth binary is on PATH, else 'anvil'."""
    return "geth" if shutil.which("geth") else "anvil"


def node_command(spec: NodeSpec, kind: str | None = None) -> list[str]:
    kind = kind or node_kind()
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "geth":
        cmd = [
            "geth", "--dev", "--datadir", str(spec.data_dir / "geth"),
            "--http", "--http.addr", spec.host, "--http.port", str(spec.port),
            "--http.api", "eth,net,web3", "--networkid", str(spec.chain_id),
            "--nodiscover", "--maxpeers", "0", "--ipcdisable",
        ]  # fmt: skip
        if spec.block_time:
            cmd += ["--dev.period", str(spec.block_time)]
        return cmd
    anvil = anvil_binary()
    if anvil is None:
        raise ChainError("anvil not found: run bin/setup")
    cmd = [
        anvil, "--host", spec.host, "--port", str(spec.port), "--chain-id", str(spec.chain_id),
        "--accounts", "0", "--prune-history", "256", "--state", str(spec.data_dir / "anvil-state.json"),
        "--silent",
    ]  # fmt: skip
    if spec.block_time:
        cmd += ["--block-time", str(spec.block_time)]
    return cmd


def wait_ready(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> Web3:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise NodeUnreachable(f"chain node exited with code {proc.returncode} before answering")
        try:
            return connect_url(url, timeout=2)
        except NodeUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def client_kind(w3: Web3) -> str:
    """'anvil' or 'geth', from the node's own client version string."""
    return "anvil" if str(w3.client_version).lower().startswith("anvil") else "geth"


def fund_operator(w3: Web3, operator: str, kind: str) -> bool:
    """Give the operator its genesis funds once (a fresh chain); True if it was funded now."""
    operator = checksum(operator)
    if w3.eth.get_balance(operator) > 0:
        return False
    if kind == "anvil":
        w3.provider.make_request("anvil_setBalance", [operator, hex(OPERATOR_FUNDS_WEI)])  # type: ignore[arg-type]
        return True
    # geth --dev: its only funded account is the node's ephemeral dev account.
    dev = w3.eth.accounts[0]
    tx = w3.eth.send_transaction({"from": dev, "to": operator, "value": Wei(w3.eth.get_balance(dev) // 2)})
    w3.eth.wait_for_transaction_receipt(tx)
    return True

"""The local testnet: `bin/pdash-testnet up|down|status`, everything on 127.0.0.1.

Owns starting, stopping and reporting the local services in order; each service's own
logic lives in its component. Today it runs the chain node, the escrow contract, the
faucet, the market (SQLite, search in the database) and its chain indexer; the proxies and
the broker join as their components land.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from cpchain.chain.cli import deploy_contract, init_chain
from cpchain.chain.connection import checksum, connect
from cpchain.chain.errors import ChainError
from cpchain.chain.escrow import registrar_path
from cpchain.chain.node import NodeSpec
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, load_config
from cpchain.services import Service

BIN = Path(sys.executable).parent


def services(config: Config) -> list[Service]:
    """The testnet's services in start order."""
    run_dir = config.rc_dir / "run"
    spec = NodeSpec.from_config(config)
    faucet = config.section("chain.faucet")
    market = config.section("market")
    return [
        Service("chain", [str(BIN / "eth-run-geth")], run_dir, port=spec.port, host=spec.host),
        Service("faucet", [str(BIN / "charge-server")], run_dir, port=int(faucet["port"]), host=faucet["host"]),
        Service("market", [str(BIN / "market-start")], run_dir, port=int(market["server_port"]), host=market["host"]),
        Service("indexer", [str(BIN / "market-sync-chain")], run_dir),
    ]


def _wait_funded(config: Config, address: str, timeout: float = 30.0) -> None:
    w3 = connect(config)
    deadline = time.monotonic() + timeout
    while w3.eth.get_balance(checksum(address)) == 0:
        if time.monotonic() > deadline:
            raise ChainError(f"operator {address} was not funded by the chain node")
        time.sleep(0.2)


def up(config: Config) -> list[str]:
    lines = []
    operator = init_chain(config)["operator"]
    chain, faucet, market, indexer = services(config)
    pid, fresh = chain.start()
    _wait_funded(config, operator)
    lines.append(_row(chain, pid, fresh, f"http://{chain.host}:{chain.port}"))
    deployment, deployed = deploy_contract(config)
    lines.append(
        f"{'contract':8} {'deployed' if deployed else 'existing':8} {deployment.address} "
        f"(chain {deployment.chain_id}; registrar {registrar_path(config)})"
    )
    for service in (faucet, market):
        pid, fresh = service.start()
        lines.append(_row(service, pid, fresh, f"http://{service.host}:{service.port}"))
    pid, fresh = indexer.start()
    lines.append(_row(indexer, pid, fresh, "market chain indexer"))
    lines.append(f"{'operator':8} {'account':8} {operator} (deployer, arbiter, faucet)")
    lines.append(f"logs and pid files in {chain.run_dir}")
    return lines


def _row(service: Service, pid: int, fresh: bool, url: str) -> str:
    return f"{service.name:8} {'started' if fresh else 'running':8} {url} (pid {pid})"


def down(config: Config) -> list[str]:
    lines = []
    for service in reversed(services(config)):
        lines.append(f"{service.name:8} {'stopped' if service.stop() else 'not running'}")
    return lines


def status(config: Config) -> tuple[list[str], bool]:
    lines, healthy = [], True
    for service in services(config):
        pid = service.pid()
        healthy &= pid is not None
        state = f"running (pid {pid})" if pid else "stopped"
        where = f"http://{service.host}:{service.port}" if service.port else "market chain indexer"
        lines.append(f"{service.name:8} {state} {where}")
    return lines, healthy


def main_impl() -> int:
    parser = argparse.ArgumentParser(prog="pdash-testnet", description="Run the local PDash testnet.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    args = parser.parse_args()
    if args.config:
        # The services read their config the same way: name the file for them too.
        os.environ["CPCHAIN_HOME_CONFIG_PATH"] = str(Path(args.config).resolve())
    config = load_config()
    setup_logging(config)
    if args.command == "up":
        print("\n".join(up(config)))
        return 0
    if args.command == "down":
        print("\n".join(down(config)))
        return 0
    lines, healthy = status(config)
    print("\n".join(lines))
    return 0 if healthy else 3


def main() -> None:
    run_cli("pdash-testnet", main_impl)

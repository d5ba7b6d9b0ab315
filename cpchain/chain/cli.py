"""Entry points of the chain bin/ scripts: init the chain, run the node, deploy, faucet.

Owns argument parsing and wiring config to the chain modules; every failure a user can
cause ends in one line on stderr (cpchain.cli_support.run_cli), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from cpchain.chain import node
from cpchain.chain.connection import checksum, connect
from cpchain.chain.errors import ChainError, ContractNotDeployed
from cpchain.chain.escrow import Deployment, Escrow, EscrowParams, deploy, registrar_path
from cpchain.chain.faucet import Faucet, FaucetPolicy, make_server
from cpchain.chain.tx import TxSender
from cpchain.cli_support import run_cli, setup_logging
from cpchain.config import Config, ConfigError, load_config
from cpchain.crypto import keystore

log = logging.getLogger("cpchain.chain")


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if getattr(args, "config", None) else load_config()
    setup_logging(config)
    return config


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    return parser


def write_password_file(path: Path) -> None:
    """A fresh random password, readable by the owner only (created, never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")


def keystore_file(path: Path) -> Path:
    """`path` itself, or the single keystore file inside the directory `path`."""
    if path.is_dir():
        found = sorted(path.glob("UTC--*"))
        if len(found) != 1:
            raise ConfigError(f"{path}: expected exactly one keystore file, found {len(found)}")
        return found[0]
    if not path.exists():
        raise ConfigError(f"{path}: keystore not found (run bin/eth-init-chain)")
    return path


def unlock_account(keystore_path: Path, password_file: Path) -> LocalAccount:
    """Unlock a keystore with the password from a file (services start unattended)."""
    password = keystore.read_password_file(password_file)
    return keystore.unlock(keystore.load_keystore(keystore_file(keystore_path)), password)


def operator_account(config: Config) -> LocalAccount:
    return unlock_account(config.path("chain.operator_keystore"), config.path("chain.operator_password_file"))


def _sender(config: Config, account: LocalAccount) -> TxSender:
    return TxSender(
        connect(config),
        account,
        timeout=float(config.get("chain.tx_timeout")),
        poll_interval=float(config.get("chain.poll_interval")),
        confirmations=int(config.get("chain.confirmations")),
    )


# ---------------------------------------------------------------- bin/eth-init-chain


def init_chain(config: Config, reset: bool = False) -> dict[str, Any]:
    """Create the chain's data directory and the operator account (idempotent)."""
    spec = node.NodeSpec.from_config(config)
    if reset:
        state = spec.data_dir / "anvil-state.json"
        state.unlink(missing_ok=True)
        registrar_path(config).unlink(missing_ok=True)
    spec.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ks_path = config.path("chain.operator_keystore")
    pw_path = config.path("chain.operator_password_file")
    created = False
    if not pw_path.exists():
        write_password_file(pw_path)
    if not ks_path.exists() or (ks_path.is_dir() and not any(ks_path.glob("UTC--*"))):
        account = keystore.create_account(keystore.read_password_file(pw_path))
        keystore.save_keystore(ks_path, account)
        created = True
    address = keystore.load_keystore(keystore_file(ks_path))["address"]
    return {
        "operator": checksum("0x" + str(address).removeprefix("0x")),
        "data_dir": str(spec.data_dir),
        "created": created,
    }


def init_chain_main() -> int:
    parser = _parser("Create the local chain's data directory and operator account.")
    parser.add_argument("--reset", action="store_true", help="forget the chain state and the deployment")
    args = parser.parse_args()
    info = init_chain(_config(args), reset=args.reset)
    state = "created" if info["created"] else "existing"
    print(f"operator account {info['operator']} ({state}); data in {info['data_dir']}")
    return 0


# ---------------------------------------------------------------- bin/eth-run-geth


def run_node_main() -> int:
    parser = _parser("Run the local chain node (geth --dev if installed, else anvil) in the foreground.")
    args = parser.parse_args()
    config = _config(args)
    info = init_chain(config)
    spec = node.NodeSpec.from_config(config)
    kind = node.node_kind()
    proc = subprocess.Popen(node.node_command(spec, kind), start_new_session=True)
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        w3 = node.wait_ready(spec.url, proc=proc)
        if node.fund_operator(w3, info["operator"], kind):
            log.info("funded operator %s", info["operator"])
        print(f"{kind} chain {spec.chain_id} serving on {spec.url}", flush=True)
    except ChainError:
        proc.terminate()
        proc.wait()
        raise
    code = proc.wait()
    # Asked to stop: the node ending on our forwarded signal is a clean exit.
    return 0 if stopping else code


def fund_operator_main() -> int:
    parser = _parser("Fund the operator account from a fresh dev node (anvil or geth --dev).")
    args = parser.parse_args()
    config = _config(args)
    operator = operator_account(config).address
    w3 = node.wait_ready(config.require("chain.local_provider_addr"))
    funded = node.fund_operator(w3, operator, node.client_kind(w3))
    print(f"operator {operator} {'funded' if funded else 'already funded'}")
    return 0


# ---------------------------------------------------------------- bin/deploy-contract


def deploy_contract(config: Config, force: bool = False) -> tuple[Deployment, bool]:
    """Deploy unless the registrar already names a live deployment on this chain."""
    sender = _sender(config, operator_account(config))
    path = registrar_path(config)
    if not force and path.exists():
        try:
            existing = Escrow(sender.w3, Deployment.load(path))
            return existing.deployment, False
        except ContractNotDeployed as stale:
            log.info("registered contract is not usable (%s); deploying a new one", stale)
    arbiter = config.get("chain.contract.arbiter") or sender.address
    deployment = deploy(sender, arbiter, EscrowParams.from_config(config))
    deployment.save(path)
    return deployment, True


def deploy_main() -> int:
    parser = _parser("Deploy the escrow contract and write its address to the registrar file.")
    parser.add_argument("--force", action="store_true", help="deploy a new contract even if one is registered")
    args = parser.parse_args()
    config = _config(args)
    deployment, fresh = deploy_contract(config, force=args.force)
    state = "deployed" if fresh else "already deployed"
    print(f"escrow {state} at {deployment.address} (chain {deployment.chain_id}, block {deployment.block}); "
          f"registrar {registrar_path(config)}")  # fmt: skip
    return 0


# ---------------------------------------------------------------- bin/charge-server


def faucet_account(config: Config) -> LocalAccount:
    ks = config.get("chain.faucet.keystore")
    if not ks:
        return operator_account(config)
    return unlock_account(config.path("chain.faucet.keystore"), config.path("chain.faucet.password_file"))


def charge_server_main() -> int:
    parser = _parser("Run the faucet: a web form and a JSON endpoint handing out test coins.")
    args = parser.parse_args()
    config = _config(args)
    section = config.section("chain.faucet")
    sender = _sender(config, faucet_account(config))
    policy = FaucetPolicy(
        amount_wei=int(section["amount_ether"]) * 10**18,
        per_address_seconds=int(section["rate_limit_seconds"]),
        max_requests_per_minute=int(section["max_requests_per_minute"]),
    )
    server = make_server(Faucet(sender, policy), section["host"], int(section["port"]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"faucet {sender.address} serving on http://{section['host']}:{section['port']}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def main_init() -> None:
    run_cli("eth-init-chain", init_chain_main)


def main_node() -> None:
    run_cli("eth-run-geth", run_node_main)


def main_fund() -> None:
    run_cli("eth-fund-operator", fund_operator_main)


def main_deploy() -> None:
    run_cli("deploy-contract", deploy_main)


def main_faucet() -> None:
    run_cli("charge-server", charge_server_main)

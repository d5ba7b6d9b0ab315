"""The chain bin/ scripts as a user runs them: subprocesses of bin/<script> in a temp CPCHAIN_HOME.

Bad input must end in exactly one line on stderr and exit code 1, never a traceback. The good
path runs a real anvil through bin/eth-run-geth on free ports, deploys, and funds through the
faucet (bin/charge-server).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from cpchain.chain.cli import init_chain
from cpchain.chain.connection import connect_url
from cpchain.config import load_config
from cpchain.services import port_open
from tests.chain.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
SCRIPTS = ["eth-init-chain", "eth-run-geth", "deploy-contract", "charge-server"]
ADDRESS_RE = r"0x[0-9a-fA-F]{40}"


def script_env(**extra: str) -> dict[str, str]:
    """The test's environment (its temp CPCHAIN_HOME included), without debug tracebacks."""
    env = dict(os.environ)
    env.pop("CPCHAIN_DEBUG", None)
    env.update(extra)
    return env


def run(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / script), *args], env=env or script_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_one_line_failure(result: subprocess.CompletedProcess[str], script: str, *fragments: str) -> str:
    """Exit code 1, exactly one line on stderr starting with the script's name, no traceback."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"{script}: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert result.returncode == 1, (result.returncode, result.stderr)
    return line


def write_config(home: Path, text: str) -> Path:
    path = home / "cpchain.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def operator_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised home (operator keystore + password file), made once: scrypt is slow."""
    home = tmp_path_factory.mktemp("operator-template")
    init_chain(load_config(env={"CPCHAIN_HOME": str(home)}))
    return home


@pytest.fixture
def initialised_home(isolated_home: Path, operator_template: Path) -> Path:
    shutil.copytree(operator_template / "chain", isolated_home / "chain", dirs_exist_ok=True)
    return isolated_home


# ---------------------------------------------------------------- bad input: one line, exit 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_key_names_the_key_and_the_file(isolated_home: Path, script: str) -> None:
    path = write_config(isolated_home, "[chain.node]\nprot = 8545\n")
    assert_one_line_failure(run(script), script, "unknown key 'chain.node.prot'", str(path))


def test_wrong_type_names_the_key_and_the_types(isolated_home: Path) -> None:
    path = write_config(isolated_home, '[chain.node]\nport = "8545"\n')
    assert_one_line_failure(run("eth-run-geth"), "eth-run-geth", "'chain.node.port'", "int", "str", str(path))


def test_invalid_toml(isolated_home: Path) -> None:
    path = write_config(isolated_home, "[chain\nmode = local\n")
    assert_one_line_failure(run("eth-init-chain"), "eth-init-chain", "invalid TOML", str(path))


def test_config_that_is_not_utf8(isolated_home: Path) -> None:
    """A config file in Latin-1 (a user's editor) is bad input, not a bug."""
    path = isolated_home / "cpchain.toml"
    path.write_bytes('[chain.contract]\narbiter = "café"\n'.encode("latin-1"))
    assert_one_line_failure(run("eth-init-chain"), "eth-init-chain", str(path))


def test_invalid_logging_level(isolated_home: Path) -> None:
    path = write_config(isolated_home, '[logging]\nlevel = "LOUD"\n')
    assert_one_line_failure(run("eth-init-chain"), "eth-init-chain", "logging.level", str(path))


def test_config_path_env_pointing_to_a_missing_file(isolated_home: Path) -> None:
    missing = isolated_home / "nowhere" / "cpchain.toml"
    env = script_env(CPCHAIN_HOME_CONFIG_PATH=str(missing))
    assert_one_line_failure(run("deploy-contract", env=env), "deploy-contract", str(missing), "not found")


def test_remote_mode_without_a_provider(isolated_home: Path) -> None:
    path = write_config(isolated_home, '[chain]\nmode = "remote"\n')
    assert_one_line_failure(run("deploy-contract"), "deploy-contract", "chain.remote_provider_addr", str(path))


def test_deploy_before_init_names_the_missing_password_file(isolated_home: Path) -> None:
    line = assert_one_line_failure(run("deploy-contract"), "deploy-contract", "operator.password")
    assert "No such file" in line


def test_deploy_when_no_node_listens(initialised_home: Path) -> None:
    port = free_port()
    write_config(initialised_home, f'[chain]\nlocal_provider_addr = "http://127.0.0.1:{port}"\n')
    started = time.monotonic()
    result = run("deploy-contract")
    assert_one_line_failure(result, "deploy-contract", f"127.0.0.1:{port}", "not answering")
    assert time.monotonic() - started < 20
    assert not (initialised_home / "registrar.json").exists()


def test_deploy_with_a_world_readable_password_file(initialised_home: Path) -> None:
    password_file = initialised_home / "chain" / "operator.password"
    password_file.chmod(0o644)
    line = assert_one_line_failure(run("deploy-contract"), "deploy-contract", str(password_file), "0644")
    assert "chmod 600" in line or "group or others" in line
    assert password_file.read_text().strip() not in line  # the password itself is never echoed


def test_charge_server_with_a_wrong_operator_password(initialised_home: Path) -> None:
    password_file = initialised_home / "chain" / "operator.password"
    password_file.write_text("not-the-password\n")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    faucet_port = free_port()
    write_config(initialised_home, f"[chain.faucet]\nport = {faucet_port}\n")
    line = assert_one_line_failure(run("charge-server"), "charge-server", "wrong password")
    assert "not-the-password" not in line
    assert not port_open("127.0.0.1", faucet_port)


# ---------------------------------------------------------------- bin/eth-init-chain


def test_init_chain_creates_the_operator_and_is_idempotent(isolated_home: Path) -> None:
    first = run("eth-init-chain")
    assert first.returncode == 0, first.stderr
    match = re.fullmatch(rf"operator account ({ADDRESS_RE}) \(created\); data in (.+)\n", first.stdout)
    assert match, first.stdout
    address, data_dir = match.group(1), Path(match.group(2))
    assert data_dir == isolated_home / "chain" and data_dir.is_dir()

    keystore_dir = isolated_home / "chain" / "operator"
    (keystore_file,) = keystore_dir.glob("UTC--*")
    assert stat.S_IMODE(keystore_file.stat().st_mode) == 0o600
    assert json.loads(keystore_file.read_text())["address"].lower() == address[2:].lower()
    password_file = isolated_home / "chain" / "operator.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text()

    second = run("eth-init-chain")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout.replace("(created)", "(existing)")
    assert list(keystore_dir.glob("UTC--*")) == [keystore_file]
    assert password_file.read_text() == password

    # --reset forgets the registrar and the chain state, never the operator account.
    registrar = isolated_home / "registrar.json"
    registrar.write_text('{"address": "0x000000000000000000000000000000000000dEaD"}')
    state = data_dir / "anvil-state.json"
    state.write_text("{}")
    reset = run("eth-init-chain", "--reset")
    assert reset.returncode == 0, reset.stderr
    assert f"operator account {address} (existing)" in reset.stdout
    assert not registrar.exists() and not state.exists()
    assert list(keystore_dir.glob("UTC--*")) == [keystore_file]
    assert password_file.read_text() == password


# ---------------------------------------------------------------- the good path on a real anvil


class Running:
    """A bin script running in the background, its output read line by line."""

    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.script = script
        self.proc = subprocess.Popen(
            [str(BIN / script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True).start()

    def _pump(self, stream: object, is_stdout: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if is_stdout:
                self.lines.put(line)
            else:
                self.stderr.append(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise AssertionError(
                    f"{self.script} did not print /{pattern}/ (exit {self.proc.poll()}): {''.join(self.stderr)}"
                )
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            match = re.search(pattern, line)
            if match:
                return match

    def descendants(self) -> list[int]:
        """Pids of this process's descendants (the node wrapper and anvil itself)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill_all(self) -> None:
        """Teardown: leave nothing running, whatever state the test stopped in."""
        if self.proc.poll() is None:
            pids = self.descendants()
            try:
                self.terminate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def background() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in reversed(started):
        item.kill_all()


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie waiting for its parent to reap it does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def post_json(url: str, payload: dict[str, str]) -> dict[str, str]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        result: dict[str, str] = json.loads(resp.read())
        return result


def test_run_node_deploy_and_fund_through_the_faucet(initialised_home: Path, background: list[Running]) -> None:
    chain_port, faucet_port = free_port(), free_port()
    write_config(
        initialised_home,
        f'[chain]\nlocal_provider_addr = "http://127.0.0.1:{chain_port}"\n'
        f"[chain.node]\nport = {chain_port}\n"
        f"[chain.faucet]\nport = {faucet_port}\n",
    )
    env = script_env()
    chain_url = f"http://127.0.0.1:{chain_port}"

    node = Running("eth-run-geth", env)
    background.append(node)
    node.wait_for(rf"anvil chain 1234 serving on {re.escape(chain_url)}$")
    w3 = connect_url(chain_url)
    assert w3.eth.chain_id == 1234

    deployed = run("deploy-contract", env=env)
    assert deployed.returncode == 0, deployed.stderr
    match = re.search(rf"escrow deployed at ({ADDRESS_RE}) \(chain 1234", deployed.stdout)
    assert match, deployed.stdout
    contract = match.group(1)
    assert w3.eth.get_code(contract) != b""  # type: ignore[arg-type]
    assert (initialised_home / "registrar.json").exists()

    again = run("deploy-contract", env=env)
    assert again.returncode == 0, again.stderr
    assert f"escrow already deployed at {contract}" in again.stdout

    faucet = Running("charge-server", env)
    background.append(faucet)
    faucet.wait_for(rf"faucet {ADDRESS_RE} serving on http://127\.0\.0\.1:{faucet_port}$")
    user = Account.create().address
    result = post_json(f"http://127.0.0.1:{faucet_port}/api/fund", {"address": user})
    assert result["address"] == user
    assert w3.eth.get_balance(user) == 100 * 10**18  # the default amount_ether  # type: ignore[arg-type]
    assert w3.eth.get_transaction_receipt(result["tx_hash"])["status"] == 1  # type: ignore[arg-type]

    assert faucet.terminate() == 0
    assert not port_open("127.0.0.1", faucet_port)
    anvil_pids = node.descendants()
    assert anvil_pids
    node_code = node.terminate()
    assert not port_open("127.0.0.1", chain_port)
    deadline = time.monotonic() + 3
    while any(alive(pid) for pid in anvil_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in anvil_pids if alive(pid)], "anvil outlived eth-run-geth"
    assert "Traceback" not in "".join(node.stderr + faucet.stderr)

    # A restart keeps the chain: the contract and the user's coins are still there.
    restarted = Running("eth-run-geth", env)
    background.append(restarted)
    restarted.wait_for(rf"serving on {re.escape(chain_url)}$")
    still = run("deploy-contract", env=env)
    assert still.returncode == 0, still.stderr
    assert f"escrow already deployed at {contract}" in still.stdout
    assert connect_url(chain_url).eth.get_balance(user) == 100 * 10**18  # type: ignore[arg-type]
    restarted_code = restarted.terminate()
    assert not port_open("127.0.0.1", chain_port)
    # A stop the user asked for (SIGTERM) is a clean exit, as for bin/charge-server.
    assert (node_code, restarted_code) == (0, 0)

"""`pdash stream publish|subscribe` and `bin/kafka-utils`, as a user runs them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from eth_account.signers.local import LocalAccount

from cpchain.crypto.keystore import import_private_key, save_keystore
from cpchain.proxy.streams.wire import StreamLocator
from tests.chain.conftest import free_port
from tests.streams.conftest import StreamProc, open_channel, sell

ROOT = Path(__file__).resolve().parents[2]
PDASH = Path(sys.executable).with_name("pdash")


def account_files(directory: Path, name: str, account: LocalAccount) -> list[str]:
    password = secrets.token_urlsafe(12)
    save_keystore(directory / f"{name}.json", import_private_key(account.key.hex(), password, fast_kdf=True))
    (directory / f"{name}.password").write_text(password)
    os.chmod(directory / f"{name}.password", 0o600)
    return ["--keystore", str(directory / f"{name}.json"), "--password-file", str(directory / f"{name}.password")]


def run(args: list[str], config: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")}
    env["CPCHAIN_HOME_CONFIG_PATH"] = str(config)
    result = subprocess.run([str(PDASH), "stream", *args], input=stdin,
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_publish_and_subscribe_from_the_command_line(server: StreamProc, tmp_path: Path) -> None:
    chain = server.chain
    channel, key = open_channel(server)
    sale = sell(server, channel, key)
    config = tmp_path / "cpchain.toml"
    config.write_text(f'[core]\nrc_dir = "{tmp_path}"\n[chain]\nmode = "local"\n'
                      f'local_provider_addr = "{chain.anvil.url}"\nregistrar_json = "{chain.registrar}"\n')  # fmt: skip
    (tmp_path / "locator.json").write_text(StreamLocator(server.endpoint, channel).to_json())
    (tmp_path / "stream.key").write_text(key.hex())
    (tmp_path / "buyer.x25519").write_text(sale.buyer_secret.hex())
    lines = [{"sensor": i, "temp": 20 + i / 10} for i in range(30)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    seller = account_files(tmp_path, "seller", chain.world.accounts["seller"])
    buyer = account_files(tmp_path, "buyer", chain.world.accounts["buyer"])
    locator = ["--locator", f"@{tmp_path / 'locator.json'}"]

    published = run([*seller, "publish", *locator, "--key-file", str(tmp_path / "stream.key"),
                     "--file", str(tmp_path / "data.jsonl")], config)  # fmt: skip
    assert "published up to seq 29" in published.stderr
    state = tmp_path / "cursor.json"
    subscribe = [*buyer, "subscribe", *locator, "--order", str(sale.order_id), "--state", str(state)]
    out = run([*subscribe, "--x25519-key-file", str(tmp_path / "buyer.x25519"), "--idle-timeout", "1.5"], config)
    assert [json.loads(line) for line in out.stdout.splitlines()] == lines  # the key came through the order
    assert json.loads(state.read_text())["seq"] == 30

    more = [{"sensor": i} for i in range(30, 40)]
    run([*seller, "publish", *locator, "--key-file", str(tmp_path / "stream.key"), "--rest"], config,
        stdin="".join(json.dumps(line) + "\n" for line in more))  # fmt: skip
    out = run([*subscribe, "--key-file", str(tmp_path / "stream.key"), "--rest", "--idle-timeout", "1"], config)
    assert [json.loads(line) for line in out.stdout.splitlines()] == more  # resumed from the cursor
    assert json.loads(state.read_text())["seq"] == 40


def test_kafka_utils_runs_the_dev_broker(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "cpchain.toml").write_text(f'[proxy]\nkafka_brokers = ["127.0.0.1:{port}"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")}
    env["CPCHAIN_HOME"] = str(tmp_path)

    def kafka_utils(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "bin" / "kafka-utils"), command, "--dev"], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip

    assert kafka_utils("status").returncode == 1
    started = kafka_utils("start")
    try:
        assert started.returncode == 0 and f"tansu on 127.0.0.1:{port}" in started.stdout, started.stderr
        assert "in-memory" in started.stdout
        status = kafka_utils("status")
        assert status.returncode == 0 and "running" in status.stdout
        assert "running" in kafka_utils("start").stdout  # idempotent
    finally:
        assert "stopped" in kafka_utils("stop").stdout
    assert kafka_utils("status").returncode == 1
    assert (tmp_path / "kafka" / "kafka.log").exists()

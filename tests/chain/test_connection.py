"""Connecting by mode, address validation, and the dev-chain clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.chain.connection import checksum, connect, dev_bank, in_process_chain, time_travel
from cpchain.chain.errors import InvalidAddress, NodeUnreachable
from cpchain.chain.tx import TxSender
from cpchain.config import load_config
from tests.chain.conftest import free_port


def test_test_mode_connects_every_caller_to_one_in_process_chain(tmp_path: Path) -> None:
    (tmp_path / "cpchain.toml").write_text('[chain]\nmode = "test"\n')
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    first, second = connect(config), connect(config)
    TxSender(first, dev_bank(first), poll_interval=0.01).send_value("0x" + "42" * 20, 7)
    assert second.eth.get_balance("0x" + "42" * 20) == 7


def test_local_mode_with_no_node_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "cpchain.toml").write_text(f'[chain]\nlocal_provider_addr = "http://127.0.0.1:{port}"\n')
    with pytest.raises(NodeUnreachable, match=f"127.0.0.1:{port} is not answering"):
        connect(load_config(env={"CPCHAIN_HOME": str(tmp_path)}))


@pytest.mark.parametrize("bad", ["", "0x12", "hello", "0x" + "g" * 40, "0xAbCdEf" + "0" * 34, 12])
def test_checksum_refuses_what_is_not_an_address(bad: object) -> None:
    with pytest.raises(InvalidAddress):
        checksum(bad)  # type: ignore[arg-type]


def test_checksum_accepts_lowercase_and_checksummed() -> None:
    lower = "0x52908400098527886e0f7030069857d2e4169ee7"
    assert checksum(lower) == "0x52908400098527886E0F7030069857D2E4169EE7"
    assert checksum(checksum(lower)) == checksum(lower)


def test_time_travel_moves_the_in_process_clock_forward() -> None:
    w3 = in_process_chain()
    before = w3.eth.get_block("latest")["timestamp"]
    time_travel(w3, 3600)
    assert w3.eth.get_block("latest")["timestamp"] >= before + 3600

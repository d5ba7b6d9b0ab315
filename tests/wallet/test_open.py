"""Opening a wallet from its config: typed errors before anything is contacted but the chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.config import Config, load_config
from cpchain.wallet.accounts import AccountStore
from cpchain.wallet.context import open_wallet
from cpchain.wallet.errors import ChainUnavailable, NoCurrentAccount, UnknownAccount, WrongPassword
from tests.chain.conftest import free_port


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "cpchain.toml"
    path.write_text(
        f'[core]\nrc_dir = "{tmp_path}"\n[chain]\nmode = "local"\n'
        f'local_provider_addr = "http://127.0.0.1:{free_port()}"\n'
    )
    return load_config(path)


def test_no_account_wrong_password_unknown_account(config: Config) -> None:
    with pytest.raises(NoCurrentAccount):
        open_wallet(config, "pw")
    store = AccountStore(config.path("account.keystore_dir"), fast_kdf=True)
    info = store.create("pw")
    with pytest.raises(WrongPassword):
        open_wallet(config, "not pw")
    with pytest.raises(UnknownAccount):
        open_wallet(config, "pw", "0x" + "12" * 20)
    with pytest.raises(ChainUnavailable, match="not answering"):  # unlocked, but no node listens
        open_wallet(config, "pw", info.address)
    assert not config.path("wallet.dbpath").exists()  # nothing half-opened

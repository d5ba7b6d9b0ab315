"""Configuration: merge order, environment variables, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpchain.config import ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_without_a_user_file(tmp_path: Path) -> None:
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    assert config.source is None
    assert config.get("chain.mode") == "local"
    assert config.rc_dir == tmp_path
    assert config.path("wallet.dbpath") == tmp_path / "wallet" / "wallet.db"


def test_user_file_is_deep_merged_over_defaults(tmp_path: Path) -> None:
    write(tmp_path / "cpchain.toml", '[chain]\nmode = "test"\n[chain.node]\nport = 9545\n')
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    assert config.get("chain.mode") == "test"
    assert config.get("chain.node.port") == 9545
    assert config.get("chain.node.host") == "127.0.0.1"  # untouched sibling keeps its default
    assert config.get("chain.contract.dispute_window") == 86400


def test_config_path_variable_wins_over_home(tmp_path: Path) -> None:
    write(tmp_path / "home" / "cpchain.toml", "[chain]\nconfirmations = 1\n")
    other = write(tmp_path / "elsewhere.toml", "[chain]\nconfirmations = 7\n")
    env = {"CPCHAIN_HOME": str(tmp_path / "home"), "CPCHAIN_HOME_CONFIG_PATH": str(other)}
    config = load_config(env=env)
    assert config.get("chain.confirmations") == 7
    assert config.source == other
    assert config.rc_dir == tmp_path / "home"


def test_explicit_rc_dir_and_tilde_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "h" / "cpchain.toml", '[core]\nrc_dir = "~/data"\n')
    assert load_config(env={"CPCHAIN_HOME": str(tmp_path / "h")}).rc_dir == tmp_path / "data"


def test_integers_are_accepted_for_float_keys(tmp_path: Path) -> None:
    write(tmp_path / "cpchain.toml", "[chain]\npoll_interval = 1\n")
    value = load_config(env={"CPCHAIN_HOME": str(tmp_path)}).get("chain.poll_interval")
    assert value == 1.0 and isinstance(value, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[chain]\nmoode = 'test'\n", "unknown key 'chain.moode'"),
        ("[chian]\nmode = 'test'\n", "unknown key 'chian'"),
        ("[chain]\nconfirmations = 'two'\n", "key 'chain.confirmations' must be int, got str"),
        ("[chain]\nconfirmations = true\n", "key 'chain.confirmations' must be int, got bool"),
        ("chain = 3\n", "key 'chain' must be a table"),
        ("[chain]\nmode = 'falcon'\n", "key 'chain.mode' must be one of test, local, remote"),
        ("[chain]\nmode = 'remote'\n", "missing key 'chain.remote_provider_addr'"),
        ("[chain\nmode = 1\n", "invalid TOML"),
    ],
)
def test_bad_files_fail_with_one_line_naming_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "cpchain.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    text_of_error = str(info.value)
    assert message in text_of_error
    assert str(path) in text_of_error
    assert "\n" not in text_of_error


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(env={"CPCHAIN_HOME_CONFIG_PATH": str(tmp_path / "nope.toml")})


def test_missing_and_empty_keys_are_named(tmp_path: Path) -> None:
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"missing key 'chain\.nothing'"):
        config.get("chain.nothing")
    with pytest.raises(ConfigError, match=r"missing key 'chain\.remote_provider_addr' \(it is empty\)"):
        config.require("chain.remote_provider_addr")


def test_overrides_are_validated_like_files(tmp_path: Path) -> None:
    config = load_config(env={"CPCHAIN_HOME": str(tmp_path)})
    assert config.with_overrides({"chain": {"mode": "test"}}).get("chain.mode") == "test"
    assert config.get("chain.mode") == "local"  # the original is unchanged
    with pytest.raises(ConfigError, match=r"unknown key 'chain\.bogus'"):
        config.with_overrides({"chain": {"bogus": 1}})


def test_example_file_documents_every_key(tmp_path: Path) -> None:
    """cpchain.toml.example must parse, and name exactly the keys the defaults have."""
    import tomllib

    from cpchain.config import DEFAULTS_PATH

    root = Path(__file__).resolve().parents[2]
    example = tomllib.loads((root / "cpchain.toml.example").read_text(encoding="utf-8"))
    defaults = tomllib.loads(DEFAULTS_PATH.read_text(encoding="utf-8"))

    def keys(table: dict[str, object], prefix: str = "") -> set[str]:
        found = set()
        for key, value in table.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    assert keys(example) == keys(defaults)
    write(tmp_path / "cpchain.toml", (root / "cpchain.toml.example").read_text(encoding="utf-8"))
    load_config(env={"CPCHAIN_HOME": str(tmp_path)})  # the example itself is a valid config

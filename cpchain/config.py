"""Configuration: packaged defaults deep-merged with the user's cpchain.toml.

Owns finding, merging and validating the config; must not start anything or read secrets.
The user file is `$CPCHAIN_HOME_CONFIG_PATH`, else `$CPCHAIN_HOME/cpchain.toml`, else
`~/.cpchain/cpchain.toml`. Every key the user sets must exist in the defaults with the same
type, so a typo fails at start with one line naming the key and the file.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULTS_PATH = Path(__file__).with_name("cpchain.toml")
CHAIN_MODES = ("test", "local", "remote")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A config file is unreadable or a key is wrong or missing; the message is one line."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _merge(base: dict[str, Any], override: Mapping[str, Any], source: Path, prefix: str = "") -> None:
    """Merge `override` into `base` in place, refusing keys and types the defaults lack."""
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{dotted}'")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key '{dotted}' must be a table")
            _merge(default, value, source, dotted + ".")
        elif not _same_kind(default, value):
            raise ConfigError(f"{source}: key '{dotted}' must be {type(default).__name__}, got {type(value).__name__}")
        else:
            base[key] = float(value) if isinstance(default, float) else value


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CPCHAIN_HOME_CONFIG_PATH"):
        return Path(env["CPCHAIN_HOME_CONFIG_PATH"]).expanduser()
    return home_dir(env) / "cpchain.toml"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CPCHAIN_HOME") or "~/.cpchain").expanduser()


@dataclass(frozen=True)
class Config:
    data: dict[str, Any]
    source: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{self.where}: missing key '{dotted}'")
            node = node[part]
        return node

    def require(self, dotted: str) -> Any:
        """Like get, but an empty string or list counts as missing."""
        value = self.get(dotted)
        if value in ("", []):
            raise ConfigError(f"{self.where}: missing key '{dotted}' (it is empty)")
        return value

    def section(self, dotted: str) -> dict[str, Any]:
        value = self.get(dotted)
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: key '{dotted}' is not a table")
        return value

    @property
    def where(self) -> str:
        return str(self.source) if self.source else str(DEFAULTS_PATH)

    @property
    def rc_dir(self) -> Path:
        configured = self.get("core.rc_dir")
        return Path(configured).expanduser() if configured else home_dir(self.env)

    def path(self, dotted: str) -> Path:
        """A path key, resolved against rc_dir when relative."""
        value = Path(str(self.require(dotted))).expanduser()
        return value if value.is_absolute() else self.rc_dir / value

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with `overrides` merged in (validated like a user file)."""
        data = copy.deepcopy(self.data)
        _merge(data, overrides, self.source or DEFAULTS_PATH)
        _validate(data, self.source or DEFAULTS_PATH)
        return Config(data, self.source, self.env)


def _validate(data: dict[str, Any], source: Path) -> None:
    mode = data["chain"]["mode"]
    if mode not in CHAIN_MODES:
        raise ConfigError(f"{source}: key 'chain.mode' must be one of {', '.join(CHAIN_MODES)}, got '{mode}'")
    if mode == "remote" and not data["chain"]["remote_provider_addr"]:
        raise ConfigError(f"{source}: missing key 'chain.remote_provider_addr' (required when chain.mode is remote)")
    if data["core"]["mode"] not in ("wallet", "proxy", "market"):
        raise ConfigError(f"{source}: key 'core.mode' must be wallet, proxy or market")
    if str(data["logging"]["level"]).upper() not in LOG_LEVELS:
        raise ConfigError(f"{source}: key 'logging.level' must be one of {', '.join(LOG_LEVELS)}")


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults merged with the user file (`path`, or the one the environment names).

    A missing user file is fine (defaults apply) unless it was named explicitly.
    """
    env = dict(os.environ if env is None else env)
    data = _read_toml(DEFAULTS_PATH)
    explicit = path is not None or bool(env.get("CPCHAIN_HOME_CONFIG_PATH"))
    source = Path(path).expanduser() if path is not None else user_config_path(env)
    if source.exists():
        _merge(data, _read_toml(source), source)
    elif explicit:
        raise ConfigError(f"{source}: config file not found")
    else:
        source = None  # type: ignore[assignment]
    _validate(data, source or DEFAULTS_PATH)
    return Config(data, source, env)

"""The proxy's settings, read once from the [proxy] section of the configuration.

Owns turning config keys into typed values and paths (relative ones under rc_dir) and the
operator's fetch policy; must not open files, sockets or the keystore.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpchain.config import Config, ConfigError
from cpchain.storage.policy import FetchPolicy


@dataclass(frozen=True)
class Ports:
    control: int
    file: int
    stream_ws: int
    stream_http: int
    dht: int
    tracker_link: int

    def as_record(self) -> dict[str, int]:
        """The ports a DHT record advertises (keys as in cpchain.proxy.discovery)."""
        return {
            "control": self.control,
            "file": self.file,
            "stream_ws": self.stream_ws,
            "stream_http": self.stream_http,
        }


@dataclass(frozen=True)
class ProxySettings:
    host: str
    public_host: str
    ports: Ports
    db_path: Path
    server_root: Path
    keystore: Path
    password_file: Path
    tls_cert: Path
    tls_key: Path
    max_frame_bytes: int
    request_timeout: float
    policy: FetchPolicy
    local_roots: tuple[Path, ...]
    upload_max_bytes: int
    upload_retention: int
    retention: int
    gc_interval: float
    threads: int
    max_connections_per_peer: int

    @property
    def orders_dir(self) -> Path:
        return self.server_root / "orders"

    @property
    def store_dir(self) -> Path:
        return self.server_root / "store"

    @property
    def nonce_db(self) -> Path:
        return self.db_path.with_name(self.db_path.stem + "-nonces.db")

    @classmethod
    def from_config(cls, config: Config) -> ProxySettings:
        s = config.section("proxy")

        def positive(name: str) -> int:
            value = int(s[name])
            if value <= 0:
                raise ConfigError(f"{config.where}: key 'proxy.{name}' must be positive")
            return value

        ports = Ports(
            control=positive("server_port"),
            file=positive("server_file_port"),
            stream_ws=positive("server_stream_ws_port"),
            stream_http=positive("server_stream_http_port"),
            dht=positive("dht_port"),
            tracker_link=positive("tracker_link_port"),
        )
        host = str(config.require("proxy.host"))
        policy = FetchPolicy.of(
            [str(t) for t in s["fetch_types"]],
            positive("fetch_max_bytes"),
            hosts=[str(h) for h in s["fetch_hosts"]],
            allow_internal=bool(s["fetch_allow_internal"]),
            timeout=float(s["fetch_timeout_seconds"]),
        )
        return cls(
            host=host,
            public_host=str(s["public_host"]) or host,
            ports=ports,
            db_path=config.path("proxy.dbpath"),
            server_root=config.path("proxy.server_root"),
            keystore=config.path("proxy.keystore"),
            password_file=config.path("proxy.password_file"),
            tls_cert=config.path("proxy.tls_cert"),
            tls_key=config.path("proxy.tls_key"),
            max_frame_bytes=positive("max_frame_bytes"),
            request_timeout=float(s["request_timeout_seconds"]),
            policy=policy,
            local_roots=tuple(Path(str(p)).expanduser().resolve() for p in s["local_roots"]),
            upload_max_bytes=positive("upload_max_bytes"),
            upload_retention=positive("upload_retention_seconds"),
            retention=positive("retention_seconds"),
            gc_interval=float(s["gc_interval_seconds"]),
            threads=positive("threads"),
            max_connections_per_peer=positive("max_connections_per_peer"),
        )

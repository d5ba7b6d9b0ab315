"""The served OpenAPI schema, and a schemathesis run against the live market: no input the
schema allows (or violates) may produce a server error, on SQLite or MariaDB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.market.conftest import LiveMarket

ST = Path(sys.executable).with_name("st")


def test_schema_is_served_and_documents_every_resource(market: LiveMarket) -> None:
    reply = requests.get(market.url + "/api/schema/", headers={"Accept": "application/json"}, timeout=10)
    assert reply.status_code == 200
    schema = reply.json()
    assert schema["openapi"].startswith("3.")
    prefixes = {path.split("/")[1] for path in schema["paths"]}
    assert {"account", "product", "comment", "user_data", "main", "records", "proxy"} <= prefixes
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"


def test_schemathesis_finds_no_server_error(market: LiveMarket) -> None:
    _, client = market.user()
    result = subprocess.run(
        [
            str(ST), "run", market.url + "/api/schema/",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {client.token}",
            "--max-examples", "20", "--generation-deterministic", "--workers", "2",
            # Logging out would revoke the token the rest of the run authenticates with.
            "--exclude-path", "/account/v1/logout/",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "passed" in summary and "failed" not in summary.split("Test cases:")[-1], summary
    log = market.service.logfile.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]

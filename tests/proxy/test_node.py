"""bin/proxy-start as a service: unattended start, TLS key on disk, one-line start failures, SIGTERM."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest

from tests.proxy.conftest import PROXY_START, Chain, ProxyProc, bonded_account


@pytest.fixture
def proc(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> ProxyProc:
    return ProxyProc("node", tmp_path_factory.mktemp("node"), chain, bonded_account(chain))


def run_to_exit(proxy: ProxyProc) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROXY_START)], env=proxy.env(), capture_output=True, text=True, timeout=60)


def test_start_keeps_its_certificate_and_stops_cleanly_on_sigterm(proc: ProxyProc) -> None:
    proc.start()
    key = proc.home / "proxy" / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    fingerprint = proc.fingerprint
    assert b"PRIVATE KEY" not in proc.log.read_bytes()
    assert proc.stop() == 0
    assert "proxy stopped" in proc.log.read_text()
    proc.start()
    assert proc.fingerprint == fingerprint  # clients pinned it: it must not change on restart
    assert proc.stop() == 0


EARLY_SIGTERM = """
import os, signal
from cpchain.proxy.node import install_reactor
reactor = install_reactor()
reactor.addSystemEventTrigger("before", "shutdown", lambda: print("shutdown trigger ran"))
os.kill(os.getpid(), signal.SIGTERM)  # after the ports listen, before reactor.run() takes over signals
reactor.run()
print("clean exit")
"""


def test_a_sigterm_before_the_reactor_runs_still_shuts_down_cleanly() -> None:
    # a supervisor may send SIGTERM the moment a port opens, before the reactor's own handlers exist
    done = subprocess.run([sys.executable, "-c", EARLY_SIGTERM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["shutdown", "trigger", "ran", "clean", "exit"]


def test_a_password_file_others_can_read_is_refused(proc: ProxyProc) -> None:
    os.chmod(proc.home / "password", 0o644)
    result = run_to_exit(proc)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("proxy-start: password file") and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_and_a_bad_setting_fail_in_one_line(proc: ProxyProc) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", proc.ports["server_file_port"]))
        taken.listen()
        result = run_to_exit(proc)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"proxy-start: cannot listen on 127.0.0.1:{proc.ports['server_file_port']}: [Errno 98] Address already in use"
    )
    proc.write_config(threads=0)
    result = run_to_exit(proc)
    assert result.returncode == 1 and result.stderr.strip().endswith("key 'proxy.threads' must be positive")


def test_one_host_cannot_hold_more_than_its_share_of_connections(chain: Chain, proc: ProxyProc) -> None:
    from cpchain.proxy.tls import connect_pinned

    proc.write_config(max_connections_per_peer=2)
    proc.start()
    port = proc.ports["server_port"]
    held = [connect_pinned("127.0.0.1", port, proc.fingerprint, 5) for _ in range(2)]
    try:
        with pytest.raises((OSError, ssl.SSLError)):
            extra = connect_pinned("127.0.0.1", port, proc.fingerprint, 5)
            extra.sendall(b"\x00\x00\x00\x01x")
            assert extra.recv(1) == b""  # closed without an answer
            raise ConnectionResetError("closed")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    again = connect_pinned("127.0.0.1", port, proc.fingerprint, 5)  # a slot is free again
    again.close()
    proc.stop()

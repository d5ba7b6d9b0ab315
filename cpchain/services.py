"""Background services started by the bin/ scripts: pid files, logs, health, clean stop.

Owns process bookkeeping under <rc_dir>/run; must not know what a service does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class ServiceError(Exception):
    """A service could not be started: its port is taken, or it exited or hung at start."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    run_dir: Path
    port: int | None = None
    host: str = "127.0.0.1"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pidfile.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        return pid

    def start(self, env: dict[str, str] | None = None, ready_timeout: float = 60.0) -> tuple[int, bool]:
        """Start unless running; returns (pid, started_now). Waits for the port if one is set."""
        running = self.pid()
        if running is not None:
            return running, False
        if self.port is not None and port_open(self.host, self.port):
            raise ServiceError(f"{self.name}: port {self.host}:{self.port} is already in use by another process")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip
        self.pidfile.write_text(f"{proc.pid}\n")
        if self.port is not None:
            deadline = time.monotonic() + ready_timeout
            while not port_open(self.host, self.port):
                if proc.poll() is not None:
                    self.pidfile.unlink(missing_ok=True)
                    raise ServiceError(f"{self.name} exited with code {proc.returncode}; see {self.logfile}")
                if time.monotonic() > deadline:
                    raise ServiceError(f"{self.name} did not open {self.host}:{self.port}; see {self.logfile}")
                time.sleep(0.2)
        return proc.pid, True

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet counts as stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0

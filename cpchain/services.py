"""Background services started by the bin/ scripts: pid files, logs, health, clean stop.

Owns process bookkeeping under a run directory: a pid file per service (the pid and the
process's start time, so a pid the kernel handed to another program is never mistaken for
the service), its log, the ports it must open before it counts as started, and stopping
exactly the process group it started. Must not know what a service does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(Exception):
    """A service could not be started: its port is taken, or it exited or hung at start."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    run_dir: Path
    port: int | None = None  # the main TCP port (what the service is reached by)
    host: str = "127.0.0.1"
    tcp_ports: tuple[int, ...] = ()  # further TCP ports it must listen on
    udp_ports: tuple[int, ...] = ()  # UDP ports it must bind
    extra_env: Mapping[str, str] = field(default_factory=dict, compare=False)  # over os.environ

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def tcp(self) -> tuple[int, ...]:
        return ((self.port,) if self.port is not None else ()) + self.tcp_ports

    def pid(self) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        try:
            fields = self.pidfile.read_text().split()
            pid = int(fields[0])
            started = int(fields[1]) if len(fields) > 1 else None
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pidfile.unlink(missing_ok=True)
            return None
        except PermissionError:
            pass
        if (started is not None and _start_time(pid) not in (started, None)) or _is_zombie(pid):
            # The service ended (and maybe the kernel gave its pid to another program).
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def busy_ports(self) -> list[str]:
        """Its ports that something already holds (`host:port/proto`)."""
        busy = [f"{self.host}:{p}/tcp" for p in self.tcp if port_open(self.host, p)]
        return busy + [f"{self.host}:{p}/udp" for p in self.udp_ports if not udp_free(self.host, p)]

    def missing_ports(self) -> list[str]:
        """Its ports nothing listens on (yet)."""
        missing = [f"{self.host}:{p}/tcp" for p in self.tcp if not port_open(self.host, p)]
        return missing + [f"{self.host}:{p}/udp" for p in self.udp_ports if not udp_bound(self.host, p)]

    def check_ports_free(self) -> None:
        busy = self.busy_ports()
        if busy:
            raise ServiceError(f"{self.name}: port {busy[0].removesuffix('/tcp')} is already in use by another process")

    def start(self, env: dict[str, str] | None = None, ready_timeout: float = 60.0) -> tuple[int, bool]:
        """Start unless running; returns (pid, started_now). Waits until all its ports are open.

        A start that fails (its process exits or does not open its ports in time) leaves
        nothing running and raises ServiceError naming the log.
        """
        running = self.pid()
        if running is not None:
            return running, False
        self.check_ports_free()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.extra_env:
            env = {**(os.environ if env is None else env), **self.extra_env}
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip
        self.pidfile.write_text(f"{proc.pid} {_start_time(proc.pid) or 0}\n")
        deadline = time.monotonic() + ready_timeout
        while missing := self.missing_ports():
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                _signal(proc.pid, signal.SIGTERM, True)  # anything it left behind in its group
                raise ServiceError(f"{self.name} exited with code {proc.returncode}{self._last_words()}; "
                                   f"see {self.logfile}")  # fmt: skip
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} did not open {missing[0]} within {ready_timeout:.0f} s; "
                                   f"see {self.logfile}")  # fmt: skip
            time.sleep(0.1)
        return proc.pid, True

    def _last_words(self) -> str:
        """The last line the service logged (its one-line error, usually), for the error message."""
        try:
            with self.logfile.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return f" ({lines[-1][:300]})" if lines else ""

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        group = _is_group_leader(pid)
        _signal(pid, signal.SIGTERM, group)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                _signal(pid, signal.SIGKILL, group)
                break
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True


def _signal(pid: int, signum: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum) if group else os.kill(pid, signum)


def _start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None where /proc cannot tell."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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


def udp_free(host: str, port: int) -> bool:
    """Nothing holds UDP `host:port` (a bind succeeds). Only for checks before a start:
    the probe holds the port for an instant."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def udp_bound(host: str, port: int) -> bool:
    """Some socket is bound to UDP `host:port` (or the wildcard address), without touching it.

    Reads /proc/net/udp (Linux); elsewhere falls back to a bind probe.
    """
    try:
        table = Path("/proc/net/udp").read_text()
    except OSError:
        return not udp_free(host, port)
    ip = socket.inet_aton(socket.gethostbyname(host))
    wanted = {f"{struct.unpack('=I', ip)[0]:08X}:{port:04X}", f"00000000:{port:04X}"}
    return any(line.split()[1] in wanted for line in table.splitlines()[1:] if len(line.split()) > 1)

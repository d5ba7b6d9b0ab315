"""Picking free local ports for throwaway servers (tests, benchmarks, temporary testnets).

Owns the two ways of choosing a port on 127.0.0.1: `free_port()`, one the kernel hands out
from the ephemeral range (for a server started at once and reached only by its starter), and
`service_port()`, one free for both TCP and UDP below the ephemeral range and never handed out
twice by this process (for services that listen a while after being configured: the many
client connections of a run take ephemeral ports, so one of those could be gone meanwhile).
Must not start or know about any server.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 the kernel says is free (from the ephemeral range)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _low_ephemeral() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def service_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1, below the ephemeral range, not handed out before."""
    low_ephemeral = _low_ephemeral()
    low = 20000 if low_ephemeral > 21000 else 10000
    high = min(low_ephemeral, 32768) - 1 if low_ephemeral > low + 1000 else 65000
    while True:
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind((HOST, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port

"""Named crash points for the crash-recovery tests: the process kills itself (SIGKILL) there.

Owns nothing else. Points are listed in the environment variable PDASH_PROXY_FAILPOINTS
(comma-separated) when the proxy starts; in normal operation the variable is unset and
`hit` is a set lookup. SIGKILL, not an exception, so no cleanup code runs: exactly what a
power cut or `kill -9` does at that step.
"""

from __future__ import annotations

import logging
import os
import signal

ENV = "PDASH_PROXY_FAILPOINTS"
_ACTIVE = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())
log = logging.getLogger(__name__)


def hit(name: str) -> None:
    if name in _ACTIVE:
        log.warning("failpoint %s reached: killing the process", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)

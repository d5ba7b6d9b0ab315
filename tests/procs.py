"""What the test fixtures that run a server in its own process share: an account's keystore
in the server's home (password in a 0600 file, as an operator keeps it), and stopping,
killing and reading the logs of the process."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

from eth_account.signers.local import LocalAccount

from cpchain.crypto.keystore import import_private_key, save_keystore


def write_unattended_keystore(home: Path, account: LocalAccount) -> None:
    """`home/keystore` for `account`, its random password in `home/password` (mode 0600)."""
    password = secrets.token_urlsafe(16)
    save_keystore(home / "keystore", import_private_key(account.key.hex(), password, fast_kdf=True))
    fd = os.open(home / "password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)


class ServerProcess:
    """Mixin for a fixture dataclass with `home` and `proc`: kill, stop and the logs' tails."""

    home: Path
    proc: subprocess.Popen[bytes] | None
    log_names: tuple[str, ...] = ("stdout.log",)
    stop_timeout: float = 20.0

    def tail(self, lines: int = 40) -> str:
        text = ""
        for name in self.log_names:
            path = self.home / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=self.stop_timeout)

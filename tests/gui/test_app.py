"""bin/wallet's start-up wiring in a real process (qasync loop, Twisted's asyncio reactor),
and the fonts Qt draws with."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from PyQt5.QtGui import QFontDatabase
from pytestqt.qtbot import QtBot

ROOT = Path(__file__).resolve().parents[2]
WALLET = ROOT / "bin" / "wallet"


def test_the_font_database_is_not_empty(qtbot: QtBot) -> None:
    # With no fonts installed Qt draws invisible text without a warning (fonts-dejavu-core).
    assert QFontDatabase().families()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cpchain.toml"
    path.write_text(
        f'[core]\nrc_dir = "{tmp_path}"\n[chain]\nmode = "local"\nlocal_provider_addr = "http://127.0.0.1:9"\n'
    )
    return path


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    return subprocess.Popen([str(WALLET), "--config", str(_config(tmp_path)), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float = 20.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; output:\n{''.join(lines)}")


def test_the_wallet_starts_shows_its_window_and_closes_on_a_timer(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--quit-after", "0.5")
    try:
        _wait_for(proc, "window shown after")
        _wait_for(proc, "wallet closed")
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()


def test_the_wallet_exits_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = _start(tmp_path)
        try:
            _wait_for(proc, "window shown after")
            time.sleep(0.3)
            proc.send_signal(sig)
            out = "".join(_wait_for(proc, "wallet closed"))
            assert proc.wait(timeout=15) == 0, out
            assert "Traceback" not in out
        finally:
            proc.kill()

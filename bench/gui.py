#!/usr/bin/env python3
"""The desktop wallet's responsiveness: start-up time, and the Qt event loop during a download.

Starts its own local testnet (cpchain.testnet.up) in a temp CPCHAIN_HOME on free ports, and
stops it at the end. Then:

* start-up: `bin/wallet --quit-after 0.5` on the testnet buyer's config, in a new process
  (offscreen unless a display is set): the seconds from spawning it to its
  "window shown after" line (Python and Qt start-up, config, the window built and shown with
  the reactor running), and the wallet's own figure from that line;
* event-loop stall: in this process, the buyer's main window (unlocked, automation off), a
  file of --size MiB (100 by default) sold by the seller through the wallet core and
  delivered to the proxy, then downloaded, verified and decrypted by clicking Download on
  the purchased-data page, exactly as a user does. A 10 ms QTimer runs meanwhile; its
  longest lateness (gap between two timeouts minus 10 ms) is the longest the window froze.

Goals: start-up under 2 s; no stall over 100 ms. Prints progress, then the figures last,
one `name: value unit` per line. Run: .venv/bin/python bench/gui.py [--size MiB]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402

from cpchain.config import load_config  # noqa: E402
from cpchain.crypto import keystore, sha256_file  # noqa: E402
from cpchain.testnet import running_testnet  # noqa: E402
from cpchain.types import OrderState  # noqa: E402
from cpchain.wallet.buyer import Buyer  # noqa: E402
from cpchain.wallet.demo import open_party  # noqa: E402
from cpchain.wallet.qt.app import build_window  # noqa: E402
from cpchain.wallet.qt.window import MainWindow  # noqa: E402
from cpchain.wallet.seller import Seller  # noqa: E402

MIB = 1 << 20
GOAL_STARTUP_S = 2.0
GOAL_STALL_MS = 100.0
TICK_MS = 10
PRICE = 10**16
WALLET = ROOT / "bin" / "wallet"
SHOWN = re.compile(r"window shown after ([\d.]+) s")


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- start-up


def startup(config_file: Path) -> tuple[float, float]:
    """(seconds from spawning bin/wallet to its window shown, the wallet's own figure)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    began = time.perf_counter()
    proc = subprocess.Popen([str(WALLET), "--config", str(config_file), "--quit-after", "0.5"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    try:
        for line in proc.stdout:
            output.append(line)
            match = SHOWN.search(line)
            if match:
                spawned = time.perf_counter() - began
                proc.wait(timeout=30)
                return spawned, float(match.group(1))
        raise SystemExit("bin/wallet ended without showing its window:\n" + "".join(output))
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- event loop


class StallMeter:
    """A 10 ms timer; the longest lateness of its timeouts while it runs."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.last = 0
        self.worst_ms = 0.0
        self.ticks = 0

    def start(self) -> None:
        self.clock.start()
        self.last = self.clock.nsecsElapsed()
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.worst_ms = max(self.worst_ms, (now - self.last) / 1e6 - TICK_MS)
        self.last = now
        self.ticks += 1

    def stop(self) -> None:
        self.timer.stop()


def wait_for(app: QApplication, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the Qt event loop until `condition()` (checked every 10 ms)."""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    check.start()
    if not condition():
        loop.exec_()
    check.stop()
    if not condition():
        raise SystemExit(f"timed out ({timeout:g} s) waiting for {what}")


def sell(manifest: dict[str, Any], work: Path, size: int) -> tuple[int, Path]:
    """A product of `size` random bytes, bought by the buyer and delivered to the proxy by the
    seller, through the wallet core: (order id, the seller's source file)."""
    source = work / f"bench-{size}.bin"
    with source.open("wb") as out:
        left = size
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n
    sctx, bctx = open_party(manifest, "seller"), open_party(manifest, "buyer")
    try:
        seller, buyer = Seller(sctx), Buyer(bctx)
        product = seller.publish(seller.upload(source).id, title=f"GUI bench {secrets.token_hex(3)}", price=PRICE)
        order = buyer.buy(product.market_hash)
        seller.confirm(order.order_id)
        seller.deliver(order.order_id)
        if buyer.book.refresh(order.order_id).state is not OrderState.PROXY_FETCHED:
            raise SystemExit(f"order {order.order_id} was not delivered to the proxy")
        return order.order_id, source
    finally:
        sctx.close()
        bctx.close()


def stall_during_download(app: QApplication, manifest: dict[str, Any], work: Path, size: int) -> dict[str, float]:
    """Figures of a download through the purchased-data page, the window's event loop watched."""
    order_id, source = sell(manifest, work, size)
    log(f"{size // MIB} MiB sold and delivered to the proxy (order {order_id})")
    account = manifest["accounts"]["buyer"]
    config = load_config(Path(account["config"]))
    window: MainWindow = build_window(config, automate=False)
    window.show()
    password = keystore.read_password_file(config.path("account.password_file"))
    window.worker.run(window.session.open, password, account["address"], done=window.session.attach)
    wait_for(app, lambda: window.session.wallet is not None, 30, "the wallet to unlock")
    page = window.purchases
    window.show_page(page)
    page.select(order_id)
    wait_for(app, lambda: page.download_button.isEnabled(), 30, "the purchase to be listed")
    meter = StallMeter()
    meter.start()
    wait_for(app, lambda: meter.ticks >= 20, 5, "the meter to settle")  # an idle baseline first
    idle_ms, meter.worst_ms = meter.worst_ms, 0.0
    began = time.perf_counter()
    page.download_button.click()
    wait_for(app, lambda: page.data_label.text() == "downloaded, verified and decrypted"
             or window.banner.kind == "error", 120, "the download")  # fmt: skip
    seconds = time.perf_counter() - began
    meter.stop()
    if window.banner.kind == "error":
        raise SystemExit(f"download failed: {window.banner.text()}")
    decrypted = Path(page.path_label.text())
    if sha256_file(decrypted) != sha256_file(source):
        raise SystemExit(f"{decrypted} is not the file the seller sold")
    window.close()
    window.session.shutdown(timeout=10)
    window.worker.shutdown(wait=True)
    return {"seconds": seconds, "worst_ms": meter.worst_ms, "idle_ms": idle_ms, "ticks": meter.ticks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, metavar="MiB", help="size of the download (default 100)")
    args = parser.parse_args(argv)
    size = args.size * MIB
    started = time.monotonic()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    with (
        tempfile.TemporaryDirectory(prefix="gui-bench-") as tmp,
        running_testnet(Path(tmp) / "home", "bench/gui.py's testnet", say=log) as config,
    ):
        manifest: dict[str, Any] = json.loads((config.path("testnet.dir") / "testnet.json").read_text())
        spawned, own = startup(Path(manifest["accounts"]["buyer"]["config"]))
        log(f"bin/wallet: window shown {spawned:.2f} s after spawning ({own:.2f} s by its own log)")
        work = Path(tmp) / "work"
        work.mkdir()
        stall = stall_during_download(app, manifest, work, size)
        log(f"{args.size} MiB downloaded, verified and decrypted through the purchased-data page in "
            f"{stall['seconds']:.2f} s; longest event-loop stall {stall['worst_ms']:.1f} ms")  # fmt: skip
    log(f"done in {time.monotonic() - started:.1f} s on {os.cpu_count()} cores; goals: start-up < "
        f"{GOAL_STARTUP_S:g} s, no stall > {GOAL_STALL_MS:g} ms")  # fmt: skip
    print(f"start-up to window shown (process spawn): {spawned:.2f} s")
    print(f"start-up to window shown (wallet's log): {own:.2f} s")
    print(f"{args.size} MiB download and decrypt through the purchased-data page: {stall['seconds']:.2f} s")
    print(f"longest event-loop stall during the download: {stall['worst_ms']:.1f} ms")
    print(f"longest event-loop stall while idle: {stall['idle_ms']:.1f} ms")
    print(f"timer ticks during the download: {stall['ticks']:.0f} ticks")
    print(f"cores: {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

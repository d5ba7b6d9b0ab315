#!/usr/bin/env python3
"""Screenshots of every page of the desktop wallet, on a local testnet with real data.

Starts a local testnet (cpchain.testnet) in a temporary home on free ports, seeds it through
the wallet core (one complete trade, more listings with cover images, an open order), starts
Xvfb unless a display is given, opens the real main window for the seller (and the buyer
for the buyer's pages), saves one PNG per page into docs/screenshots/, then stops
everything it started.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = (1100, 720)
MAX_PNG = 200_000
ETHER = 10**18
LISTINGS = [
    ("Berlin air quality, hourly PM2.5 and PM10", "Environment", "4.5", ("air", "pm25", "berlin"),
     "Hourly particulate readings from 40 street-level sensors, CSV, one file per month.", (40, 120, 90)),
    ("Harbour vessel movements 2024", "Logistics", "12", ("ais", "shipping"),
     "AIS position reports of every vessel entering or leaving the port, deduplicated.", (30, 80, 160)),
    ("Retail footfall counts, city centre", "Business", "7.25", ("retail", "footfall"),
     "Anonymous door counter totals per 15 minutes for 120 shops.", (170, 90, 40)),
]  # fmt: skip
# Over cpchain.testnet.isolated_config's: the market indexes new listings quickly, services log at INFO.
TESTNET_OVERRIDES: dict[str, dict[str, object]] = {"market": {"sync_interval": 0.5}, "logging": {"level": "INFO"}}


@contextmanager
def display() -> Iterator[None]:
    """Xvfb on a free display number (unless DISPLAY is set), with Qt on xcb."""
    if os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        yield
        return
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())  # fmt: skip
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("screenshots: Xvfb did not start (apt-get install xvfb)")
            time.sleep(0.05)
        os.environ["DISPLAY"] = f":{number}"
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        yield
    finally:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()


def cover(path: Path, rgb: tuple[int, int, int]) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (480, 270), rgb)
    draw = ImageDraw.Draw(image)
    for i in range(0, 480, 24):
        shade = tuple(min(255, c + (i // 6)) for c in rgb)
        draw.rectangle((i, 270 - (i * 7) % 200 - 40, i + 18, 270), fill=shade)
    image.save(path, "PNG")
    return path


def seed(config: Any, work: Path) -> dict[str, Any]:
    """One complete trade (the demo), three more listings with covers, one hidden, one open order."""
    from cpchain.wallet.buyer import Buyer
    from cpchain.wallet.demo import _manifest, open_party, run_demo, sample_file
    from cpchain.wallet.seller import Seller

    result = run_demo(config, size=256 * 1024, out=lambda line: print("  demo:", line))
    manifest = _manifest(config)
    sctx, bctx = open_party(manifest, "seller"), open_party(manifest, "buyer")
    try:
        seller = Seller(sctx)
        hashes = []
        for i, (title, category, price, tags, description, rgb) in enumerate(LISTINGS):
            upload = seller.upload(sample_file(work / f"listing-{i}.csv", 96 * 1024 * (i + 1)))
            record = seller.publish(upload.id, title=title, price=int(float(price) * ETHER), category=category,
                                    description=description, tags=tags)  # fmt: skip
            seller.set_cover(record.market_hash, cover(work / f"cover-{i}.png", rgb))
            hashes.append(record.market_hash)
        order = Buyer(bctx).buy(hashes[1])
        print(f"  seeded: listings {len(hashes) + 1}, completed order {result.order_id}, open order {order.order_id}")
        return {"product": hashes[0], "bought": result.market_hash, "manifest": manifest}
    finally:
        sctx.close()
        bctx.close()


def shoot(out: Path, seeded: dict[str, Any]) -> list[Path]:
    from PyQt5.QtWidgets import QApplication

    from cpchain.config import load_config
    from cpchain.crypto import keystore
    from cpchain.wallet.qt.app import build_window
    from cpchain.wallet.qt.window import MainWindow

    app = QApplication([sys.argv[0]])
    app.setApplicationName("PDash wallet")
    saved: list[Path] = []

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def settle(window: MainWindow, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            pump(0.05)
            if window.worker.pending == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.6:
                    return
            else:
                quiet_since = None
        raise SystemExit("screenshots: the window did not settle")

    def save(window: MainWindow, name: str) -> None:
        settle(window)
        window.banner.dismiss()
        pump(0.2)
        path = out / f"{name}.png"
        window.grab().save(str(path), "PNG")
        shrink(path)
        saved.append(path)
        print(f"  {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")

    def open_window(name: str) -> MainWindow:
        account = seeded["manifest"]["accounts"][name]
        config = load_config(Path(account["config"]))
        window = build_window(config, automate=False)
        window.resize(*SIZE)
        window.show()
        window.move(0, 0)
        settle(window)
        return window

    def unlock(window: MainWindow, name: str) -> None:
        account = seeded["manifest"]["accounts"][name]
        password = keystore.read_password_file(Path(account["password_file"]))
        window.worker.run(window.session.open, password, account["address"], done=window.session.attach,
                          error=lambda exc: sys.exit(f"screenshots: unlock failed: {exc}"))  # fmt: skip
        deadline = time.monotonic() + 60
        while window.session.wallet is None:
            if time.monotonic() > deadline:
                raise SystemExit("screenshots: unlock timed out")
            pump(0.05)

    seller = open_window("seller")
    save(seller, "account")
    unlock(seller, "seller")
    buyer_pages = ("purchase",)
    for page in seller.pages:
        if page is seller.accounts or page is seller.product or any(k in page.title.lower() for k in buyer_pages):
            continue
        seller.show_page(page)
        table = getattr(page, "table", None)
        if table is not None:  # a selected row shows what can be done with it
            settle(seller)
            if table.rowCount():
                table.selectRow(0)
        save(seller, page.title.lower().replace(" ", "-"))
    seller.close()

    buyer = open_window("buyer")
    unlock(buyer, "buyer")
    buyer.show_page(buyer.market)
    settle(buyer)
    buyer.show_product(seeded["product"])
    save(buyer, "product")
    for page in buyer.pages:
        if any(k in page.title.lower() for k in buyer_pages):
            buyer.show_page(page)
            save(buyer, page.title.lower().replace(" ", "-"))
    buyer.close()
    for window in (seller, buyer):
        window.session.shutdown(timeout=10)
        window.worker.shutdown(wait=True)
    return saved


def shrink(path: Path) -> None:
    """Fewer colours when a PNG is over the size budget (text stays sharp: it is an exact palette)."""
    from PIL import Image

    if path.stat().st_size <= MAX_PNG:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, "PNG", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--keep", action="store_true", help="keep the temporary testnet home")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="pdash-screenshots-"))

    from cpchain.testnet import running_testnet

    began = time.monotonic()
    try:
        print(f"starting a local testnet in {home}")
        with running_testnet(home, "scripts/screenshots.py's testnet", overrides=TESTNET_OVERRIDES, say=print,
                             verbose=True) as config:  # fmt: skip
            seeded = seed(config, home / "seed")
            with display():
                saved = shoot(args.out, seeded)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"{len(saved)} screenshot(s) in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()

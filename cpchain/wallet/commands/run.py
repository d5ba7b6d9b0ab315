"""`pdash run`: the wallet's automation loop until SIGTERM or Ctrl-C.

A seller's wallet confirms and delivers new orders; a buyer's receives, verifies and
decrypts deliveries (and confirms them with --auto-confirm); both claim the timeouts that
pay them back. Each step done is printed as it happens (a JSON summary at the end with
--json); a signal lets the current step finish, then the loop stops and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from cpchain.wallet.automation import Automation, StepReport
from cpchain.wallet.commands.base import Parser, Result, Session, add_command
from cpchain.wallet.rules import Policy


def run(s: Session, args: argparse.Namespace) -> Result:
    ctx = s.wallet
    automation = Automation(ctx, Policy(auto_confirm=args.auto_confirm, claim_timeouts=not args.no_claim_timeouts))
    stop = threading.Event()
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    steps = [0]

    def on_report(report: StepReport) -> None:
        steps[0] += 1
        for order_id, task in report.done:
            done.append({"order_id": order_id, "task": str(task)})
            if not args.json:
                print(f"order {order_id}: {task} done", flush=True)
        for order_id, task, error in report.failed:
            failed.append({"order_id": order_id, "task": str(task), "error": error})
            if not args.json:
                print(f"order {order_id}: {task} failed (will retry): {error}", flush=True)
        if args.once:
            stop.set()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not args.json:
            print(f"pdash run: automating {ctx.address} every {args.interval:g} s (Ctrl-C to stop)", file=sys.stderr,
                  flush=True)  # fmt: skip
        if args.once:
            on_report(automation.step())  # one step; its failure is the command's error
        else:
            automation.run(stop, args.interval, on_report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {"account": ctx.address, "steps": steps[0], "done": done, "failed": failed}
    return Result(summary, f"pdash run: stopped after {steps[0]} steps ({len(done)} done, {len(failed)} failed)")


def register(sub: argparse._SubParsersAction[Parser], common: argparse.ArgumentParser) -> None:
    p = add_command(sub, "run", run, "run the wallet's automation (confirm, deliver, receive) until stopped",
                    [common])  # fmt: skip
    p.add_argument("--interval", type=float, default=2.0, help="seconds between steps")
    p.add_argument("--once", action="store_true", help="one step, then exit")
    p.add_argument("--auto-confirm", action="store_true", help="buyer: confirm a verified, decrypted delivery")
    p.add_argument("--no-claim-timeouts", action="store_true", help="do not claim timeouts automatically")

#!/usr/bin/env python3
"""Throughput and peak memory of each storage plugin, uploading and downloading one file.

For each plugin: upload a random file of --size-mib MiB (default 512), download it back and
verify its SHA-256. Every transfer runs in a child process of its own, so the peak RSS
reported (its VmHWM) is that transfer's alone; "baseline" is a
child that imports the plugins and transfers nothing. Servers run on 127.0.0.1: a js-ipfs
daemon (npm `ipfs`, installed by bin/setup), moto's S3 server in this process, and for the
`proxy` plugin a real `bin/proxy-start` process on anvil with the deployed escrow (set up
as bench/proxy_relay.py does, while the IPFS daemon starts): the seller's upload goes to
the proxy's HTTPS upload endpoint with a signed token, the download is the GET of the
stored object a fetching proxy makes (certificate pinned, under a loopback FetchPolicy).
Goal: no plugin's peak RSS grows with the file size (under 150 MB at any size).
Prints progress, then the figures last, one `name: value unit` per line.
Run: .venv/bin/python bench/storage.py [--size-mib 512] [--plugins local,ipfs,s3,proxy]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account

from cpchain.proxy.protocol import Domain, Endpoint
from cpchain.storage import (
    FetchPolicy,
    IpfsStorage,
    LocalStorage,
    Locator,
    ProxyStorage,
    S3Credentials,
    S3Settings,
    S3Storage,
)
from cpchain.storage.base import Plugin
from cpchain.storage.devservers import JsIpfsDaemon, MotoS3, write_random_file

MIB = 1024 * 1024
BUCKET = "pdash-bench"
GOAL_RSS_MB = 150


def proxy_plugin(cfg: dict[str, str]) -> ProxyStorage:
    """The seller's `proxy` plugin (uploads with its token) that also downloads as a
    fetching proxy does: pinned to the certificate, the host checked by a FetchPolicy."""
    endpoint = Endpoint(cfg["address"], "127.0.0.1", int(cfg["control_port"]), int(cfg["file_port"]),
                        cfg["fingerprint"])  # fmt: skip
    policy = FetchPolicy.of(["proxy"], 1 << 40, hosts=["127.0.0.1"], allow_internal=True)
    return ProxyStorage(endpoint=endpoint, account=Account.from_key(cfg["seller_key"]),
                        domain=Domain(int(cfg["chain_id"]), cfg["contract"]), policy=policy)  # fmt: skip


# How a child builds each plugin from the plain settings the parent hands it.
BUILDERS: dict[str, Callable[[dict[str, str]], Plugin]] = {
    "local": lambda cfg: LocalStorage(Path(cfg["root"])),
    "ipfs": lambda cfg: IpfsStorage(cfg["api"]),
    "s3": lambda cfg: S3Storage(S3Settings(BUCKET, cfg["endpoint"]), S3Credentials("bench", "bench")),
    "proxy": proxy_plugin,
}


def start_proxy(work: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """anvil with the deployed escrow and a bonded proxy running `bin/proxy-start`; the
    settings a child needs to upload to it as the seller and to download from it."""
    from proxy_relay import start_chain
    from proxy_relay import start_proxy as spawn_proxy  # bench/ is this script's directory

    setup = start_chain()

    def stop_anvil() -> None:
        setup.anvil.terminate()
        setup.anvil.wait(timeout=10)

    stack.callback(stop_anvil)
    files = work / "proxy-files"  # the proxy's local_roots (unused here)
    files.mkdir()
    proc, endpoint = spawn_proxy(setup, work / "proxy-home", files)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    stack.callback(stop)
    deployment = setup.escrow.deployment
    return {
        "address": endpoint.address, "control_port": str(endpoint.control_port),
        "file_port": str(endpoint.file_port), "fingerprint": endpoint.fingerprint,
        "seller_key": setup.accounts["seller"].key.hex(),  # a throwaway account of this anvil
        "chain_id": str(deployment.chain_id), "contract": deployment.address,
    }  # fmt: skip


def start_servers(names: list[str], work: Path, stack: contextlib.ExitStack) -> dict[str, dict[str, str]]:
    """Start what the chosen plugins need (the proxy's chain while js-ipfs starts); each
    plugin's settings for the children."""
    settings: dict[str, dict[str, str]] = {"local": {"root": str(work / "local-store")}}
    with ThreadPoolExecutor(1) as pool:
        ipfs = None
        if "ipfs" in names:
            daemon = JsIpfsDaemon(work / "jsipfs")
            stack.callback(daemon.stop)  # idempotent; runs after the pool has joined the start
            ipfs = pool.submit(daemon.start)
        if "proxy" in names:
            settings["proxy"] = start_proxy(work, stack)
        if "s3" in names:
            moto = stack.enter_context(MotoS3())
            moto.create_bucket(BUCKET)
            settings["s3"] = {"endpoint": moto.endpoint}
        if ipfs is not None:
            settings["ipfs"] = {"api": ipfs.result().api}
    return settings


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that also counts the parent's
    memory, since the child is forked (vfork) from it and exec keeps the larger high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(job: dict[str, Any]) -> None:
    """One transfer, timed; prints {"seconds", "locator", "rss_mb"} as JSON."""
    plugin = BUILDERS[job["plugin"]](job["settings"]) if job["op"] != "none" else None
    started = time.perf_counter()
    locator = None
    if job["op"] == "upload" and plugin is not None:
        locator = plugin.upload(Path(job["path"])).to_json()
    elif job["op"] == "download" and plugin is not None:
        plugin.download(Locator.from_json(job["locator"]), Path(job["path"]))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "locator": locator, "rss_mb": peak_rss_mb()}))


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """The result of one transfer in a fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--child"], input=json.dumps(job), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job['plugin']} {job['op']} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=float, default=512, help="file size in MiB (default 512)")
    parser.add_argument("--plugins", default=",".join(BUILDERS), help="comma-separated (default: all)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(sys.stdin.read()))
        return 0
    names = [name for name in args.plugins.split(",") if name]
    unknown = set(names) - set(BUILDERS)
    if unknown:
        parser.error(f"unknown plugins {sorted(unknown)}; known: {', '.join(BUILDERS)}")
    size = int(args.size_mib * MIB)
    figures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pdash-bench-storage-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        settings = start_servers(names, work, stack)
        source = work / "source.bin"
        expected = write_random_file(source, size)
        baseline = run_child({"plugin": "none", "op": "none"})["rss_mb"]
        print(f"file: {size / MIB:g} MiB; each transfer in its own process; baseline process {baseline:.1f} MB")
        for name in names:
            job = {"plugin": name, "settings": settings[name]}
            up = run_child({**job, "op": "upload", "path": str(source)})
            dest = work / f"{name}.out"
            down = run_child({**job, "op": "download", "path": str(dest), "locator": up["locator"]})
            with dest.open("rb") as fh:
                copied = hashlib.file_digest(fh, "sha256").hexdigest()
            if copied != expected:
                raise RuntimeError(f"{name}: the downloaded file differs from the uploaded one")
            dest.unlink()
            print(f"  {name:6} upload {up['seconds']:7.2f} s  download {down['seconds']:7.2f} s  SHA-256 ok")
            for op, result in (("upload", up), ("download", down)):
                figures.append(f"{name} {op}: {size / MIB / max(result['seconds'], 1e-9):.1f} MiB/s")
                figures.append(f"{name} {op} peak RSS: {result['rss_mb']:.1f} MB")
    print(f"goal: peak RSS under {GOAL_RSS_MB} MB for any size")
    print(f"file size: {size / MIB:g} MiB")
    print(f"baseline peak RSS: {baseline:.1f} MB")
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Download throughput of the proxy's HTTPS file server against a plain Twisted static.File.

Sets up a real trade on a fresh anvil (deployed escrow, bonded proxy, seller-confirmed
order), starts `bin/proxy-start`, lets it fetch a random file of the chosen size (1 GiB by
default, 256 MiB with --quick) and then measures, in the same run:

* one download of the whole file from the proxy with the buyer's token (Range-capable,
  delivery-tracking file server, TLS pinned), and the same file from a baseline HTTPS
  server: Twisted's static.File behind the same TLS certificate, in its own process;
* 16 concurrent downloads from the proxy (one client process each, 256 MiB or the file
  size each, at different offsets): the aggregate throughput;
* the proxy process's peak resident memory (VmHWM).

Clients read into a 1 MiB buffer and discard the bytes, each in its own process, so the
measuring side is not the bottleneck. Single downloads alternate between the two servers
(two or three rounds), the best of each counts.
Prints progress, then the figures last, one `name: value unit` per line.
Run: .venv/bin/python bench/proxy_relay.py [--quick] [--size-mib N] [--concurrent N]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_account.signers.local import LocalAccount

from cpchain.chain.escrow import BuyerAgent, Deployment, Escrow, EscrowParams, ProxyAgent, SellerAgent, deploy
from cpchain.chain.node import anvil_binary, wait_ready
from cpchain.chain.tx import TxSender
from cpchain.crypto import ecies
from cpchain.crypto.keystore import import_private_key, save_keystore
from cpchain.netutil import free_port
from cpchain.proxy.client import ProxyClient
from cpchain.proxy.protocol import Domain, Endpoint, authorization, download_token
from cpchain.proxy.tls import PinnedHTTPSConnection, fingerprint_of_pem
from cpchain.storage.base import Locator
from cpchain.types import ProductDescription, ProductType

ROOT = Path(__file__).resolve().parents[1]
ETHER = 10**18
MIB = 1 << 20
READ = 1 << 20
GOAL_RATIO = 0.9
GOAL_RSS_MB = 150
GOAL_MBPS = 300


def log(message: str) -> None:
    print(message, flush=True)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"a server did not start (exit code {proc.poll()})")
        time.sleep(0.05)


# ---------------------------------------------------------------- the measuring clients


@dataclass(frozen=True)
class Target:
    port: int
    fingerprint: str
    path: str
    auth: str  # Authorization header value, or ""


def fetch(target: Target, start: int, end: int) -> tuple[int, float, float]:
    """GET bytes [start, end) and discard them; (bytes, t_first_request, t_last_byte)."""
    conn = PinnedHTTPSConnection("127.0.0.1", target.port, target.fingerprint, timeout=60, blocksize=READ)
    buffer = memoryview(bytearray(READ))
    began = time.perf_counter()
    headers = {"Range": f"bytes={start}-{end - 1}"}
    if target.auth:
        headers["Authorization"] = target.auth
    conn.request("GET", target.path, headers=headers)
    response = conn.getresponse()
    if response.status not in (200, 206):
        raise SystemExit(f"download refused: {response.status} {response.read(200)!r}")
    got = 0
    while got < end - start:
        n = response.readinto(buffer)
        if not n:
            break
        got += n
    done = time.perf_counter()
    conn.close()
    return got, began, done


def _fetch_job(job: tuple[Target, int, int]) -> tuple[int, float, float]:
    return fetch(*job)


def singles(pool: multiprocessing.pool.Pool, targets: list[Target], size: int, rounds: int = 3) -> list[float]:
    """MB/s of one whole-file download from each target, run in a pool process; the targets
    alternate, so a load change on the machine hits both, and the best round counts."""
    best = [0.0] * len(targets)
    for _ in range(rounds):
        for i, target in enumerate(targets):
            got, began, done = pool.apply(fetch, (target, 0, size))
            assert got == size, f"short download: {got} of {size}"
            best[i] = max(best[i], got / (done - began) / 1e6)
    return best


def concurrent(target: Target, size: int, clients: int) -> tuple[float, int]:
    """Aggregate MB/s of `clients` simultaneous downloads, one process each."""
    each = min(size, 256 * MIB)
    step = max((size - each) // max(clients - 1, 1), 0)
    jobs = [(target, i * step, i * step + each) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_fetch_job, jobs, chunksize=1)
    total = sum(r[0] for r in results)
    assert total == each * clients, "a concurrent download came up short"
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return total / elapsed / 1e6, total


# ---------------------------------------------------------------- the setup


@dataclass
class Setup:
    anvil: subprocess.Popen[bytes]
    url: str
    escrow: Escrow
    accounts: dict[str, LocalAccount]


def start_chain() -> Setup:
    binary = anvil_binary()
    if binary is None:
        raise SystemExit("anvil is not installed: run bin/setup")
    port = free_port()
    command = [binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "0",
               "--prune-history", "256", "--silent"]  # fmt: skip
    anvil = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    w3 = wait_ready(url, proc=anvil)
    bank: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [bank.address, hex(10**30)])  # type: ignore[arg-type]
    funder = TxSender(w3, bank, poll_interval=0.01)
    params = EscrowParams(ETHER, 600, 30 * 86400, 3600, 86400, 7 * 86400)
    escrow = Escrow(w3, deploy(funder, Account.create().address, params))
    accounts: dict[str, LocalAccount] = {name: Account.create() for name in ("buyer", "seller", "proxy")}
    for account in accounts.values():
        funder.send_value(account.address, 100 * ETHER)
    ProxyAgent(escrow, TxSender(w3, accounts["proxy"], poll_interval=0.01)).deposit(5 * ETHER)
    return Setup(anvil, url, escrow, accounts)


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(16 * MIB)  # repeated blocks: generation must not dominate the run
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            chunk = secrets.token_bytes(32) + chunk[32:] if len(chunk) > 32 else chunk
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def start_proxy(setup: Setup, home: Path, files: Path) -> tuple[subprocess.Popen[bytes], Endpoint]:
    home.mkdir()
    registrar = home / "registrar.json"
    deployment = setup.escrow.deployment
    Deployment(deployment.address, deployment.chain_id, deployment.block).save(registrar)
    password = secrets.token_urlsafe(16)
    save_keystore(home / "keystore", import_private_key(setup.accounts["proxy"].key.hex(), password, fast_kdf=True))
    fd = os.open(home / "password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    control, file_port = free_port(), free_port()
    config = home / "cpchain.toml"
    config.write_text(
        f'[core]\nrc_dir = "{home}"\n'
        f'[chain]\nmode = "local"\nlocal_provider_addr = "{setup.url}"\nregistrar_json = "{registrar}"\n'
        "poll_interval = 0.05\n"
        f'[logging]\nlevel = "WARNING"\nfile = "{home / "proxy.log"}"\n'
        f'[proxy]\nhost = "127.0.0.1"\nserver_port = {control}\nserver_file_port = {file_port}\n'
        f"server_stream_ws_port = {free_port()}\nserver_stream_http_port = {free_port()}\n"
        f"dht_port = {free_port()}\ntracker_link_port = {free_port()}\n"
        f'boot_nodes = ["127.0.0.1:{free_port()}"]\ntracker = "127.0.0.1:{free_port()}"\n'
        f'keystore = "{home / "keystore"}"\npassword_file = "{home / "password"}"\n'
        f'fetch_types = ["local"]\nlocal_roots = ["{files}"]\nfetch_max_bytes = {64 << 30}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPCHAIN_")}
    env |= {"CPCHAIN_HOME_CONFIG_PATH": str(config), "CPCHAIN_HOME": str(home)}
    proc = subprocess.Popen([str(ROOT / "bin" / "proxy-start")], env=env, stdin=subprocess.DEVNULL)
    wait_port(file_port, proc)
    wait_port(control, proc)
    fingerprint = fingerprint_of_pem((home / "proxy" / "tls" / "cert.pem").read_bytes())
    return proc, Endpoint(setup.accounts["proxy"].address, "127.0.0.1", control, file_port, fingerprint)


def place_order(setup: Setup, endpoint: Endpoint, cipher: Path, data_hash: str) -> int:
    """A seller-confirmed order for `cipher`, handed to the proxy, which fetches and claims it."""
    escrow, accounts = setup.escrow, setup.accounts
    w3 = escrow.w3
    product = ProductDescription(
        seller=accounts["seller"].address, title="bench file", ptype=ProductType.FILE, description="",
        price=10 * ETHER, category="", tags=(), data_hash=data_hash, storage_type="local",
        size=cipher.stat().st_size, nonce=secrets.token_hex(16),
    )  # fmt: skip
    buyer_key = ecies.public_key_bytes(ecies.generate_private_key())
    buyer = BuyerAgent(escrow, TxSender(w3, accounts["buyer"], poll_interval=0.01))
    order_id = buyer.place_order(
        desc_hash=product.desc_hash(), data_hash=bytes.fromhex(data_hash), buyer_key=buyer_key,
        seller=accounts["seller"].address, proxy=endpoint.address, price=10 * ETHER, fee=ETHER // 10,
        time_allowed=86400,
    )  # fmt: skip
    SellerAgent(escrow, TxSender(w3, accounts["seller"], poll_interval=0.01)).confirm(order_id)
    domain = Domain(escrow.deployment.chain_id, escrow.address)
    locator = Locator("local", {"path": str(cipher)})
    ProxyClient(accounts["seller"], domain).send_seller_data(
        endpoint, order_id, product, locator.to_json(), wrapped_key=ecies.wrap_key(buyer_key, os.urandom(32)),
        buyer_key=buyer_key,
    )  # fmt: skip
    return order_id


def serve_baseline(directory: str, port: str, cert: str, key: str) -> None:
    """The baseline: Twisted's static.File behind TLS, on Twisted's default reactor."""
    from twisted.internet import reactor, ssl
    from twisted.web import server, static

    pem = Path(cert).read_bytes() + Path(key).read_bytes()
    options = ssl.PrivateCertificate.loadPEM(pem).options()  # type: ignore[no-untyped-call]
    site = server.Site(static.File(directory))  # type: ignore[no-untyped-call]
    running: Any = reactor
    running.listenSSL(int(port), site, options, interface="127.0.0.1")
    running.run()


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--size-mib", type=int, help="file size in MiB (overrides --quick)")
    parser.add_argument("--concurrent", type=int, default=16, help="simultaneous downloads (default 16)")
    parser.add_argument("--serve-baseline", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(*args.serve_baseline)
        return 0
    size = (args.size_mib or (256 if args.quick else 1024)) * MIB
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        base = Path(tmp)
        files = base / "files"
        files.mkdir()
        log(f"chain and escrow on anvil; a {size // MIB} MiB file")
        setup = start_chain()
        proxy = baseline = None
        try:
            cipher = files / "cipher.bin"
            data_hash = write_random(cipher, size)
            proxy, endpoint = start_proxy(setup, base / "proxy-home", files)
            order_id = place_order(setup, endpoint, cipher, data_hash)
            log(f"proxy fetched and claimed order {order_id} ({time.monotonic() - started:.1f} s)")
            tls = base / "proxy-home" / "proxy" / "tls"
            baseline_port = free_port()
            command = [sys.executable, __file__, "--serve-baseline", str(files), str(baseline_port),
                       str(tls / "cert.pem"), str(tls / "key.pem")]  # fmt: skip
            baseline = subprocess.Popen(command, stdin=subprocess.DEVNULL)
            wait_port(baseline_port, baseline)
            domain = Domain(setup.escrow.deployment.chain_id, setup.escrow.address)
            token = download_token(setup.accounts["buyer"], order_id=order_id, proxy=endpoint.address, domain=domain,
                                   ttl=3600)  # fmt: skip
            via_proxy = Target(endpoint.file_port, endpoint.fingerprint, f"/orders/{order_id}", authorization(token))
            direct = Target(baseline_port, endpoint.fingerprint, "/cipher.bin", "")
            with multiprocessing.get_context("fork").Pool(1) as pool:
                pool.apply(fetch, (via_proxy, 0, 16 * MIB))  # warm both servers up
                pool.apply(fetch, (direct, 0, 16 * MIB))
                log("single downloads")
                baseline_mbps, proxy_mbps = singles(
                    pool, [direct, via_proxy], size, rounds=2 if size > 512 * MIB else 3
                )
            log(f"{args.concurrent} concurrent downloads")
            aggregate, moved = concurrent(via_proxy, size, args.concurrent)
            rss = vm_hwm_mb(proxy.pid)
        finally:
            for proc in (baseline, proxy):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            setup.anvil.terminate()
            setup.anvil.wait(timeout=10)
    ratio = proxy_mbps / baseline_mbps
    log(f"done in {time.monotonic() - started:.1f} s; goals: ratio >= {GOAL_RATIO}, peak RSS < {GOAL_RSS_MB} MB, "
        f"aggregate >= {GOAL_MBPS} MB/s")  # fmt: skip
    print(f"file size: {size // MIB} MiB")
    print(f"proxy download: {proxy_mbps:.0f} MB/s")
    print(f"baseline static.File download: {baseline_mbps:.0f} MB/s")
    print(f"ratio proxy/baseline: {ratio:.2f} x")
    print(f"proxy peak RSS: {rss:.1f} MB")
    print(f"concurrent downloads: {args.concurrent} streams")
    print(f"concurrent aggregate: {aggregate:.0f} MB/s")
    print(f"concurrent bytes: {moved // MIB} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real storage servers on 127.0.0.1 for the tests and the benchmark (js-ipfs and moto S3),
and the random files they transfer.

Owns starting them with fresh state on free ports and stopping them reliably. The platform
itself never uses this module: it talks to whatever IPFS node and S3 endpoint are configured.

js-ipfs 0.66 (npm `ipfs`, installed by bin/setup) runs as `jsipfs daemon --offline` with its
repo under a directory of the caller's; on node 20 it needs the `Promise.withResolvers`
polyfill in scripts/storage, loaded with NODE_OPTIONS=--require. Its config gets loopback
addresses on kernel-chosen ports, no bootstrap peers, no delegates, no MDNS and no
preloading, so it never contacts another host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import boto3

REPO_ROOT = Path(__file__).resolve().parents[2]
JSIPFS = REPO_ROOT / "node_modules" / ".bin" / "jsipfs"
POLYFILL = REPO_ROOT / "scripts" / "storage" / "promise-with-resolvers.js"
LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"


def write_random_file(path: Path, size: int) -> str:
    """`size` random bytes (nothing a backend could compress or deduplicate); their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class DevServerError(RuntimeError):
    """A development server did not start; the message says why and where its log is."""


class JsIpfsDaemon:
    """A js-ipfs daemon with its repo in `root/repo` (created on first start)."""

    def __init__(self, root: Path, *, ready_timeout: float = 60.0) -> None:
        self.root = root
        self.repo = root / "repo"
        self.log = root / "daemon.log"
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""

    def _env(self) -> dict[str, str]:
        node_options = f"{os.environ.get('NODE_OPTIONS', '')} --require {POLYFILL}".strip()
        return {**os.environ, "IPFS_PATH": str(self.repo), "NODE_OPTIONS": node_options}

    def _init_repo(self) -> None:
        if not JSIPFS.exists():
            raise DevServerError(f"{JSIPFS} is missing: run bin/setup (npm install)")
        self.root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(JSIPFS), "init", "--empty-repo"], env=self._env(), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise DevServerError(f"jsipfs init failed: {(done.stderr or done.stdout).strip()[-500:]}")
        path = self.repo / "config"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["Addresses"].update(
            {"API": LOOPBACK_ANY_PORT, "Gateway": LOOPBACK_ANY_PORT, "RPC": LOOPBACK_ANY_PORT,
             "Swarm": [LOOPBACK_ANY_PORT], "Delegates": []}
        )  # fmt: skip
        config["Bootstrap"] = []
        config["Discovery"] = {"MDNS": {"Enabled": False, "Interval": 10}, "webRTCStar": {"Enabled": False}}
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def _clear_leftovers(self) -> None:
        """A killed daemon leaves `repo.lock` (a directory) and a stale `api` file behind."""
        lock = self.repo / "repo.lock"
        if lock.is_dir():
            shutil.rmtree(lock)
        lock.unlink(missing_ok=True)
        (self.repo / "api").unlink(missing_ok=True)

    def start(self) -> JsIpfsDaemon:
        if not (self.repo / "config").exists():
            self._init_repo()
        self._clear_leftovers()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(JSIPFS), "daemon", "--offline", "--enable-preload=false"],
                env=self._env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.ready_timeout
        api_file = self.repo / "api"
        while "Daemon is ready" not in self.log.read_text(encoding="utf-8", errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DevServerError(f"jsipfs daemon did not start; see {self.log}")
            time.sleep(0.1)
        # The api file holds the API's multiaddr, e.g. /ip4/127.0.0.1/tcp/40123/http.
        parts = api_file.read_text(encoding="utf-8").strip().split("/")
        self.api = f"http://{parts[2]}:{parts[4]}"
        return self

    def stop(self) -> None:
        """SIGTERM (the daemon then releases its lock), SIGKILL after 15 s; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        self._clear_leftovers()

    def __enter__(self) -> JsIpfsDaemon:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class MotoS3:
    """moto's S3 server in a thread of this process, on a free loopback port.

    moto accepts any credentials and does not check signatures; it keeps objects in memory.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # large: imported only when a server is wanted

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def create_bucket(self, name: str) -> None:
        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="moto", aws_secret_access_key="moto",
        )  # fmt: skip
        client.create_bucket(Bucket=name)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

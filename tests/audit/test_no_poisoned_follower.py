"""No poisoned follower (issue 12, item 1): no single event can stop the shared audit or seal
follower for every tenant. Index keys are hashed or cut (projections/migrations/0012), and an
event a follower still cannot apply is dead-lettered, for its tenant alone, visibly
(projections/followers/runner.py, dead_letters.py; docs/audit.md)."""

from __future__ import annotations

import asyncio
import random
import string
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from eventstore.store import NewEvent, RecordedEvent, append
from projections.domain.events import GroupCreated, UserCreated, encode_event
from projections.followers import audit, dead_letters, runner
from projections.rebuild import rebuild_follower
from tests.conftest import Tenant, make_tenant
from tests.support import caught_up, cli, env_for, metric, new_user, token_headers

TOKEN_ACTOR = {"actor": {"kind": "token", "label": "okta"}}


def _random(n: int, rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=n))


async def _create(client: TestClient, pool: asyncpg.Pool, tenant: Tenant, kind: str, name: str) -> uuid.UUID:
    """Create a user (userName) or group (displayName) through HTTP; if the SCIM layer's input
    limit refuses it (400), append the event directly, as an event older than the limit."""
    path, body = ("Users", new_user(name)) if kind == "user" else ("Groups", {"displayName": name})
    r = await client.post(f"/scim/v2/{path}", json=body, headers=tenant.headers)
    if r.status == 201:
        return uuid.UUID((await r.json(content_type=None))["id"])
    assert r.status == 400, await r.text()
    stream = uuid.uuid4()
    event = UserCreated(resource={"userName": name}) if kind == "user" else GroupCreated(resource={"displayName": name})
    async with pool.acquire() as conn:
        await append(conn, tenant.id, kind, stream, 0, [NewEvent(f"{kind}.created", encode_event(event))], TOKEN_ACTOR)
    return stream


async def test_a_name_longer_than_a_btree_row_never_stops_the_audit_trail(
    client: TestClient, pool: asyncpg.Pool, dsn: str
) -> None:
    """The reproducer of item 1: a 2,676-character random userName (and group displayName, and
    token label) made the audit follower fail on its index ("index row size 2720 exceeds btree
    version 4 maximum 2704") and stop for every tenant, rebuild included. Now the event is
    audited, found again by exactly that name (not by another with the same first 200
    characters), another tenant's events keep flowing, nothing is dead-lettered, and
    `projections rebuild audit` and `verify audit` succeed."""
    rng = random.Random(12)
    acme = await make_tenant(pool, "acme")
    other = await make_tenant(pool, "other")
    name = _random(2676, rng)
    user = await _create(client, pool, acme, "user", name)
    group = await _create(client, pool, acme, "group", _random(2676, rng))
    label = _random(3000, rng)
    twin = label[:200] + _random(2800, rng)  # the same first 200 characters as `label`
    async with pool.acquire() as conn:
        for actor_label in (label, twin):
            await append(conn, acme.id, "user", uuid.uuid4(), 0,
                         [NewEvent("user.created", encode_event(UserCreated(resource={"userName": _random(8, rng)})))],
                         {"actor": {"kind": "token", "label": actor_label, "tokenId": actor_label}})
    r = await client.post("/scim/v2/Users", json=new_user("bob@example.com"), headers=other.headers)
    assert r.status == 201
    await caught_up(pool, "audit", "seal")  # and both still running

    async with pool.acquire() as conn:
        assert await dead_letters.counts(conn, ["audit", "seal"]) == {"audit": 0, "seal": 0}
        assert await audit.target_streams(conn, acme.id, name.upper()) == [user]
        assert await audit.target_streams(conn, acme.id, name[:200] + "x" * 2476) == []
        [entry] = await audit.search(conn, acme.id, audit.AuditQuery(target=str(group)))
        assert entry.type == "group.created"
        by_label = await audit.search(conn, acme.id, audit.AuditQuery(actor=label))
        assert [e.actor.label for e in by_label] == [label]
        assert await audit.search(conn, other.id, audit.AuditQuery(actor=label)) == []
    _, auditor = await token_headers(pool, other.id, "compliance", "audit")
    r = await client.get("/audit/v1/events", headers=auditor)
    assert [e["target"]["userName"] for e in (await r.json())["events"]] == ["bob@example.com"]

    env = env_for(dsn)
    await asyncio.to_thread(cli, "projections", "rebuild", "audit", env=env)
    verified = await asyncio.to_thread(cli, "projections", "verify", "audit", env=env)
    assert "identical to a rebuild" in verified.stderr
    async with pool.acquire() as conn:
        assert await audit.target_streams(conn, acme.id, name) == [user]


async def _poison(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    """An old event no follower can read: its JSON holds a number out of the codec's range
    (PostgreSQL's jsonb stores it exactly; msgspec refuses it). Its position."""
    data = '{"type": "user.created", "resource": {"userName": "x", "n": 1' + "0" * 400 + '.5}}'
    return int(await conn.fetchval(
        """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
           VALUES ($1, 'user', gen_random_uuid(), 1, 'user.created', $2::text::jsonb, '{}')
           RETURNING global_position""",
        tenant_id, data,
    ))


async def _malformed(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    """An event the audit cannot fold (a user.created without its resource); the seal, which
    hashes bytes, seals it. Its position."""
    return int(await conn.fetchval(
        """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
           VALUES ($1, 'user', gen_random_uuid(), 1, 'user.created', '{"type": "user.created"}', '{}')
           RETURNING global_position""",
        tenant_id,
    ))


async def _events(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    r = await client.get("/audit/v1/events", params={"limit": "1000"}, headers=headers)
    assert r.status == 200, await r.text()
    body: dict[str, object] = await r.json()
    assert r.headers["Audit-Complete-Through"] == str(body["completeThrough"])
    assert r.headers["Audit-Complete"] == str(body["complete"]).lower()
    return body


async def test_one_tenants_poisoned_event_is_dead_lettered_and_every_other_trail_goes_on(
    client: TestClient, pool: asyncpg.Pool, dsn: str
) -> None:
    """An event the followers cannot apply no longer stops them for everyone: it is a dead
    letter of its tenant (audit: that event alone is missing; seal: that tenant's chain stops
    there, as a chain cannot skip a link), the other tenants' trails and chains go on complete,
    the affected tenants' auditors are told their trail is incomplete from that position, the
    dead letters show in `projections status` and /metrics, and a rebuild succeeds (and keeps
    the dead letters, since those events still cannot be applied)."""
    acme, globex, other = [await make_tenant(pool, n) for n in ("acme", "globex", "other")]
    auditors = {}
    for t in (acme, globex, other):
        _, auditors[t.name] = await token_headers(pool, t.id, "compliance", "audit")
    assert (await client.post("/scim/v2/Users", json=new_user("before@example.com"), headers=other.headers)).status == 201
    async with pool.acquire() as conn:
        poisoned = await _poison(conn, acme.id)
        malformed = await _malformed(conn, globex.id)
    for t in (acme, globex, other):
        r = await client.post("/scim/v2/Users", json=new_user(f"after@{t.name}.example"), headers=t.headers)
        assert r.status == 201
    await caught_up(pool, "audit", "seal")  # and both still running

    body = await _events(client, auditors["other"])
    assert [e["target"]["userName"] for e in body["events"]] == ["before@example.com", "after@other.example"]
    assert body["complete"] is True and body["completeThrough"] >= body["events"][-1]["position"]

    for t, bad in ((acme, poisoned), (globex, malformed)):
        body = await _events(client, auditors[t.name])
        assert [e["target"]["userName"] for e in body["events"]] == [f"after@{t.name}.example"]
        assert body["complete"] is False and body["completeThrough"] == bad - 1
        assert f"first at position {bad}" in body["incompleteReason"]

    r = await client.get("/audit/v1/verify", headers=auditors["acme"])
    report = await r.json()
    assert report["ok"] is True and report["firstBreak"] is None  # a stop, not a break
    assert report["blockedAt"] == poisoned and report["sealed"] == 0 and report["unsealed"] == 2
    assert report["complete"] is False and report["completeThrough"] == poisoned - 1
    assert f"stopped for this tenant at position {poisoned}" in report["incompleteReason"]
    for t in (globex, other):
        report = await (await client.get("/audit/v1/verify", headers=auditors[t.name])).json()
        assert report["ok"] is True and report["complete"] is True and report["unsealed"] == 0

    async with pool.acquire() as conn:
        audit_dead = [(d.tenant_id, d.position) for d in await dead_letters.listing(conn, "audit")]
        seal_dead = [(d.tenant_id, d.position) for d in await dead_letters.listing(conn, "seal")]
    assert sorted(audit_dead) == sorted([(acme.id, poisoned), (globex.id, malformed)])
    assert seal_dead == [(acme.id, poisoned)]
    text = await (await client.get("/metrics")).text()
    assert metric(text, "scimledger_follower_dead_letters", projection="audit") == 2
    assert metric(text, "scimledger_follower_dead_letters", projection="seal") == 1
    assert metric(text, "scimledger_projection_state", projection="audit", state="running") == 1

    env = env_for(dsn)
    status = (await asyncio.to_thread(cli, "projections", "status", env=env)).stdout.splitlines()
    assert "dead letters" in status[0]
    rows = {line.split()[0]: line.split() for line in status[1:]}
    assert rows["audit"][2] == "running" and rows["audit"][6] == "2"
    assert rows["seal"][2] == "running" and rows["seal"][6] == "1"

    await asyncio.to_thread(cli, "projections", "rebuild", "audit", "seal", env=env)
    await caught_up(pool, "audit", "seal")
    verified = await asyncio.to_thread(cli, "projections", "verify", "audit", "seal", env=env)
    assert "identical to a rebuild" in verified.stderr
    async with pool.acquire() as conn:
        assert await dead_letters.counts(conn, ["audit", "seal"]) == {"audit": 2, "seal": 1}
    assert (await _events(client, auditors["other"]))["complete"] is True
    assert (await _events(client, auditors["acme"]))["complete"] is False


class _RefusesPoison(audit.AuditProjection):
    """The audit with a bug for one payload: it refuses the user named "poison"."""

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        if any(e.data.get("resource", {}).get("userName") == "poison" for e in events):
            raise ValueError("this build cannot fold that payload")
        await super().handle(conn, events)


async def test_a_rebuild_after_the_fix_replays_the_dead_letters_and_leaves_none(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """The runbook's repair: once the code is fixed, `projections rebuild` replays the log in
    order, applies the events that were dead-lettered, and replaces the projection's dead
    letters with the ones it finds (none), so the tenant's trail is complete again."""
    async with pool.acquire() as conn:
        for name in ("a", "poison", "b"):
            await append(conn, tenant.id, "user", uuid.uuid4(), 0,
                         [NewEvent("user.created", encode_event(UserCreated(resource={"userName": name})))], TOKEN_ACTOR)
        assert await runner.catch_up(conn, _RefusesPoison()) == runner.RUNNING
        assert await dead_letters.counts(conn, ["audit"]) == {"audit": 1}
        assert await audit.target_streams(conn, tenant.id, "poison") == []
    await rebuild_follower(pool, audit.AuditProjection())
    async with pool.acquire() as conn:
        assert await dead_letters.counts(conn, ["audit"]) == {"audit": 0}
        assert len(await audit.target_streams(conn, tenant.id, "poison")) == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 3

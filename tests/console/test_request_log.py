"""The request log behind the provisioning log: what it keeps of a request (no body, no secret),
its bounds (a bounded queue off the request path, retention and a per-tenant row cap), and the
page that shows it."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from service.app.request_log import Limits, RequestLog, RequestSummary, clean_detail
from service.http.console.keys import REQUEST_LOG
from service.http.keys import POOL
from tests.console.conftest import Org, sign_in
from tests.support import body_of, new_user, okta_headers


def summary(tenant_id: uuid.UUID, n: int, *, at: dt.datetime | None = None, status: int = 200) -> RequestSummary:
    return RequestSummary(
        tenant_id=tenant_id, at=at or dt.datetime.now(dt.UTC), token_id=None, token_label="okta",
        client="Okta SCIM Client 1.0.0", ip="127.0.0.1", request_id=f"r{n}", method="GET",
        path="/scim/v2/Users", resource_type="Users", resource_id=None, filter=None, status=status,
        scim_type=None, detail=None, duration_ms=1.5,
    )


async def logged(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch("SELECT * FROM request_log WHERE tenant_id = $1 ORDER BY id", tenant_id))


async def flush(client: TestClient) -> None:
    async with client.app[POOL].acquire() as conn:
        await client.app[REQUEST_LOG].flush(conn)


async def test_each_scim_request_is_summarised_without_body_or_secret(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    headers = {**okta_headers(org.scim.secret), "X-Request-Id": "okta-create-1"}
    r = await client.post("/scim/v2/Users", json=new_user("ada@example.com", password="Sup3r-secret!"), headers=headers)
    assert r.status == 201
    user_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Users", json=new_user("ada@example.com", password="Sup3r-secret!"),
                          headers={**headers, "X-Request-Id": "okta-create-2"})
    assert r.status == 409
    r = await client.get("/scim/v2/Users", params={"filter": 'userName eq "ada@example.com"'}, headers=headers)
    r = await client.get("/scim/v2/Users", headers={"Authorization": "Bearer scimledger_wrong"})
    assert r.status == 401  # names no tenant: not in any tenant's log
    await flush(client)
    rows = await logged(pool, org.id)
    assert [(r["method"], r["status"], r["request_id"]) for r in rows] == [
        ("POST", 201, "okta-create-1"), ("POST", 409, "okta-create-2"), ("GET", 200, "okta-create-1")]
    created, refused, listed = rows
    assert (created["resource_type"], created["resource_id"]) == ("Users", user_id)  # from Location
    assert refused["scim_type"] == "uniqueness" and "ada@example.com" in refused["detail"]
    assert listed["filter"] == 'userName eq "ada@example.com"'
    assert created["token_label"] == "okta" and created["token_id"] == org.scim.token_id
    assert created["client"] == "Okta SCIM Client 1.0.0" and created["ip"] == "127.0.0.1"
    everything = " ".join(str(v) for r in rows for v in r.values())
    assert "Sup3r-secret!" not in everything and org.scim.secret not in everything
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM request_log") == 3


async def test_the_provisioning_log_shows_refusals_with_their_reason(client: TestClient, org: Org) -> None:
    headers = okta_headers(org.scim.secret)
    await client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=headers)
    await client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=headers)
    await sign_in(client, org.scim.secret)
    html = await (await client.get("/console/provisioning")).text()  # flushes this worker's queue first
    assert "uniqueness" in html and "409" in html and "okta" in html
    assert '<tr class="rejected">' in html and "<svg" in html
    html = await (await client.get("/console/provisioning?outcome=rejected")).text()
    table = html.split('class="list requests"', 1)[1]
    assert table.count('<tr class="rejected">') == 1 and '<tr class="ok">' not in table


def test_the_queue_is_bounded_and_recording_does_no_io() -> None:
    log = RequestLog(Limits(capacity=3, batch=100))
    tenant = uuid.uuid4()
    for n in range(5):
        log.record(summary(tenant, n))  # synchronous: nothing to await, nothing written yet
    assert (log.pending, log.dropped) == (3, 2)


def test_details_mask_token_shaped_strings_and_are_capped() -> None:
    assert clean_detail("bad token scimledger_abc-DEF_123 given") == "bad token scimledger_*** given"
    assert len(clean_detail("x" * 5000) or "") == 500
    assert clean_detail("") is None


async def test_retention_and_the_row_cap_per_tenant(pool: asyncpg.Pool, org: Org) -> None:
    busy, quiet = org.id, uuid.uuid4()
    log = RequestLog(Limits(max_rows=3, retention=dt.timedelta(hours=1)))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    log.record(summary(quiet, 0, at=old))
    for n in range(1, 3):
        log.record(summary(quiet, n))
    for n in range(10, 16):
        log.record(summary(busy, n))
    async with pool.acquire() as conn:
        assert await log.flush(conn) == 9
        assert await log.prune(conn) == 4
    assert [r["request_id"] for r in await logged(pool, busy)] == ["r13", "r14", "r15"]
    assert [r["request_id"] for r in await logged(pool, quiet)] == ["r1", "r2"]


async def test_a_failing_database_costs_requests_nothing(client: TestClient, org: Org) -> None:
    """The flusher's errors are reported, never raised into requests; requests only queue."""
    log = client.app[REQUEST_LOG]
    errors: list[BaseException] = []

    class Broken:
        async def __aenter__(self) -> None:
            raise OSError("database unreachable")

        async def __aexit__(self, *exc: object) -> None:
            return None

    import asyncio
    task = asyncio.create_task(log.run(Broken, on_error=errors.append))
    r = await client.get("/scim/v2/Users", headers=org.scim.headers)
    assert r.status == 200
    await asyncio.sleep(log.limits.interval * 2.5)
    task.cancel()
    assert errors and isinstance(errors[0], OSError)


async def test_a_nul_in_a_request_never_fails_the_batch_it_is_flushed_in(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    """PostgreSQL text cannot hold U+0000: a filter carrying one is refused with 400, and its
    summary is stored with the NUL made visible, next to the other requests of the batch."""
    headers = okta_headers(org.scim.secret)
    bad = await client.get("/scim/v2/Users", params={"filter": 'userName eq "a\x00b"'}, headers=headers)
    assert bad.status == 400
    good = await client.get("/scim/v2/Users", headers=headers)
    assert good.status == 200
    await flush(client)
    rows = await logged(pool, org.id)
    assert [r["status"] for r in rows] == [400, 200]
    assert "\\x00" in rows[0]["filter"]

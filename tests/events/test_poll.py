"""Poll delivery (RFC 8936): `POST /events/v1/streams/{id}/poll` with a token of scope `events`:
acknowledgement, setErrs, maxEvents, moreAvailable, long polling, and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from projections.domain import security_events as sets
from service.app import set_keys, streams
from service.runtime.config import Settings
from tests.conftest import Tenant, make_tenant
from tests.events.receiver import verify
from tests.support import auth_headers, bearer, body_of, new_user, token_headers


async def poll_stream(pool: asyncpg.Pool, settings: Settings, tenant: Tenant) -> tuple[str, dict[str, str]]:
    """A poll stream of the tenant and the headers of an `events` token of the tenant."""
    async with pool.acquire() as conn:
        stream_id = await streams.create_stream(conn, tenant.id, kek=set_keys.key_encryption_key(settings.data_dir))
    _, headers = await token_headers(pool, tenant.id, "app", "events")
    return f"/events/v1/streams/{stream_id}/poll", headers


async def poll(client: TestClient, path: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post(path, json=body, headers=headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_a_poll_client_acknowledges_and_receives_only_what_is_new(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """RFC 8936 2.4: unacknowledged SETs come again; `ack` removes them; maxEvents bounds an
    answer and moreAvailable says there is more; the sets are keyed by jti."""
    path, headers = await poll_stream(pool, settings, tenant)
    for i in range(3):
        await client.post("/scim/v2/Users", json=new_user(f"p{i}@example.com"), headers=tenant.headers)
    first: dict[str, Any] = {}
    for _ in range(100):  # the streams follower runs a few ms behind the writes
        first = await poll(client, path, headers, maxEvents=2, returnImmediately=True)
        if first["moreAvailable"]:  # all three enqueued
            break
        await asyncio.sleep(0.05)
    assert len(first["sets"]) == 2 and first["moreAvailable"] is True
    again = await poll(client, path, headers, maxEvents=2, returnImmediately=True)
    assert again["sets"].keys() == first["sets"].keys()  # not acknowledged: the same again
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    for jti, token in first["sets"].items():
        _, claims = verify(token, jwks)
        assert claims["jti"] == jti and sets.CREATE_NOTICE in claims["events"]
        assert claims["aud"].startswith("urn:scimledger:stream:")
    rest = await poll(client, path, headers, ack=list(first["sets"]), returnImmediately=True)
    assert len(rest["sets"]) == 1 and not rest["sets"].keys() & first["sets"].keys()
    assert rest["moreAvailable"] is False
    done = await poll(client, path, headers, ack=list(rest["sets"]), maxEvents=0)
    assert done == {"sets": {}, "moreAvailable": False}
    assert (await poll(client, path, headers, returnImmediately=True))["sets"] == {}


async def test_set_errs_settle_a_set_and_are_recorded(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """RFC 8936 2.4.3: a SET reported in setErrs is settled (not sent again) and the error kept."""
    path, headers = await poll_stream(pool, settings, tenant)
    await client.post("/scim/v2/Users", json=new_user("err@example.com"), headers=tenant.headers)
    got = await poll(client, path, headers)  # long poll: returns when the SET is there
    (jti,) = got["sets"]
    after = await poll(client, path, headers, setErrs={jti: {"err": "jwtAud", "description": "wrong aud"}},
                       returnImmediately=True)
    assert after["sets"] == {}
    async with pool.acquire() as conn:
        status = await streams.stream_status(conn, uuid.UUID(path.split("/")[4]))
    assert status.stream.failed == 1 and "jwtAud: wrong aud" in (status.stream.last_error or "")


async def test_a_long_poll_returns_when_a_set_arrives(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """RFC 8936 2.4: without returnImmediately the transmitter holds the request until a SET."""
    path, headers = await poll_stream(pool, settings, tenant)
    waiting = asyncio.create_task(poll(client, path, headers))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    started = asyncio.get_running_loop().time()
    await client.post("/scim/v2/Users", json=new_user("late@example.com"), headers=tenant.headers)
    got = await asyncio.wait_for(waiting, 5)
    assert len(got["sets"]) == 1 and asyncio.get_running_loop().time() - started < 2.0


async def test_another_tenants_stream_is_a_404_and_the_scopes_keep_their_rooms(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """Tenant isolation: another tenant's stream id answers as if it did not exist. A token of
    scope `events` reaches the poll endpoint only; a `scim` token cannot poll."""
    path, headers = await poll_stream(pool, settings, tenant)
    other = await make_tenant(pool, "globex")
    _, other_events = await token_headers(pool, other.id, "app", "events")
    r = await client.post(path, json={"returnImmediately": True}, headers=other_events)
    assert r.status == 404
    r = await client.post(f"/events/v1/streams/{uuid.uuid4()}/poll", json={}, headers=headers)
    assert r.status == 404
    assert (await client.post("/events/v1/streams/not-a-uuid/poll", json={}, headers=headers)).status == 404
    assert (await client.get("/scim/v2/Users", headers=headers)).status == 403
    assert (await client.get("/audit/v1/events", headers=headers)).status == 403
    r = await client.post(path, json={"returnImmediately": True}, headers=tenant.headers)
    assert r.status == 403
    r = await client.post(path, json={}, headers=bearer("scimledger_nope"))
    assert r.status == 401 and "Bearer" in r.headers["WWW-Authenticate"]


async def test_a_push_stream_cannot_be_polled(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    async with pool.acquire() as conn:
        stream_id = await streams.create_stream(conn, tenant.id, kek=set_keys.key_encryption_key(settings.data_dir),
                                                push="http://127.0.0.1:9/events")
    _, headers = await token_headers(pool, tenant.id, "app", "events")
    assert (await client.post(f"/events/v1/streams/{stream_id}/poll", json={}, headers=headers)).status == 404


async def test_hostile_poll_bodies_are_rfc_8936_errors_never_a_500(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """RFC 8936 2.6: a request the transmitter cannot use is a 400 {"err": "invalid_request"}."""
    path, headers = await poll_stream(pool, settings, tenant)
    hostile: list[Any] = [
        b"not json", b"[]", b'{"maxEvents": -1}', b'{"maxEvents": 100000}', b'{"maxEvents": "7"}',
        b'{"ack": "x"}', b'{"ack": [""]}', b'{"ack": ["' + b"x" * 100 + b'"]}',
        b'{"ack": [' + b",".join(b'"a"' for _ in range(1001)) + b"]}",
        b'{"setErrs": {"a": {"description": "no err"}}}', b'{"setErrs": {"a": {"err": ""}}}',
        b'{"returnImmediately": "yes"}',
    ]
    for body in hostile:
        r = await client.post(path, data=body, headers=auth_headers(headers["Authorization"].split()[1],
                                                                     content_type="application/json"))
        assert r.status == 400, body
        answer = await body_of(r)
        assert answer["err"] == "invalid_request" and answer["description"]


async def test_service_provider_config_advertises_security_events_to_a_tenant_with_a_stream(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant
) -> None:
    """RFC 9967 (the ServiceProviderConfig attributes it adds to RFC 7643 5): `securityEvents`
    with the event URIs; shown once the tenant has a stream (RFC 7643-only clients refuse it)."""
    r = await client.get("/scim/v2/ServiceProviderConfig", headers=tenant.headers)
    assert "securityEvents" not in await body_of(r)
    await poll_stream(pool, settings, tenant)
    r = await client.get("/scim/v2/ServiceProviderConfig", headers=tenant.headers)
    advertised = (await body_of(r))["securityEvents"]
    assert advertised == {"eventUris": list(sets.SCIM_EVENT_URIS), "asyncRequest": "none"}
    assert sets.DEACTIVATE in advertised["eventUris"]

"""Push delivery (RFC 8935) to a real receiver on 127.0.0.1: SETs (RFC 8417) signed with ES256
and verified against /.well-known/jwks.json, the RFC 9967 event URIs of a user's and a group's
life in log order, CAEP session-revoked, retries, the RFC 8935 2.3 error codes, key rotation."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from projections.domain import security_events as sets
from service.app import set_keys, streams
from service.runtime.config import Settings
from tests.conftest import Tenant
from tests.events.receiver import Receiver, verify
from tests.support import CORE_GROUP, body_of, deactivate_okta, new_user, patch


async def push_stream(pool: asyncpg.Pool, settings: Settings, tenant: Tenant, url: str, **options: Any) -> str:
    async with pool.acquire() as conn:
        stream_id = await streams.create_stream(
            conn, tenant.id, kek=set_keys.key_encryption_key(settings.data_dir), push=url, **options)
    return str(stream_id)


async def settled(pool: asyncpg.Pool, stream_id: uuid.UUID, delivered: int, within: float = 10.0) -> streams.StreamStatus:
    """The stream's status once `delivered` SETs are settled (a 202 is settled just after it)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with pool.acquire() as conn:
            status = await streams.stream_status(conn, stream_id)
        if status.stream.delivered >= delivered or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.05)


async def jwks_of(client: TestClient) -> dict[str, Any]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status == 200 and r.content_type == "application/json"
    return await r.json()


async def test_a_users_and_a_groups_life_arrives_in_order_signed_with_the_rfc_9967_uris(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver
) -> None:
    """RFC 9967 2.1 (sub_id in the scim format, no sub), 2.4 (the prov events; a membership
    change as prov:patch of the group), RFC 8417 2.2 (iss, aud, iat, jti, txn), RFC 8935 2.1
    (POST as application/secevent+jwt); CAEP session-revoked on deactivation and deletion."""
    await push_stream(pool, settings, tenant, receiver.url, events=["prov", "caep"], audience="https://app.example")
    h = tenant.headers
    r = await client.post("/scim/v2/Users", json=new_user("alice@example.com", externalId="hr-1"), headers=h)
    uid = (await body_of(r))["id"]
    await client.patch(f"/scim/v2/Users/{uid}", json=patch({"op": "replace", "path": "displayName", "value": "A"}), headers=h)
    await client.patch(f"/scim/v2/Users/{uid}", json=deactivate_okta(), headers=h)
    await client.patch(f"/scim/v2/Users/{uid}", json=patch({"op": "replace", "value": {"active": True}}), headers=h)
    r = await client.put(f"/scim/v2/Users/{uid}", json=new_user("alice@example.com", externalId="hr-1", displayName="Alice"), headers=h)
    assert r.status == 200
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "eng"}, headers=h)
    gid = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": uid}]}), headers=h)
    assert r.status in (200, 204)
    assert (await client.delete(f"/scim/v2/Users/{uid}", headers=h)).status == 204

    tokens = await receiver.wait_for(11)
    jwks = await jwks_of(client)
    decoded = [verify(t, jwks) for t in tokens]
    assert receiver.content_types == {"application/secevent+jwt"}
    for header, claims in decoded:
        assert header["typ"] == "secevent+jwt" and header["alg"] == "ES256"
        assert claims["iss"] == "http://127.0.0.1:8080" and claims["aud"] == "https://app.example"
        assert {"iat", "jti", "txn", "sub_id", "events"} <= set(claims) and "sub" not in claims
    uris = [next(iter(c["events"])) for _, c in decoded]
    assert uris[:8] == [sets.CREATE_NOTICE, sets.PATCH_NOTICE, sets.DEACTIVATE, sets.SESSION_REVOKED,
                        sets.ACTIVATE, sets.PUT_NOTICE, sets.CREATE_NOTICE, sets.PATCH_NOTICE]
    assert sorted(uris[8:]) == sorted([sets.DELETE, sets.SESSION_REVOKED, sets.PATCH_NOTICE])
    subjects = [c["sub_id"] for _, c in decoded]
    assert subjects[0] == {"format": "scim", "uri": f"/Users/{uid}", "externalId": "hr-1"}
    assert subjects[6]["uri"] == f"/Groups/{gid}"
    assert decoded[7][1]["events"][sets.PATCH_NOTICE]["attributes"] == ["members"]
    assert decoded[1][1]["events"][sets.PATCH_NOTICE]["attributes"] == ["displayName"]
    assert all(c["txn"] for _, c in decoded)  # the request id of the write
    assert len({c["jti"] for _, c in decoded}) == 11


async def test_full_form_carries_the_resource_and_the_patch(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver
) -> None:
    """RFC 9967 2.4.1-2.4.3: `full` events carry `data`, the resource (create, put) or the
    PatchOp (patch)."""
    await push_stream(pool, settings, tenant, receiver.url, form=sets.FULL)
    r = await client.post("/scim/v2/Users", json=new_user("bob@example.com"), headers=tenant.headers)
    uid = (await body_of(r))["id"]
    await client.patch(f"/scim/v2/Users/{uid}", json=patch({"op": "replace", "path": "displayName", "value": "Bob"}),
                       headers=tenant.headers)
    await client.put(f"/scim/v2/Users/{uid}", json=new_user("bob@example.com", displayName="Bobby"), headers=tenant.headers)
    jwks = await jwks_of(client)
    created, patched, put = (verify(t, jwks)[1]["events"] for t in await receiver.wait_for(3))
    assert created[sets.CREATE_FULL]["data"]["userName"] == "bob@example.com"
    assert created[sets.CREATE_FULL]["data"]["id"] == uid
    assert patched[sets.PATCH_FULL]["data"]["Operations"] == [{"op": "replace", "path": "displayName", "value": "Bob"}]
    assert put[sets.PUT_FULL]["data"]["displayName"] == "Bobby" and put[sets.PUT_FULL]["version"] == 'W/"3"'


async def test_a_receiver_answering_503_for_a_while_gets_everything_once_it_recovers(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver, fast_retries: None
) -> None:
    """RFC 8935 2.3 / 2.4: a 5xx is not a refusal; the SET is retried (backoff with jitter) and
    nothing after it is sent before it, so order holds; every retry is counted."""
    stream_id = await push_stream(pool, settings, tenant, receiver.url)
    receiver.script = [(503, None)] * 6
    for i in range(5):
        await client.post("/scim/v2/Users", json=new_user(f"u{i}@example.com"), headers=tenant.headers)
    jwks = await jwks_of(client)
    accepted = [verify(t, jwks)[1] for t in await receiver.wait_for(5)]
    assert [c["events"][sets.CREATE_NOTICE]["version"] for c in accepted] == ['W/"1"'] * 5
    assert len({c["jti"] for c in accepted}) == 5
    assert receiver.tokens.count(receiver.tokens[0]) >= 1 and len(receiver.tokens) == 11
    status = await settled(pool, uuid.UUID(stream_id), 5)
    assert status.stream.retried == 6 and status.stream.delivered == 5 and status.pending == 0
    assert status.stream.state == "enabled" and "503" in (status.stream.last_error or "")


async def test_rfc_8935_error_codes_stop_the_stream_or_refuse_one_set(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver, fast_retries: None
) -> None:
    """RFC 8935 2.3: `invalid_audience` refuses the stream: it shows `error` and the same SET is
    tried again until accepted (nothing dropped); `invalid_request` refuses that SET alone: it
    is kept aside, counted, and the next one goes."""
    stream_id = uuid.UUID(await push_stream(pool, settings, tenant, receiver.url))
    receiver.script = [(400, {"err": "invalid_audience", "description": "not us"})] * 3
    receiver.script += [(400, {"err": "invalid_request", "description": "bad SET"})]
    for i in range(3):
        await client.post("/scim/v2/Users", json=new_user(f"e{i}@example.com"), headers=tenant.headers)
    await receiver.wait_for(2)
    status = await settled(pool, stream_id, 2)
    assert status.stream.state == "enabled"  # back after the receiver took one
    assert status.stream.failed == 1 and status.refused == 1 and status.stream.delivered == 2
    assert status.stream.retried == 3
    jwks = await jwks_of(client)
    refused = verify(receiver.tokens[3], jwks)[1]
    assert refused["jti"] not in {verify(t, jwks)[1]["jti"] for t in receiver.accepted}
    assert f"SET {refused['jti']} refused" in (status.stream.last_error or "")


async def test_a_stream_in_error_shows_it_in_status_and_metrics(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver, fast_retries: None
) -> None:
    stream_id = await push_stream(pool, settings, tenant, receiver.url)
    receiver.script = [(401, None)] * 1000
    await client.post("/scim/v2/Users", json=new_user("x@example.com"), headers=tenant.headers)
    await receiver.wait_for(2, attempts=True)
    text = await (await client.get("/metrics")).text()
    assert f'scimledger_stream_error{{delivery="push",stream="{stream_id}",tenant="{tenant.id}"}} 1.0' in text
    assert f'scimledger_stream_pending_sets{{delivery="push",stream="{stream_id}",tenant="{tenant.id}"}} 1.0' in text


async def test_a_key_rotation_keeps_old_sets_verifiable(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver, monkeypatch: Any
) -> None:
    """RFC 7517 5 / RFC 8417 2.3: after `rotate`, new SETs carry the new kid, and the JWKS
    publishes both keys for the overlap, so a SET signed before verifies still."""
    monkeypatch.setattr(set_keys, "REFRESH_S", 0.0)
    await push_stream(pool, settings, tenant, receiver.url)
    await client.post("/scim/v2/Users", json=new_user("before@example.com"), headers=tenant.headers)
    (old,) = await receiver.wait_for(1)
    async with pool.acquire() as conn:
        new_kid = await set_keys.rotate(conn, set_keys.key_encryption_key(settings.data_dir))
    await client.post("/scim/v2/Users", json=new_user("after@example.com"), headers=tenant.headers)
    _, new = await receiver.wait_for(2)
    jwks = await jwks_of(client)
    assert len(jwks["keys"]) == 2 and all("d" not in k for k in jwks["keys"])
    old_header, _ = verify(old, jwks)
    new_header, _ = verify(new, jwks)
    assert new_header["kid"] == new_kid != old_header["kid"]


async def test_a_slow_receiver_delays_neither_writes_nor_another_stream(
    client: TestClient, pool: asyncpg.Pool, settings: Settings, tenant: Tenant, receiver: Receiver
) -> None:
    """A receiver that never answers (a socket that accepts and stays silent) holds up its own
    stream only: writes return at once and the other stream gets its SETs."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        await push_stream(pool, settings, tenant, f"http://127.0.0.1:{silent.getsockname()[1]}/events")
        await push_stream(pool, settings, tenant, receiver.url)
        started = asyncio.get_running_loop().time()
        for i in range(5):
            r = await client.post("/scim/v2/Users", json=new_user(f"s{i}@example.com"), headers=tenant.headers)
            assert r.status == 201
        assert asyncio.get_running_loop().time() - started < 2.0
        await receiver.wait_for(5, within=5.0)
    finally:
        silent.close()

"""The Directory's searches and paging, through the SCIM list machinery, and the timeline's
diffs folded from the audit history."""

from __future__ import annotations

import re

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import erasure, tenancy
from service.cli.context import cli_actor
from tests.console.conftest import Org, sign_in
from tests.support import CORE_GROUP, body_of, caught_up, new_user, okta_headers, patch


def user_names(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/console/users/[0-9a-f-]+">([^<]+)</a>', body)


async def test_search_by_email_name_status_and_prefix(client: TestClient, org: Org) -> None:
    headers = okta_headers(org.scim.secret)
    for user_name, email, given, family, active in (
        ("ada", "ada.lovelace@example.com", "Ada", "Lovelace", False),
        ("grace", "grace@example.com", "Grace", "Hopper", True),
        ("adam", "adam@example.com", "Adam", "Smith", True),
    ):
        r = await client.post("/scim/v2/Users", headers=headers, json=new_user(
            user_name, active=active, emails=[{"value": email, "primary": True}],
            name={"givenName": given, "familyName": family}, displayName=f"{given} {family}"))
        assert r.status == 201
    await sign_in(client, org.scim.secret)

    async def names(**params: str) -> list[str]:
        r = await client.get("/console/directory", params=params)
        assert r.status == 200
        return user_names(await r.text())

    assert await names(q="ADA.lovelace@example.com") == ["ada"]  # an email, case-insensitive
    assert await names(q="Grace Hopper") == ["grace"]  # a displayName
    assert await names(q="adam") == ["adam"]  # a userName, exactly
    assert await names(q="ad", match="prefix") == ["ada", "adam"]
    assert await names(q="Hop", match="prefix") == ["grace"]  # a family name's start
    assert await names(status="inactive") == ["ada"]
    assert await names(status="active") == ["grace", "adam"]
    assert await names(q='"), or (userName pr', match="prefix") == []  # a value, never filter syntax


async def test_a_groups_members_are_paged_along_the_walk(client: TestClient, org: Org) -> None:
    headers = okta_headers(org.scim.secret)
    ids = []
    for i in range(130):
        r = await client.post("/scim/v2/Users", headers=headers, json=new_user(f"member{i:03}@example.com"))
        ids.append((await body_of(r))["id"])
    r = await client.post("/scim/v2/Groups", headers=headers, json={
        "schemas": [CORE_GROUP], "displayName": "Everyone", "members": [{"value": i} for i in ids[:120]]})
    group_id = (await body_of(r))["id"]
    await sign_in(client, org.scim.secret)
    first = await (await client.get(f"/console/groups/{group_id}")).text()
    members = user_names(first.split('id="members-title"', 1)[1])
    assert len(members) == 100 and members[0] == "member000@example.com"
    assert "1\u2013100 of 120" in first  # an en dash
    found = re.search(r'href="(/console/groups/[^"]+\?start=101)" rel="next"', first)
    assert found
    second = await (await client.get(found.group(1))).text()
    members = user_names(second.split('id="members-title"', 1)[1])
    assert members == [f"member{i:03}@example.com" for i in range(100, 120)]
    assert 'rel="next"' not in second.split('id="timeline-title"', 1)[0]


async def test_the_timeline_shows_before_and_after(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    headers = okta_headers(org.scim.secret)
    r = await client.post("/scim/v2/Users", headers=headers, json=new_user("ada@example.com", title="Analyst"))
    user_id = (await body_of(r))["id"]
    await client.patch(f"/scim/v2/Users/{user_id}", headers=headers,
                       json=patch({"op": "replace", "path": "title", "value": "Countess <b>"}))
    await caught_up(pool, "audit")
    await sign_in(client, org.scim.secret)
    html = await (await client.get(f"/console/users/{user_id}")).text()
    updated = html.split("user.updated", 1)[1].split("</table>", 1)[0]
    assert "<del>Analyst</del>" in updated and "<ins>Countess &lt;b&gt;</ins>" in updated  # escaped
    assert "2 events in the audit trail" in html


async def test_a_deleted_users_and_groups_page_keeps_its_history(
        client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    """A deleted resource (RFC 7644 3.6) is gone from the views, not from the log: its page says so
    and still shows the timeline."""
    headers = okta_headers(org.scim.secret)
    r = await client.post("/scim/v2/Users", headers=headers, json=new_user("gone@example.com"))
    user_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Groups", headers=headers, json={"schemas": [CORE_GROUP], "displayName": "Gone"})
    group_id = (await body_of(r))["id"]
    assert (await client.delete(f"/scim/v2/Users/{user_id}", headers=headers)).status == 204
    assert (await client.delete(f"/scim/v2/Groups/{group_id}", headers=headers)).status == 204
    await caught_up(pool, "audit")
    await sign_in(client, org.scim.secret)
    for kind, ident, created, deleted in (("user", user_id, "user.created", "user.deleted"),
                                          ("group", group_id, "group.created", "group.deleted")):
        html = await (await client.get(f"/console/{kind}s/{ident}")).text()
        assert f"This {kind} was deleted (<code>{ident}</code>)" in html
        timeline = html.split('id="timeline-title"', 1)[1]
        assert created in timeline and deleted in timeline


async def test_an_erased_users_events_show_its_id_and_no_personal_data(
        client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    """After an erasure (docs/privacy.md) the audit page lists the subject's events by id, with
    neither its old userName nor a placeholder word standing for a missing name."""
    headers = okta_headers(org.scim.secret)
    r = await client.post("/scim/v2/Users", headers=headers, json=new_user("erase.me@example.com"))
    user_id = (await body_of(r))["id"]
    async with pool.acquire() as conn:
        tenant = await tenancy.get_tenant(conn, "acme")
        await erasure.erase_user(conn, tenant, user_id, "request 9", cli_actor("user erase"))
    await caught_up(pool, "audit")
    await sign_in(client, org.audit_secret)
    html = await (await client.get("/console/audit")).text()
    rows = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert f">{user_id}</a>" in rows and "erase.me@example.com" not in html and ">None<" not in rows
    assert "user.erased" in rows

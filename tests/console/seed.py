"""A small tenant that looks like a real one, pushed over HTTP as the IdPs push it: users (one
deactivated by Okta with a known request id), a group, an Entra connection, and refusals."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.test_utils import TestClient

from tests.console.conftest import Org
from tests.support import CORE_GROUP as CORE_GROUP
from tests.support import (
    ENTRA_CLIENT,
    body_of,
    deactivate_okta,
    entra_headers,
    new_user,
    okta_headers,
    patch,
    token_headers,
)

PEOPLE = [
    ("ada@example.com", "Ada", "Lovelace"),
    ("grace@example.com", "Grace", "Hopper"),
    ("alan@example.com", "Alan", "Turing"),
    ("katherine@example.com", "Katherine", "Johnson"),
    ("edsger@example.com", "Edsger", "Dijkstra"),
    ("barbara@example.com", "Barbara", "Liskov"),
]
DEACTIVATION_REQUEST_ID = "okta-7f3a9c2e-deactivate-ada"


@dataclass
class Seeded:
    users: dict[str, str]  # userName -> id
    group_id: str


def person(user_name: str, given: str, family: str) -> dict[str, object]:
    return new_user(user_name, name={"givenName": given, "familyName": family},
                    displayName=f"{given} {family}", emails=[{"value": user_name, "type": "work", "primary": True}],
                    title="Engineer")


async def seed(client: TestClient, org: Org, pool: object) -> Seeded:
    okta = okta_headers(org.scim.secret)
    users: dict[str, str] = {}
    for user_name, given, family in PEOPLE:
        r = await client.post("/scim/v2/Users", json=person(user_name, given, family), headers=okta)
        assert r.status == 201, await r.text()
        users[user_name] = (await body_of(r))["id"]
    # Okta's import looks users up by userName first
    r = await client.get("/scim/v2/Users", params={"filter": 'userName eq "ada@example.com"'}, headers=okta)
    assert r.status == 200
    # a duplicate push: refused (409 uniqueness), shown in the provisioning log
    r = await client.post("/scim/v2/Users", json=person("ada@example.com", "Ada", "Lovelace"), headers=okta)
    assert r.status == 409
    r = await client.post("/scim/v2/Groups", json={
        "schemas": [CORE_GROUP], "displayName": "Engineering",
        "members": [{"value": users[u]} for u, _, _ in PEOPLE[:4]],
    }, headers=okta)
    assert r.status == 201, await r.text()
    group_id = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Users/{users['grace@example.com']}", headers=okta,
                           json=patch({"op": "replace", "value": {"title": "Rear Admiral"}}))
    assert r.status == 200
    # Okta deactivates Ada, with its own request id
    r = await client.patch(f"/scim/v2/Users/{users['ada@example.com']}", json=deactivate_okta(),
                           headers={**okta, "X-Request-Id": DEACTIVATION_REQUEST_ID})
    assert r.status == 200
    # an Entra connection of the same tenant, one of whose pushes is malformed
    _, entra = await token_headers(pool, org.id, "entra-prod", "scim", client=ENTRA_CLIENT)  # type: ignore[arg-type]
    r = await client.get("/scim/v2/Users", params={"filter": 'userName eq "linus@example.com"'}, headers=entra)
    assert r.status == 200
    r = await client.post("/scim/v2/Users", json=person("linus@example.com", "Linus", "Torvalds"), headers=entra)
    assert r.status == 201
    users["linus@example.com"] = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Users/{users['linus@example.com']}", headers=entra,
                           json=patch({"op": "Frobnicate", "path": "active", "value": "False"}))
    assert r.status == 400
    assert entra_headers  # the shape Entra sends, for readers
    return Seeded(users, group_id)

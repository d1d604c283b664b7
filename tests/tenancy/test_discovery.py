"""Discovery (RFC 7644 section 4; RFC 7643 sections 5, 6, 7 and 8.5 to 8.7): the documents are
complete, and true of what the handlers do.

Conformance checkers (scim2-tester, scimverify) build their checks from /Schemas, so each
characteristic advertised there is tested against the real handlers below.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.runtime.config import Settings
from service.scim import schema
from tests.conftest import Tenant
from tests.support import ERROR_SCHEMA, LIST_RESPONSE

BASE = "/scim/v2"
DISCOVERY_PATHS = [
    "/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/User", "/Schemas",
    f"/Schemas/{schema.CORE_USER}",
]


async def get(client: TestClient, tenant: Tenant, path: str) -> tuple[int, Any]:
    resp = await client.get(BASE + path, headers=tenant.headers)
    return resp.status, await resp.json(content_type=None)


# --- /ServiceProviderConfig (RFC 7643 section 5) ------------------------------------------------

async def test_service_provider_config_says_what_the_server_does(
    client: TestClient, tenant: Tenant, settings: Settings
) -> None:
    status, spc = await get(client, tenant, "/ServiceProviderConfig")
    assert status == 200
    assert spc["schemas"] == [schema.SERVICE_PROVIDER_CONFIG_SCHEMA]
    assert spc["patch"] == {"supported": True}
    assert spc["bulk"]["supported"] is False
    assert spc["filter"] == {"supported": True, "maxResults": settings.max_page_size}
    assert spc["changePassword"] == {"supported": False}
    assert spc["sort"] == {"supported": True}
    assert spc["etag"] == {"supported": True}
    scheme, oauth2 = spc["authenticationSchemes"]  # a bearer token; OAuth client credentials
    assert scheme["type"] == "oauthbearertoken" and scheme["primary"] is True
    assert scheme["name"] and scheme["description"]
    assert oauth2["type"] == "oauthbearertoken" and oauth2["primary"] is False
    assert "/oauth2/token" in oauth2["description"]


async def test_filter_max_results_is_the_page_cap(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 3.4.2.4: a count above maxResults is answered with at most maxResults."""
    _, spc = await get(client, tenant, "/ServiceProviderConfig")
    status, page = await get(client, tenant, f"/Users?count={spc['filter']['maxResults'] + 500}")
    assert status == 200 and page["itemsPerPage"] <= spc["filter"]["maxResults"]


async def test_bulk_is_not_served(client: TestClient, tenant: Tenant) -> None:
    """bulk.supported is false (RFC 7644 3.7): /Bulk is not an endpoint."""
    resp = await client.post(f"{BASE}/Bulk", headers=tenant.headers, json={})
    assert resp.status in (404, 405, 501)
    assert (await resp.json(content_type=None))["schemas"] == [ERROR_SCHEMA]


async def test_etag_is_true_of_users(client: TestClient, tenant: Tenant) -> None:
    """etag.supported (RFC 7644 3.14): ETag on the resource, 304 on If-None-Match."""
    resp = await client.post(f"{BASE}/Users", headers=tenant.headers,
                             json={"schemas": [schema.CORE_USER], "userName": "etag@example.com"})
    user = await resp.json(content_type=None)
    assert resp.headers["ETag"] == user["meta"]["version"]
    again = await client.get(f"{BASE}/Users/{user['id']}",
                             headers={**tenant.headers, "If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


# --- /ResourceTypes (RFC 7643 section 6) ----------------------------------------------------------

async def test_resource_types_list_and_each_one(client: TestClient, tenant: Tenant) -> None:
    status, listing = await get(client, tenant, "/ResourceTypes")
    assert status == 200 and listing["schemas"] == [LIST_RESPONSE]
    by_id = {rt["id"]: rt for rt in listing["Resources"]}
    assert set(by_id) == {"User", "Group"} and listing["totalResults"] == 2
    assert by_id["User"]["endpoint"] == "/Users" and by_id["User"]["schema"] == schema.CORE_USER
    assert by_id["User"]["schemaExtensions"] == [{"schema": schema.ENTERPRISE_USER, "required": False}]
    assert by_id["Group"]["endpoint"] == "/Groups" and by_id["Group"]["schema"] == schema.CORE_GROUP
    for rt_id, rt in by_id.items():
        status, one = await get(client, tenant, f"/ResourceTypes/{rt_id}")
        assert status == 200 and one == rt
        assert one["meta"]["location"].endswith(f"/ResourceTypes/{rt_id}")


# --- /Schemas (RFC 7643 section 7 and 8.7) --------------------------------------------------------

async def test_schemas_list_every_resource_and_discovery_schema(client: TestClient, tenant: Tenant) -> None:
    """8.7.1 (User, Group, EnterpriseUser) and 8.7.2 (ServiceProviderConfig, ResourceType,
    Schema), which scim2-tester's core_schemas_validation requires."""
    status, listing = await get(client, tenant, "/Schemas")
    assert status == 200 and listing["schemas"] == [LIST_RESPONSE]
    names = {s["name"] for s in listing["Resources"]}
    assert names == {"User", "EnterpriseUser", "Group", "ServiceProviderConfig", "ResourceType", "Schema"}
    for s in listing["Resources"]:
        status, one = await get(client, tenant, f"/Schemas/{s['id']}")
        assert status == 200 and one == s


async def test_every_resource_type_schema_is_retrievable(client: TestClient, tenant: Tenant) -> None:
    _, listing = await get(client, tenant, "/ResourceTypes")
    for rt in listing["Resources"]:
        for urn in [rt["schema"], *(e["schema"] for e in rt["schemaExtensions"])]:
            status, one = await get(client, tenant, f"/Schemas/{urn}")
            assert status == 200 and one["id"] == urn


def _walk(attributes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a in attributes:
        out.append(a)
        out += _walk(a.get("subAttributes", []))
    return out


async def test_every_attribute_definition_is_complete(client: TestClient, tenant: Tenant) -> None:
    """RFC 7643 section 7: each attribute carries all its characteristics, with legal values."""
    _, listing = await get(client, tenant, "/Schemas")
    for s in listing["Resources"]:
        for a in _walk(s["attributes"]):
            assert a["type"] in ("string", "boolean", "decimal", "integer", "dateTime", "binary", "reference", "complex")
            assert isinstance(a["multiValued"], bool) and isinstance(a["required"], bool)
            assert isinstance(a["caseExact"], bool) and isinstance(a["description"], str)
            assert a["mutability"] in ("readOnly", "readWrite", "immutable", "writeOnly")
            assert a["returned"] in ("always", "never", "default", "request")
            assert a["uniqueness"] in ("none", "server", "global")
            assert ("subAttributes" in a) == (a["type"] == "complex"), (s["name"], a["name"])
            if a["type"] == "reference":
                assert a["referenceTypes"], (s["name"], a["name"])


async def test_common_attributes_are_not_listed_in_core_schemas_but_external_id(client: TestClient, tenant: Tenant) -> None:
    """RFC 7643 section 3.1: id, externalId and meta belong to every resource, not to a schema;
    8.7.1 lists none of them, and scim2-models' Resource defines them itself. externalId is the
    one exception (docs/decisions.md): clients that discover mappable attributes from /Schemas
    alone (Entra's validator) must find it; id and meta are the server's and never mapped."""
    for urn in (schema.CORE_USER, schema.CORE_GROUP):
        _, s = await get(client, tenant, f"/Schemas/{urn}")
        names = {a["name"] for a in s["attributes"]}
        assert not names & {"id", "meta"}
        [external_id] = [a for a in s["attributes"] if a["name"] == "externalId"]
        assert external_id["caseExact"] is True and external_id["mutability"] == "readWrite"


async def test_unknown_schema_or_resource_type_is_a_scim_404(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 3.12; scim2-tester's access_invalid_schema / access_invalid_resource_type."""
    for path in ("/Schemas/urn:nope", "/ResourceTypes/Nope", "/Schemas/00000000-0000-0000-0000-000000000000"):
        status, body = await get(client, tenant, path)
        assert status == 404 and body["schemas"] == [ERROR_SCHEMA] and body["status"] == "404", path


async def test_filter_on_discovery_is_forbidden(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 section 4: "If a filter is provided, the service provider SHOULD respond with
    HTTP status code 403 (Forbidden)"."""
    for path in DISCOVERY_PATHS:
        for key in ("filter", "Filter"):
            status, body = await get(client, tenant, f'{path}?{key}=name eq "User"')
            assert status == 403 and body["schemas"] == [ERROR_SCHEMA] and body["status"] == "403", path


async def test_other_query_parameters_on_discovery_are_ignored(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 section 4: sorting, pagination, attributes "SHALL be ignored"."""
    for path in DISCOVERY_PATHS:
        _, plain = await get(client, tenant, path)
        status, with_params = await get(client, tenant, f"{path}?count=1&startIndex=2&sortBy=name&attributes=id")
        assert status == 200 and with_params == plain, path


async def test_discovery_endpoints_are_read_only(client: TestClient, tenant: Tenant) -> None:
    """Only GET is defined (RFC 7644 section 4): 405 with Allow and a SCIM body, as
    scim2-tester's *_endpoint_methods checks expect."""
    for path in DISCOVERY_PATHS:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            resp = await client.request(method, BASE + path, headers=tenant.headers, json={})
            assert resp.status == 405, (method, path)
            assert "GET" in resp.headers["Allow"]
            assert (await resp.json(content_type=None))["schemas"] == [ERROR_SCHEMA]


# --- the characteristics are true of the handlers ---------------------------------------------------

def sample(attribute: dict[str, Any]) -> Any:
    """A legal value for an attribute, built from its /Schemas definition alone."""
    kind = attribute["type"]
    if kind == "complex":
        value: Any = {
            sub["name"]: sample(sub)
            for sub in attribute["subAttributes"]
            if sub["mutability"] in ("readWrite", "immutable", "writeOnly") and sub["name"] != "$ref"
        }
    elif attribute.get("canonicalValues"):
        value = attribute["canonicalValues"][0]
    elif kind == "boolean":
        value = True
    elif kind == "integer":
        value = 7
    elif kind == "decimal":
        value = 1.5
    elif kind == "dateTime":
        value = "2024-01-02T03:04:05Z"
    elif kind == "binary":
        value = "TUlJQ2R6Q0NBZUNn"
    elif kind == "reference":
        value = "https://example.com/" + attribute["name"]
    elif attribute["name"] in ("value", "userName") or "mail" in attribute["description"].lower():
        value = "sample@example.com"
    else:
        value = "sample " + attribute["name"]
    return [value] if attribute["multiValued"] else value


def _settable(attribute: dict[str, Any]) -> bool:
    return attribute["mutability"] in ("readWrite", "immutable")


async def test_every_writable_user_attribute_round_trips(client: TestClient, tenant: Tenant) -> None:
    """Each readWrite attribute of User and EnterpriseUser, as /Schemas describes it, is
    accepted by POST and returned by GET (returned: default)."""
    _, core = await get(client, tenant, f"/Schemas/{schema.CORE_USER}")
    _, enterprise = await get(client, tenant, f"/Schemas/{schema.ENTERPRISE_USER}")
    body: dict[str, Any] = {"schemas": [schema.CORE_USER, schema.ENTERPRISE_USER]}
    body.update({a["name"]: sample(a) for a in core["attributes"] if _settable(a)})
    extension = {a["name"]: sample(a) for a in enterprise["attributes"] if _settable(a)}
    extension.pop("manager")  # a manager must be an existing user of the tenant: set below
    body[schema.ENTERPRISE_USER] = extension
    resp = await client.post(f"{BASE}/Users", headers=tenant.headers, json=body)
    assert resp.status == 201, await resp.text()
    created = await resp.json(content_type=None)
    status, fetched = await get(client, tenant, f"/Users/{created['id']}")
    assert status == 200
    for a in core["attributes"]:
        if _settable(a) and a["returned"] in ("default", "always"):
            assert a["name"] in fetched, a["name"]
            if a["type"] != "complex":
                assert fetched[a["name"]] == body[a["name"]], a["name"]
    for name in extension:
        assert fetched[schema.ENTERPRISE_USER][name] == extension[name], name


async def test_password_is_write_only_and_never_returned(client: TestClient, tenant: Tenant) -> None:
    """User.password: mutability writeOnly, returned never (RFC 7643 4.1.1, 7)."""
    _, core = await get(client, tenant, f"/Schemas/{schema.CORE_USER}")
    [password] = [a for a in core["attributes"] if a["name"] == "password"]
    assert (password["mutability"], password["returned"]) == ("writeOnly", "never")
    resp = await client.post(f"{BASE}/Users", headers=tenant.headers, json={
        "schemas": [schema.CORE_USER], "userName": "pw@example.com", "password": "hunter2!"})
    created = await resp.json(content_type=None)
    assert resp.status == 201 and "password" not in created
    _, fetched = await get(client, tenant, f"/Users/{created['id']}?attributes=password")
    assert "password" not in fetched
    _, listing = await get(client, tenant, "/Users?attributes=password")
    assert all("password" not in r for r in listing["Resources"])


async def test_id_is_returned_always_and_read_only(client: TestClient, tenant: Tenant) -> None:
    """Common attribute id: returned always (even when attributes= names others), readOnly."""
    resp = await client.post(f"{BASE}/Users", headers=tenant.headers, json={
        "schemas": [schema.CORE_USER], "userName": "id@example.com", "id": "client-chosen"})
    created = await resp.json(content_type=None)
    assert resp.status == 201 and created["id"] != "client-chosen"
    _, fetched = await get(client, tenant, f"/Users/{created['id']}?attributes=displayName")
    assert fetched["id"] == created["id"]


async def test_groups_attribute_of_user_is_read_only(client: TestClient, tenant: Tenant) -> None:
    """User.groups: readOnly (RFC 7643 4.1.2): a client's value is ignored, memberships come
    from /Groups."""
    resp = await client.post(f"{BASE}/Groups", headers=tenant.headers,
                             json={"schemas": [schema.CORE_GROUP], "displayName": "g"})
    group = await resp.json(content_type=None)
    resp = await client.post(f"{BASE}/Users", headers=tenant.headers, json={
        "schemas": [schema.CORE_USER], "userName": "ro@example.com", "groups": [{"value": group["id"]}]})
    created = await resp.json(content_type=None)
    assert resp.status == 201 and not created.get("groups")
    _, members = await get(client, tenant, f"/Groups/{group['id']}")
    assert not members.get("members")


@pytest.mark.parametrize(("path", "body"), [
    ("/Users", {"schemas": [schema.CORE_USER], "displayName": "no userName"}),
    ("/Groups", {"schemas": [schema.CORE_GROUP], "members": []}),
])
async def test_required_attributes_are_required(client: TestClient, tenant: Tenant, path: str, body: dict[str, Any]) -> None:
    """userName (User) and displayName (Group) are required: true."""
    resp = await client.post(BASE + path, headers=tenant.headers, json=body)
    assert resp.status == 400
    assert (await resp.json(content_type=None))["schemas"] == [ERROR_SCHEMA]


async def test_user_name_is_server_unique_and_not_case_exact(client: TestClient, tenant: Tenant) -> None:
    """userName: uniqueness server, caseExact false (RFC 7643 4.1.1)."""
    first = await client.post(f"{BASE}/Users", headers=tenant.headers,
                              json={"schemas": [schema.CORE_USER], "userName": "Case@Example.com"})
    assert first.status == 201
    again = await client.post(f"{BASE}/Users", headers=tenant.headers,
                              json={"schemas": [schema.CORE_USER], "userName": "case@example.COM"})
    assert again.status == 409
    _, found = await get(client, tenant, '/Users?filter=userName eq "CASE@EXAMPLE.COM"')
    assert found["totalResults"] == 1

"""A bounded fuzz run over the whole HTTP surface (RFC 7644 section 3.12; docs/tenancy.md).

Hypothesis draws methods x paths (Users, Groups, ids, .search, discovery, junk) x headers x
bodies (random JSON, random bytes, near-valid SCIM bodies with wrong types, PATCH bodies with
random ops and paths) x query strings (filters, attributes, startIndex/count junk). For every
answer: never a 5xx other than 501 (a documented "not supported"), a SCIM error body for every
status >= 400, and no new event when the answer is >= 400. A fixed budget of examples and
`derandomize=True` keep the run short and reproducible in CI.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import tenancy
from tests.conftest import LiveServer
from tests.support import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    ERROR_SCHEMA,
    PATCH_OP,
    SEARCH_REQUEST,
    auth_headers,
)

# The hypothesis checks keep the name they were written with: `derandomize` seeds from the
# source of the check, so a renamed constant would change the examples drawn.
ERROR = ERROR_SCHEMA
EXAMPLES = 250


@dataclass
class Target:
    server: LiveServer
    token: str
    user_id: str
    group_id: str
    loop: asyncio.AbstractEventLoop
    conn: asyncpg.Connection

    def events(self) -> int:
        return int(self.loop.run_until_complete(self.conn.fetchval("SELECT count(*) FROM events")))


def _send(url: str, method: str, headers: dict[str, str], data: bytes | None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


@pytest.fixture
def target(live_server: LiveServer) -> Iterator[Target]:
    token = ""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(live_server.dsn))

    async def seed() -> str:
        tenant_id = await tenancy.create_tenant(conn, "fuzz")
        return (await tenancy.issue_token(conn, tenant_id, "fuzz"))[1]

    token = loop.run_until_complete(seed())
    auth = auth_headers(token)
    status, _, raw = _send(live_server.url + "/scim/v2/Users", "POST", auth, json.dumps(
        {"schemas": [CORE_USER], "userName": "fuzz@example.com", "emails": [{"value": "fuzz@example.com"}]}).encode())
    assert status == 201
    user_id = json.loads(raw)["id"]
    status, _, raw = _send(live_server.url + "/scim/v2/Groups", "POST", auth, json.dumps(
        {"schemas": [CORE_GROUP], "displayName": "fuzzers", "members": [{"value": user_id}]}).encode())
    assert status == 201
    yield Target(live_server, token, user_id, json.loads(raw)["id"], loop, conn)
    loop.run_until_complete(conn.close())
    loop.close()


# --- strategies ---------------------------------------------------------------------------------

ATTRS = ["userName", "name.givenName", "emails", "emails.value", 'emails[type eq "work"].value', "active",
         "displayName", "members", "members.value", "groups", "meta.created", "id", "externalId", "title",
         f"{ENTERPRISE_USER}:department", f"{ENTERPRISE_USER}:manager", "password", "x", "", "[", "a.b.c.d"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["True", "False", "", "00000000-0000-0000-0000-000000000000"]))
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from([*ATTRS, "value", "op", "path"]), inner, max_size=4),
    max_leaves=10,
)
patch_ops = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "replace", "remove", "Add", "Replace", "Remove", "move", "", "ADD"])},
    optional={"path": st.sampled_from(ATTRS) | st.text(max_size=15), "value": json_values},
)
near_valid = st.one_of(
    st.fixed_dictionaries({"schemas": st.just([CORE_USER]), "userName": json_values},
                          optional={"active": json_values, "emails": json_values, "name": json_values,
                                    ENTERPRISE_USER: json_values, "groups": json_values, "id": json_values}),
    st.fixed_dictionaries({"schemas": st.just([CORE_GROUP]), "displayName": json_values},
                          optional={"members": json_values}),
    st.fixed_dictionaries({"schemas": st.just([PATCH_OP]), "Operations": st.lists(patch_ops, max_size=4)}),
    st.fixed_dictionaries({"schemas": st.just([SEARCH_REQUEST])},
                          optional={"filter": json_values, "startIndex": json_values, "count": json_values,
                                    "attributes": json_values, "sortBy": json_values}),
)
bodies = st.one_of(
    st.none(),
    near_valid.map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"{", b"[" * 3000, b"\xff\xfe", b'{"schemas":', b"null", b"{}" * 3]),
)
filters = st.one_of(
    st.lists(st.sampled_from([*ATTRS, "eq", "co", "sw", "pr", "gt", "and", "or", "not", "(", ")", '"a"', "true", "1"]),
             max_size=8).map(" ".join),
    st.text(max_size=30),
)
query_strings = st.dictionaries(
    st.sampled_from(["filter", "attributes", "excludedAttributes", "startIndex", "count", "sortBy", "sortOrder", "x"]),
    st.one_of(filters, st.sampled_from(["-1", "0", "1", "99999999999999999999", "abc", "1.5", ""])),
    max_size=3,
)
paths = st.sampled_from([
    "/scim/v2/Users", "/scim/v2/Users/{uid}", "/scim/v2/Users/{gid}", "/scim/v2/Users/{random}",
    "/scim/v2/Users/.search", "/scim/v2/Groups", "/scim/v2/Groups/{gid}", "/scim/v2/Groups/{uid}",
    "/scim/v2/Groups/.search", "/scim/v2/ServiceProviderConfig", "/scim/v2/ResourceTypes",
    "/scim/v2/ResourceTypes/User", f"/scim/v2/Schemas/{CORE_USER}", "/scim/v2/Schemas", "/scim/v2/Nope",
    "/scim/v2/Users/..%2F..%2Fetc", "/scim/v2/Users/1'%20OR%20'1'%3D'1", "/audit/v1/events",
])
content_types = st.sampled_from(["application/scim+json", "application/json", "text/plain", "", "application/xml"])
extra_headers = st.dictionaries(
    st.sampled_from(["If-Match", "If-None-Match", "X-Request-Id", "Accept"]),
    st.sampled_from(['W/"1"', "*", "garbage", 'W/"999"', "\t", "application/xml"]),
    max_size=2,
)
requests = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    paths, query_strings, content_types, extra_headers, bodies,
)


def test_fuzz_http_surface(target: Target) -> None:
    url = target.server.url
    seen: set[int] = set()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(requests)
    def check(case: tuple[str, str, dict[str, str], str, dict[str, str], bytes | None]) -> None:
        method, path, query, content_type, headers, body = case
        path = (path.replace("{uid}", target.user_id).replace("{gid}", target.group_id)
                .replace("{random}", "5b0e1e60-53d9-4d1b-a1e5-8f0c1d4f7a11"))
        full = url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        sent = {"Authorization": f"Bearer {target.token}", **headers}
        if content_type:
            sent["Content-Type"] = content_type
        before = target.events()
        status, answer_type, raw = _send(full, method, sent, body)
        seen.add(status)
        assert status < 500 or status == 501, (case, status, raw[:300])
        if status >= 400:
            assert answer_type == "application/scim+json", (case, status, answer_type)
            error = json.loads(raw)
            assert error["schemas"] == [ERROR] and error["status"] == str(status), (case, error)
            assert target.events() == before, (case, status, error)

    check()
    # the run reached the handlers, not only the front door
    assert {200, 400, 404, 405, 415} <= seen, sorted(seen)
    assert seen & {201, 204}, sorted(seen)

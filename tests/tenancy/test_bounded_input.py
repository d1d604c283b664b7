"""The reproducers of issue 12 items 1, 7 and 8 against the real app over HTTP: each input beyond
a bound (service/scim/limits.py, docs/security.md) is a SCIM 400 naming the limit (RFC 7644
3.12), appends nothing, logs no error, and leaves the audit follower running for every tenant.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any
from urllib.parse import urlencode as _query

import asyncpg

from service.scim import limits
from service.scim.filter import MAX_TERMS, MAX_VALUE_LENGTH
from tests.conftest import make_tenant
from tests.support import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    SEARCH_REQUEST,
    caught_up,
    patch,
    token_headers,
)
from tests.tenancy.test_hostile_input import Seeded, refused, seeded  # noqa: F401  (a fixture)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _random_name(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


async def test_a_2676_character_name_is_refused_and_the_audit_trail_keeps_going(
    seeded: Seeded, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    """Issue 12 item 1: a userName or group displayName of 2,676 characters was accepted and
    then failed the shared audit follower's index insert (btree row over 2,704 bytes) for every
    tenant. It is now 400 invalidValue naming the 512-character bound, and another tenant's
    events still reach its audit trail."""
    long_name = _random_name(2676)
    for path, body in (("/scim/v2/Users", {"schemas": [CORE_USER], "userName": long_name}),
                       ("/scim/v2/Groups", {"schemas": [CORE_GROUP], "displayName": long_name})):
        answer = await refused(seeded, "POST", path, data=_json(body), status=400, scim_type="invalidValue")
        assert f"longer than {limits.MAX_INDEXED_LENGTH} characters" in answer["detail"]
    for path, op in ((f"/scim/v2/Users/{seeded.user_id}", {"op": "replace", "path": "userName", "value": long_name}),
                     (f"/scim/v2/Users/{seeded.user_id}", {"op": "replace", "path": "externalId", "value": long_name}),
                     (f"/scim/v2/Groups/{seeded.group_id}", {"op": "replace", "path": "displayName", "value": long_name})):
        await refused(seeded, "PATCH", path, data=_json(patch(op)), status=400, scim_type="invalidValue")
    await refused(seeded, "PUT", f"/scim/v2/Users/{seeded.user_id}", status=400, scim_type="invalidValue",
                  data=_json({"schemas": [CORE_USER], "userName": "alice@example.com", "displayName": long_name}))

    other = await make_tenant(pool, "other")
    _, auditor = await token_headers(pool, other.id, "compliance", "audit")
    resp = await seeded.client.post("/scim/v2/Users", headers=other.headers,
                                    json={"schemas": [CORE_USER], "userName": "after@example.com"})
    assert resp.status == 201
    await caught_up(pool, "audit")  # asserts the follower is running, not failed
    resp = await seeded.client.get("/audit/v1/events", headers=auditor)
    assert [e["target"]["userName"] for e in (await resp.json())["events"]] == ["after@example.com"]


async def test_nul_in_any_string_is_invalid_value_on_post_put_and_patch(seeded: Seeded) -> None:  # noqa: F811
    """Issue 12 items 4 and 7: `{"userName": "a\\u0000b", "password": ...}` was a 500 (PostgreSQL
    cannot store U+0000), logged with the password. Now 400 invalidValue, nothing appended, no
    error logged."""
    user = f"/scim/v2/Users/{seeded.user_id}"
    group = f"/scim/v2/Groups/{seeded.group_id}"
    for body in ({"schemas": [CORE_USER], "userName": "a\u0000b", "password": "Sup3rS3cret"},
                 {"schemas": [CORE_USER], "userName": "n@example.com", "title": "\u0000"},
                 {"schemas": [CORE_USER], "userName": "n@example.com", "emails": [{"value": "a\u0000@x"}]},
                 {"schemas": [CORE_USER, ENTERPRISE_USER], "userName": "n@example.com",
                  ENTERPRISE_USER: {"department": "d\u0000"}}):
        await refused(seeded, "POST", "/scim/v2/Users", data=_json(body), status=400, scim_type="invalidValue")
        await refused(seeded, "PUT", user, data=_json({**body, "userName": "alice@example.com"}
                                                      if body["userName"] == "n@example.com" else body),
                      status=400, scim_type="invalidValue")
    for op in ({"op": "replace", "path": "displayName", "value": "x\u0000"},
               {"op": "add", "value": {"nickName": "\u0000"}},
               {"op": "add", "path": "emails", "value": [{"value": "b@x", "display": "\u0000"}]}):
        await refused(seeded, "PATCH", user, data=_json(patch(op)), status=400, scim_type="invalidValue")
    await refused(seeded, "POST", "/scim/v2/Groups", status=400, scim_type="invalidValue",
                  data=_json({"schemas": [CORE_GROUP], "displayName": "g\u0000"}))
    await refused(seeded, "PATCH", group, status=400, scim_type="invalidValue",
                  data=_json(patch({"op": "replace", "path": "displayName", "value": "g\u0000"})))
    for text in ('userName eq "a\\u0000b"', 'userName eq "a\u0000b"'):
        await refused(seeded, "GET", "/scim/v2/Users?" + _query({"filter": text}), status=400,
                      scim_type="invalidFilter")


async def test_moments_outside_postgresql_range_in_a_filter_are_invalid_filter(seeded: Seeded) -> None:  # noqa: F811
    """Issue 12 item 7: `meta.created gt "0001-01-01T00:00:00+14:00"` is before year 1 in UTC and
    failed converting for PostgreSQL (a 500); now 400 invalidFilter, by GET and by .search."""
    for text in ('meta.created gt "0001-01-01T00:00:00+14:00"', 'meta.lastModified le "9999-12-31T23:30:00-01:00"'):
        body = await refused(seeded, "GET", "/scim/v2/Users?" + _query({"filter": text}), status=400,
                             scim_type="invalidFilter")
        assert "outside the supported range" in body["detail"]
        await refused(seeded, "POST", "/scim/v2/Groups/.search", status=400, scim_type="invalidFilter",
                      data=_json({"schemas": [SEARCH_REQUEST], "filter": text}))


async def test_paging_numbers_out_of_range_are_invalid_value_never_500(seeded: Seeded) -> None:  # noqa: F811
    """Issue 12 item 7, RFC 7644 3.4.2.4 (1-based integers): `startIndex=99999999999999999999999`
    on GET and `"startIndex": 1e300` in .search overflowed OFFSET (a 500); a superscript or a
    5,000-digit number made int() raise. All are 400 invalidValue; a huge count is the page cap."""
    for value in ("99999999999999999999999", str(limits.MAX_START_INDEX + 1), "9" * 5000, "²", "1_0"):
        await refused(seeded, "GET", "/scim/v2/Users?" + _query({"startIndex": value}), status=400,
                      scim_type="invalidValue")
    for value in (1e300, 99999999999999999999, "99999999999999999999999", 2.5):
        await refused(seeded, "POST", "/scim/v2/Users/.search", status=400, scim_type="invalidValue",
                      data=_json({"schemas": [SEARCH_REQUEST], "startIndex": value}))
    resp = await seeded.client.get("/scim/v2/Users", params={"count": "9" * 30}, headers=seeded.headers())
    assert resp.status == 200 and (await resp.json(content_type=None))["itemsPerPage"] == 1
    resp = await seeded.client.post("/scim/v2/Users/.search", headers=seeded.headers(),
                                    json={"schemas": [SEARCH_REQUEST], "count": 1e300, "startIndex": limits.MAX_START_INDEX})
    assert resp.status == 200 and (await resp.json(content_type=None))["Resources"] == []


async def test_huge_titles_cannot_be_stored_and_long_filter_literals_are_refused(seeded: Seeded) -> None:  # noqa: F811
    """Issue 12 item 8: `title co "<4,070 chars>"` over users with 1 MB titles cost 1.9 s of
    database CPU per row. A title is now at most 2,048 characters (POST, PUT, PATCH) and a filter
    value at most 512, so one row's substring match is bounded (docs/security.md)."""
    title = "t" * 1_000_000
    for method, path, body in (
        ("POST", "/scim/v2/Users", {"schemas": [CORE_USER], "userName": "big@example.com", "title": title}),
        ("PUT", f"/scim/v2/Users/{seeded.user_id}", {"schemas": [CORE_USER], "userName": "alice@example.com", "title": title}),
        ("PATCH", f"/scim/v2/Users/{seeded.user_id}", patch({"op": "add", "path": "title", "value": title})),
    ):
        answer = await refused(seeded, method, path, data=_json(body), status=400, scim_type="invalidValue")
        assert f"longer than {limits.MAX_STRING_LENGTH} characters" in answer["detail"]
    text = 'title co "' + "t" * 4070 + '"'
    for request in (("GET", "/scim/v2/Users?" + _query({"filter": text}), None),
                    ("POST", "/scim/v2/Users/.search", _json({"schemas": [SEARCH_REQUEST], "filter": text}))):
        answer = await refused(seeded, request[0], request[1], data=request[2], status=400, scim_type="invalidFilter")
        assert f"longer than {MAX_VALUE_LENGTH} characters" in answer["detail"]


async def test_values_terms_and_patched_size_beyond_the_bounds_change_nothing(seeded: Seeded) -> None:  # noqa: F811
    """A PATCH may only store what a PUT could: 101 emails added one request at a time stop at
    limits.MAX_STORED_VALUES; a filter of MAX_TERMS + 1 terms is invalidFilter."""
    user = f"/scim/v2/Users/{seeded.user_id}"
    emails = [{"value": f"e{i}@example.com"} for i in range(limits.MAX_STORED_VALUES)]
    resp = await seeded.client.patch(user, headers=seeded.headers(),
                                     json=patch({"op": "add", "path": "emails", "value": emails}))
    assert resp.status == 200
    before = await (await seeded.client.get(user, headers=seeded.headers())).json(content_type=None)
    answer = await refused(seeded, "PATCH", user, status=400, scim_type="invalidValue",
                           data=_json(patch({"op": "add", "path": "emails", "value": [{"value": "one@more"}]})))
    assert f"more than {limits.MAX_STORED_VALUES} values" in answer["detail"]
    after = await (await seeded.client.get(user, headers=seeded.headers())).json(content_type=None)
    assert after == before
    text = " or ".join(f'userName eq "u{i}"' for i in range(MAX_TERMS + 1))
    answer = await refused(seeded, "POST", "/scim/v2/Users/.search", status=400, scim_type="invalidFilter",
                           data=_json({"schemas": [SEARCH_REQUEST], "filter": text}))
    assert f"more than {MAX_TERMS} terms" in answer["detail"]

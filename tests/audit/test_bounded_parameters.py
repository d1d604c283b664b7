"""Bad numbers, moments and names in /audit/v1 parameters and `scimledger audit` options (issue
12 item 7): each is a 400 with an RFC 7644 3.12 body (the CLI: exit 2), never a 500, and an
export refuses before it starts streaming, so no client gets a 200 with a truncated body.
"""

from __future__ import annotations

import asyncio
import base64

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from service.app.audit import decode_cursor, parse_limit
from tests.conftest import Tenant, make_tenant
from tests.support import ERROR_SCHEMA, cli, env_for, new_user, token_headers

OUT_OF_RANGE = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:30:00-01:00")


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
async def auditor(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, str]:
    return (await token_headers(pool, tenant.id, "compliance", "audit"))[1]


async def _refused(client: TestClient, path: str, params: dict[str, str], headers: dict[str, str]) -> str:
    with capture_logs() as logs:
        r = await client.get(path, params=params, headers=headers)
        text = await r.text()
    assert r.status == 400, (path, params, r.status, text[:200])
    body = await r.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA] and body["scimType"] == "invalidValue", body
    assert not [e for e in logs if e.get("log_level") in ("error", "critical") or "exc_info" in e], logs
    return str(body["detail"])


async def test_numbers_that_are_not_ascii_or_too_big_are_400(
    client: TestClient, tenant: Tenant, auditor: dict[str, str]
) -> None:
    """`limit=²` (str.isdigit() is true for it, int() refuses it), a cursor holding `p:²`, a
    number over Python's 4,300-digit int() limit, a position above int64: all were 500s."""
    resp = await client.post("/scim/v2/Users", json=new_user("h@example.com"), headers=tenant.headers)
    uid = (await resp.json(content_type=None))["id"]
    for path in ("/audit/v1/events", f"/audit/v1/users/{uid}/history"):
        for limit in ("²", "٣", "9" * 5000, "1_0", " 5"):
            assert "limit must be an integer" in await _refused(client, path, {"limit": limit}, auditor)
        for cursor in (_cursor("p:²"), _cursor("p:" + "9" * 5000), _cursor(f"p:{2**63}"),
                       _cursor("p:٣"), "A" * 5000):
            assert "cursor" in await _refused(client, path, {"cursor": cursor}, auditor)
    resp = await client.get("/audit/v1/events", params={"cursor": _cursor(f"p:{2**63 - 1}")}, headers=auditor)
    assert resp.status == 200 and (await resp.json())["events"] == []


async def test_moments_outside_the_range_are_400_and_an_export_never_starts(
    client: TestClient, tenant: Tenant, auditor: dict[str, str]
) -> None:
    """`since`/`until`/`asOf` of `0001-01-01T00:00:00+14:00` (before year 1 in UTC) failed in
    PostgreSQL: a 500, or in the export a 200 and then a truncated body."""
    resp = await client.post("/scim/v2/Users", json=new_user("m@example.com"), headers=tenant.headers)
    uid = (await resp.json(content_type=None))["id"]
    for moment in OUT_OF_RANGE:
        for name in ("since", "until"):
            for path in ("/audit/v1/events", "/audit/v1/events/export"):
                detail = await _refused(client, path, {name: moment}, auditor)
                assert name in detail and "outside the supported range" in detail
        for path in (f"/audit/v1/users/{uid}", "/audit/v1/groups/" + uid):
            assert "asOf" in await _refused(client, path, {"asOf": moment}, auditor)


async def test_target_and_actor_must_be_storable_names(client: TestClient, auditor: dict[str, str]) -> None:
    """A NUL in `target` or `actor` failed in PostgreSQL (a 500); a name longer than any the
    trail can hold (512 characters) is refused instead of searched for."""
    for name in ("target", "actor"):
        assert "U+0000" in await _refused(client, "/audit/v1/events", {name: "a\x00b"}, auditor)
        assert "512" in await _refused(client, "/audit/v1/events/export", {name: "n" * 513}, auditor)


def test_parameter_parsers_keep_what_they_accepted() -> None:
    assert parse_limit("1000") == 1000 and parse_limit("0007") == 7
    assert decode_cursor(_cursor("p:0")) == 0


async def test_the_cli_refuses_the_same_moments_with_exit_2(dsn: str, pool: asyncpg.Pool) -> None:
    """`scimledger audit events --since` and `audit state --as-of` parse with the API's code."""
    await make_tenant(pool, "acme")
    env = env_for(dsn)
    for args in (("events", "--since", OUT_OF_RANGE[0]), ("events", "--until", OUT_OF_RANGE[1]),
                 ("events", "--target", "a\x01" * 300), ("state", "someone", "--as-of", OUT_OF_RANGE[0])):
        result = await asyncio.to_thread(cli, "audit", *args, "--tenant", "acme", env=env, check=False)
        assert result.returncode == 2 and result.stdout == "", (args, result.stderr)
        assert "Traceback" not in result.stderr

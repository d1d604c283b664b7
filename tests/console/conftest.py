"""What the console's tests share: a tenant with an `okta` scim token and an auditor token, and
signing in over HTTP the way a browser does (the sign-in form's CSRF token from the page)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import tenancy
from tests.conftest import Tenant, make_tenant

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Org:
    """A tenant as the console sees it: the admin's (scim, label okta) and the auditor's tokens."""

    scim: Tenant
    audit_token_id: uuid.UUID
    audit_secret: str

    @property
    def id(self) -> uuid.UUID:
        return self.scim.id


@pytest.fixture
async def org(pool: asyncpg.Pool) -> Org:
    scim = await make_tenant(pool, "acme", label="okta")
    async with pool.acquire() as conn:
        token_id, secret = await tenancy.issue_token(conn, scim.id, "auditor", "audit")
    return Org(scim, token_id, secret)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def sign_in(client: TestClient, secret: str, *, expect: int = 303) -> str:
    """Sign in with a token; returns the page's CSRF token of the new session (or '' on refusal)."""
    page = await client.get("/console/sign-in")
    assert page.status == 200
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": secret},
                          allow_redirects=False)
    assert r.status == expect, await r.text()
    if expect != 303:
        return ""
    home = await client.get(r.headers["Location"])
    assert home.status == 200
    return csrf_of(await home.text())

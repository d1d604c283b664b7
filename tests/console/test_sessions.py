"""The console's session rules over HTTP: cookie flags, CSRF, the Content-Security-Policy and the
other headers, roles, another tenant's ids, expiry, idle time, revocation, and the token kept out
of URLs, pages and logs."""

from __future__ import annotations

import datetime as dt
import re

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import tenancy
from service.http.app import create_app
from service.runtime.config import Settings
from tests.conftest import make_tenant
from tests.console.conftest import Org, csrf_of, sign_in
from tests.support import body_of, new_user

PAGES = ("/console/sign-in", "/console/directory", "/console/provisioning")


def cookie_header(response: object, name: str) -> str:
    headers = response.headers.getall("Set-Cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(name + "=")]
    assert found, headers
    return found[0]


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(client: TestClient, org: Org) -> None:
    page = await client.get("/console/sign-in")
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": org.scim.secret},
                          allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/directory"
    cookie = cookie_header(r, "scimledger_console")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40 and value not in org.scim.secret


@pytest.mark.parametrize("how", ["public_url", "forwarded"])
async def test_the_cookie_is_secure_behind_https(how: str, dsn: str, aiohttp_client, pool: asyncpg.Pool) -> None:
    public = "https://scim.example.com" if how == "public_url" else None
    app = create_app(Settings(log_json=True, default_rate_limit=1e6, public_url=public), dsn)
    if how == "forwarded":
        @web.middleware
        async def https(request: web.Request, handler):  # what a TLS-terminating proxy's helper does
            return await handler(request.clone(scheme="https"))
        app.middlewares.insert(0, https)
    client = await aiohttp_client(app)
    tenant = await make_tenant(pool, "acme")
    headers = {"Host": "scim.example.com", "Origin": "https://scim.example.com"} if public else {}
    page = await client.get("/console/sign-in", headers=headers)
    signin_cookie = cookie_header(page, "scimledger_console_signin")
    assert "Secure" in signin_cookie
    # the test client keeps Secure cookies for https only: hand this one back as a browser would
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": tenant.secret},
                          allow_redirects=False, headers={**headers, "Cookie": signin_cookie.split(";")[0]})
    assert r.status == 303, await r.text()
    assert "Secure" in cookie_header(r, "scimledger_console")


async def test_every_answer_carries_a_strict_csp_and_the_other_headers(client: TestClient, org: Org) -> None:
    await sign_in(client, org.scim.secret)
    for path in (*PAGES, "/console/static/console.css", "/console/static/console.js", "/console/nowhere"):
        r = await client.get(path)
        csp = r.headers["Content-Security-Policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'",
                          "base-uri 'none'", "form-action 'self'"):
            assert directive in csp, (path, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "same-origin"
        assert r.headers["X-Frame-Options"] == "DENY"
        if "/static/" not in path:
            assert r.headers["Cache-Control"] == "no-store"
            html = await r.text()
            # no inline script, handler or style for the CSP to have to allow
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
            assert not re.search(r"\son[a-z]+=", html) and " style=" not in html, path


async def test_a_form_without_its_csrf_token_is_refused(client: TestClient, org: Org) -> None:
    # the sign-in form: no token, a wrong one, or none of its cookie
    page = await client.get("/console/sign-in")
    good = csrf_of(await page.text())
    for data in ({"token": org.scim.secret}, {"token": org.scim.secret, "csrf": "0" * 64}):
        r = await client.post("/console/sign-in", data=data, allow_redirects=False)
        assert r.status == 403, data
    r = await client.post("/console/sign-in", data={"token": org.scim.secret, "csrf": good},
                          headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert r.status == 403
    # signed in: sign-out needs the session's token; a refused sign-out leaves the session alive
    csrf = await sign_in(client, org.scim.secret)
    for data in ({}, {"csrf": good}, {"csrf": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")}):
        r = await client.post("/console/sign-out", data=data, allow_redirects=False)
        assert r.status == 403, data
    assert (await client.get("/console/directory", allow_redirects=False)).status == 200
    r = await client.post("/console/sign-out", data={"csrf": csrf}, headers={"Origin": str(client.make_url("")).rstrip("/")},
                          allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/sign-in"
    assert (await client.get("/console/directory", allow_redirects=False)).status == 303


async def test_pages_need_a_session_and_the_right_role(client: TestClient, org: Org) -> None:
    for path in ("/console/", "/console/directory", "/console/audit", "/console/audit/export"):
        r = await client.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/console/sign-in", path
    r = await client.get("/console", allow_redirects=False)
    assert r.status == 308 and r.headers["Location"] == "/console/"
    await sign_in(client, org.scim.secret)
    for path in ("/console/audit", "/console/audit/export?format=csv", "/console/audit/seal"):
        assert (await client.get(path)).status == 403, path
    client.session.cookie_jar.clear()
    await sign_in(client, org.audit_secret)
    for path in ("/console/directory", "/console/provisioning"):
        assert (await client.get(path)).status == 403, path
    assert (await client.get("/console/audit")).status == 200


async def test_another_tenants_ids_answer_404(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    other = await make_tenant(pool, "globex")
    r = await client.post("/scim/v2/Users", json=new_user("wile@globex.com"), headers=other.headers)
    user_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                                   "displayName": "Globex"}, headers=other.headers)
    group_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=org.scim.headers)
    own_id = (await body_of(r))["id"]
    for secret in (org.scim.secret, org.audit_secret):
        client.session.cookie_jar.clear()
        await sign_in(client, secret)
        assert (await client.get(f"/console/users/{own_id}")).status == 200
        for path in (f"/console/users/{user_id}", f"/console/groups/{group_id}", "/console/users/not-an-id",
                     f"/console/groups/{user_id}", f"/console/users/{group_id}"):
            r = await client.get(path)
            assert r.status == 404, path
            assert "wile" not in await r.text() and "Globex" not in await r.text()
    client.session.cookie_jar.clear()
    await sign_in(client, org.scim.secret)
    listing = await (await client.get("/console/directory?q=wile@globex.com")).text()
    assert "wile@globex.com" not in listing.split("<tbody>", 1)[1] and "No user matches" in listing


async def _session_rows(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    async with pool.acquire() as conn:
        status = await conn.execute(sql, *args)
    assert status != "UPDATE 0"


async def test_an_expired_session_is_refused(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    await sign_in(client, org.scim.secret)
    await _session_rows(pool, "UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    r = await client.get("/console/directory", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/sign-in"
    assert 'scimledger_console=""' in cookie_header(r, "scimledger_console")  # and the browser forgets it


async def test_an_idle_session_is_refused(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    await sign_in(client, org.scim.secret)
    await _session_rows(pool, "UPDATE console_sessions SET last_seen_at = now() - interval '31 minutes'")
    assert (await client.get("/console/directory", allow_redirects=False)).status == 303


async def test_a_revoked_or_expired_token_ends_its_sessions(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    await sign_in(client, org.scim.secret)
    async with pool.acquire() as conn:
        new_id, _ = await tenancy.rotate_token(conn, org.scim.token_id, dt.timedelta(hours=1))
    assert (await client.get("/console/directory", allow_redirects=False)).status == 200  # within the grace
    await _session_rows(pool, "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
                        org.scim.token_id)
    assert (await client.get("/console/directory", allow_redirects=False)).status == 303
    client.session.cookie_jar.clear()
    await sign_in(client, org.audit_secret)
    async with pool.acquire() as conn:
        await tenancy.revoke_token(conn, org.audit_token_id)
    assert (await client.get("/console/audit", allow_redirects=False)).status == 303
    page = await client.get("/console/sign-in")
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": org.audit_secret})
    assert r.status == 401 and "not valid" in await r.text()
    assert new_id != org.scim.token_id


async def test_the_token_is_never_in_a_url_a_page_or_a_log(client: TestClient, org: Org, capsys) -> None:
    page = await client.get("/console/sign-in")
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": org.scim.secret})
    assert r.status == 200 and org.scim.secret not in str(r.url)
    assert org.scim.secret not in await r.text()
    for response in r.history:
        assert org.scim.secret not in str(response.url) + response.headers.get("Location", "")
    wrong = org.scim.secret[:-4] + "AAAA"
    page = await client.get("/console/sign-in")
    r = await client.post("/console/sign-in", data={"csrf": csrf_of(await page.text()), "token": wrong})
    assert r.status == 401 and wrong not in await r.text()
    out = capsys.readouterr()
    assert org.scim.secret not in out.out + out.err and wrong not in out.out + out.err
    assert "console.signed_in" in out.out


async def test_the_session_table_holds_only_hashes(client: TestClient, org: Org, pool: asyncpg.Pool) -> None:
    await sign_in(client, org.scim.secret)
    cookie = next(c for c in client.session.cookie_jar if c.key == "scimledger_console").value
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM console_sessions")
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert cookie not in stored and org.scim.secret not in stored
    assert len(rows[0]["id_hash"]) == 32

"""Secrets never leave as plaintext (issue 12, item 4): every 500 was logged with the local
variables of each frame, the caller's token and the body's password among them, and during a
PostgreSQL outage one token was written 20,381 times.

The error paths are triggered with a known token and password, and the log is read as it is
written: the rendered output of the real processors in this process (JSON and console), and the
stdout of a real `scimledger serve` through a database outage.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from aiohttp import web

from service.http.app import create_app
from service.http.wire import read_json_object
from service.runtime.config import Settings
from service.runtime.logs import MASK, configure_logging, redact, unconfigure_logging
from tests.conftest import make_tenant
from tests.ops.pg_proxy import PostgresProxy
from tests.support import auth_headers, env_for, free_port, new_user, serve, wait_http

PASSWORD = "Sup3rS3cret-" + secrets.token_hex(4)


@pytest.fixture(params=[True, False], ids=["json", "console"])
def rendered(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """What the configured processors write, JSON and console, captured in a buffer."""
    out = io.StringIO()
    configure_logging(json=request.param, stream=out, cache=False)
    yield out
    unconfigure_logging()


async def boom(request: web.Request) -> web.Response:
    """A handler that fails with the caller's token and the body's password in its locals and the
    token in the exception's message."""
    header = request.headers["Authorization"]
    secret = header.partition(" ")[2]
    body = await read_json_object(request)
    password = body["password"]
    assert password and secret
    raise RuntimeError(f"the projection blew up on token {secret}")


async def test_a_500_logs_the_request_id_type_and_message_only(
    rendered: io.StringIO, settings: Settings, dsn: str, pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    """A 500 logs one line: the request id, the exception's type and its message with the token
    masked; no traceback, no local variables, never the token or the password. The client gets
    a SCIM 500 (RFC 7644 3.12) naming the request id."""
    tenant = await make_tenant(pool, "acme")
    app = create_app(replace(settings, run_followers=False), dsn)
    app.router.add_post("/scim/v2/Boom", boom)
    client = await aiohttp_client(app)
    resp = await client.post("/scim/v2/Boom", json=new_user("a@x.example", password=PASSWORD),
                             headers={**tenant.headers, "X-Request-Id": "req-boom-1"})
    assert resp.status == 500
    assert "req-boom-1" in (await resp.json(content_type=None))["detail"]
    text = rendered.getvalue()
    assert tenant.secret not in text and PASSWORD not in text, text
    assert tenant.secret[len("scimledger_"):][:12] not in text
    failed = [line for line in text.splitlines() if "request.failed" in line]
    assert len(failed) == 1, text
    assert "req-boom-1" in failed[0] and "RuntimeError" in failed[0] and "the projection blew up" in failed[0]
    assert "Traceback" not in text and "locals" not in text and "frames" not in text


def test_a_logged_exception_carries_no_local_variables(rendered: io.StringIO) -> None:
    """log.exception anywhere (the followers, aiohttp's own logger) renders the traceback
    without the frames' local variables, and masks a token in the exception's message."""
    token = "scimledger_" + secrets.token_urlsafe(32)

    def fails(credential: str, note: str) -> None:  # names no redaction rule would catch
        raise ValueError(f"refused {credential}")

    try:
        fails(token, PASSWORD)
    except ValueError:
        structlog.get_logger("scimledger.test").exception("something.failed")
        import logging

        logging.getLogger("aiohttp.server").exception("Error handling request")
    text = rendered.getvalue()
    assert "something.failed" in text and "Error handling request" in text and "ValueError" in text
    assert token not in text and PASSWORD not in text, text
    assert '"locals"' not in text


def test_redaction_masks_credentials_at_any_depth() -> None:
    """The processor on every line: credential-named keys, token-shaped values, Bearer and Basic
    credentials and JWTs are masked in strings, dicts and lists; token_label and token_id stay."""
    token = "scimledger_" + secrets.token_urlsafe(32)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJva3RhIn0.c2lnbmF0dXJl"
    line = redact(None, "info", {
        "event": "x", "password": PASSWORD, "Authorization": "Bearer abc", "client_secret": "cs",
        "token_label": "okta", "token_id": "1234",
        "headers": {"authorization": f"Bearer {token}", "x-api-key": "k"},
        "detail": f"token {token} and Bearer opaque-credential and Basic dXNlcjpwYXNz, {jwt}",
        "frames": [{"exc_value": f"refused {token}"}],
    })
    assert line["password"] == line["Authorization"] == line["client_secret"] == MASK
    assert line["token_label"] == "okta" and line["token_id"] == "1234"
    assert line["headers"] == {"authorization": MASK, "x-api-key": MASK}
    text = json.dumps(line)
    for leaked in (token, PASSWORD, "opaque-credential", "dXNlcjpwYXNz", jwt):
        assert leaked not in text, leaked


def _request(url: str, headers: dict[str, str], data: bytes | None = None, method: str | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


async def test_serve_never_logs_a_token_or_a_password(dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The reproducer of issue 12, item 4, against `scimledger serve`: requests with a known token
    and password through hostile bodies, a bad token, a client that hangs up mid-body, and a
    PostgreSQL outage (503s with Retry-After, one line per failure). Neither the token nor the
    password, nor the bad token, appears anywhere in serve's output, which has no traceback.
    Bound beyond loopback without SCIMLEDGER_PUBLIC_URL, serve warns at start."""
    tenant = await make_tenant(pool, "acme")
    bad = "hunter2-" + secrets.token_hex(8)
    log_file = tmp_path / "serve.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = auth_headers(tenant.secret)
    with PostgresProxy(dsn) as proxy, log_file.open("w") as out:
        env = env_for(proxy.dsn) | {"SCIMLEDGER_HOST": "0.0.0.0", "SCIMLEDGER_RATE_LIMIT": "100000"}
        proc = serve(env, port, stdout=out)
        try:
            wait_http(f"{base}/healthz")
            user = json.dumps(new_user("a@x.example", password=PASSWORD)).encode()
            assert _request(f"{base}/scim/v2/Users", headers, user) == 201
            nul = json.dumps(new_user("a\u0000b", password=PASSWORD)).encode()
            assert _request(f"{base}/scim/v2/Users", headers, nul) in (400, 500)
            assert _request(f"{base}/scim/v2/Users", auth_headers(bad), user) == 401
            assert _request(f"{base}/scim/v2/Users", auth_headers("scimledger_" + bad), user) == 401
            with socket.create_connection(("127.0.0.1", port)) as s:  # hangs up mid-body
                s.sendall(f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                          f"{tenant.secret}\r\nContent-Type: application/scim+json\r\nContent-Length: 500\r\n\r\n"
                          .encode() + user[:30])
                await asyncio.sleep(0.2)
            proxy.cut()
            for _ in range(5):
                assert _request(f"{base}/scim/v2/Users", headers, user) == 503
                assert _request(f"{base}/scim/v2/Users?filter=userName%20eq%20%22a%22", headers) == 503
            assert _request(f"{base}/readyz", {}) == 503
            proxy.restore()
            assert _request(f"{base}/scim/v2/Users", headers) == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log_file.read_text()
    for secret in (tenant.secret, PASSWORD, bad):
        assert secret not in text, secret
    assert "Traceback" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert not [e for e in lines if "exception" in e], [e for e in lines if "exception" in e]
    events = [e["event"] for e in lines]
    assert "serve.public_url_unset" in events and "request.aborted" in events, events
    assert events.count("database.unavailable") >= 10
    assert not [e for e in lines if e["level"] in ("error", "critical") and e["event"] != "request.failed"], [
        e for e in lines if e["level"] in ("error", "critical")]

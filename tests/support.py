"""What the tests share, from one place: the SCIM URNs, requests shaped as the IdPs send them,
reading answers, waiting for the followers, and the real `scimledger` command (the CLI and
`serve`) run as a subprocess.

Fixtures stay in tests/conftest.py (`from tests.conftest import Tenant, make_tenant`); this
module holds plain constants and functions (`from tests.support import CORE_USER, patch`).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import asyncpg

from projections.followers import runner as follower
from service.app import tenancy
from service.scim.errors import ERROR_SCHEMA as ERROR_SCHEMA
from service.scim.schema import CORE_GROUP as CORE_GROUP
from service.scim.schema import CORE_USER as CORE_USER
from service.scim.schema import ENTERPRISE_USER as ENTERPRISE_USER
from service.scim.schema import LIST_RESPONSE as LIST_RESPONSE
from service.scim.schema import PATCH_OP as PATCH_OP
from service.scim.schema import SEARCH_REQUEST as SEARCH_REQUEST

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    from tests.conftest import Tenant

# --- the protocol: the URNs are the service's own (re-exported above as `X as X`); media types
# and the IdPs' User-Agents --------------------------------------------------------------------

SCIM_JSON = "application/scim+json"
JSON = "application/json"
OKTA_CLIENT = "Okta SCIM Client 1.0.0"
ENTRA_CLIENT = "Azure-AD-Provisioning"  # Microsoft Entra ID's provisioning service


# --- requests ----------------------------------------------------------------------------------

def bearer(secret: str) -> dict[str, str]:
    """The Authorization header alone."""
    return {"Authorization": f"Bearer {secret}"}


def auth_headers(secret: str, *, content_type: str = SCIM_JSON, client: str | None = None) -> dict[str, str]:
    """A SCIM client's headers: the bearer token, the body's media type, its User-Agent if any."""
    headers = {**bearer(secret), "Content-Type": content_type}
    if client:
        headers["User-Agent"] = client
    return headers


def okta_headers(secret: str) -> dict[str, str]:
    """Okta's request shape: bodies sent as application/json, scim+json accepted."""
    return {**auth_headers(secret, content_type=JSON, client=OKTA_CLIENT), "Accept": SCIM_JSON}


def entra_headers(secret: str) -> dict[str, str]:
    """Entra's request shape; its User-Agent is recorded as the client in the audit trail."""
    return auth_headers(secret, client=ENTRA_CLIENT)


def new_user(user_name: str, **extra: object) -> dict[str, object]:
    return {"schemas": [CORE_USER], "userName": user_name, "active": True, **extra}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp body (RFC 7644 3.5.2) of these operations."""
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def deactivate_okta() -> dict[str, Any]:
    """Okta's path-less replace (docs/decisions.md, Interoperability)."""
    return patch({"op": "replace", "value": {"active": False}})


def deactivate_entra() -> dict[str, Any]:
    """Entra's capitalised op with a boolean as a string."""
    return patch({"op": "Replace", "path": "active", "value": "False"})


# --- answers -----------------------------------------------------------------------------------

async def body_of(resp: Any) -> Any:
    """The JSON body of an aiohttp response, whatever its Content-Type."""
    return await resp.json(content_type=None)


async def make_users(client: TestClient, tenant: Tenant, n: int) -> list[str]:
    """n users member0@example.com, ... created over HTTP; their ids."""
    ids = []
    for i in range(n):
        r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": f"member{i}@example.com",
                                                      "displayName": f"Member {i}"}, headers=tenant.headers)
        assert r.status == 201
        ids.append((await body_of(r))["id"])
    return ids


async def member_ids(client: TestClient, tenant: Tenant, gid: str) -> set[str]:
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=tenant.headers)
    assert r.status == 200
    return {m["value"] for m in (await body_of(r)).get("members", [])}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus exposition text (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- tokens and followers ----------------------------------------------------------------------

async def token_headers(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, label: str, scope: str, *, client: str | None = None
) -> tuple[uuid.UUID, dict[str, str]]:
    """A new token of the tenant: (token id, request headers carrying it)."""
    async with pool.acquire() as conn:
        token_id, secret = await tenancy.issue_token(conn, tenant_id, label, scope)
    return token_id, auth_headers(secret, client=client)


async def caught_up(pool: asyncpg.Pool, *names: str, within: float = 10.0) -> float:
    """Wait until every named follower has applied every committed event; seconds waited."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        while True:
            lags = [await follower.lag(conn, n) for n in names]
            rows = [await follower.load_checkpoint(conn, n) for n in names]
            assert all(r is None or r.state == follower.RUNNING for r in rows), rows
            if all(lag.events == 0 for lag in lags) and all(r is not None for r in rows):
                return time.monotonic() - started
            if time.monotonic() - started > within:
                raise AssertionError(f"followers {names} still behind after {within}s: {lags}")
            await asyncio.sleep(0.02)


# --- the real `scimledger` command as a subprocess ---------------------------------------------

SCIMLEDGER = [sys.executable, "-m", "service.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(dsn: str | None = None, data_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLEDGER_")}
    env["SCIMLEDGER_LOG_JSON"] = "true"
    if dsn:
        env["SCIMLEDGER_DATABASE_URL"] = dsn
    if data_dir:
        env["SCIMLEDGER_DATA_DIR"] = str(data_dir)
    return env


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SCIMLEDGER, *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"scimledger {' '.join(args)} failed: {result.stderr}")
    return result


def serve(
    env: dict[str, str], port: int, *args: str, stdout: int | IO[Any] = subprocess.PIPE, text: bool = True
) -> subprocess.Popen[Any]:
    """`scimledger serve --port <port> <args>`, its stderr into its stdout."""
    return subprocess.Popen([*SCIMLEDGER, "serve", "--port", str(port), *args], env=env,
                            stdout=stdout, stderr=subprocess.STDOUT, text=text)


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 30) -> list[str]:
    """The lines of the process's output up to the first that matches `pattern`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no {pattern!r} in output: {''.join(lines)}")


def first_token(proc: subprocess.Popen[str], data_dir: Path, timeout: float = 60) -> str:
    """The first start's secret: `serve` (stdout not a terminal) names the 0600 file it wrote in
    the data dir on its banner's `Secret token:` line; the secret is read from there."""
    out = "".join(read_until(proc, r"Secret token:", timeout=timeout))
    path = data_dir / "first-token"
    assert f"written to {path.resolve()}" in out, out
    return path.read_text().strip()


def wait_http(url: str, timeout: float = 20.0) -> float:
    """Seconds until `url` answers at all (any HTTP status)."""
    started = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return time.monotonic() - started
        except urllib.error.HTTPError:
            return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.05)


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the embedded PostgreSQL serving `data_dir`, if it left a pid file."""
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

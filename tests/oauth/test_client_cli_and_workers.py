"""The `scimledger client` commands as operators and external checks run them (exact stdout),
and revocation refused at once by every worker of `serve --workers 2`."""

from __future__ import annotations

import asyncio
import base64
import uuid

import aiohttp
from aiohttp.test_utils import TestClient

from service.app import oauth
from tests.support import bearer, cli, env_for, free_port, metric, serve, wait_http


def test_client_create_prints_the_id_then_the_secret_and_list_never_shows_a_secret(dsn: str) -> None:
    env = env_for(dsn)
    cli("tenant", "create", "acme", env=env)
    created = cli("client", "create", "--tenant", "acme", "--label", "entra-prod", "--secret-days", "30", env=env)
    client_id, secret = created.stdout.splitlines()
    assert uuid.UUID(client_id) and secret.startswith(oauth.CLIENT_SECRET_PREFIX)
    added = cli("client", "secret", "add", client_id, env=env)
    [second] = added.stdout.splitlines()
    assert second.startswith(oauth.CLIENT_SECRET_PREFIX) and second != secret
    listed = cli("client", "list", "--tenant", "acme", env=env)
    assert client_id in listed.stdout and "entra-prod" in listed.stdout
    assert secret not in listed.stdout and second not in listed.stdout
    assert listed.stdout.count("expires") == 2
    too_long = cli("client", "create", "--tenant", "acme", "--label", "x", "--secret-days", "2000", env=env, check=False)
    assert too_long.returncode == 1 and too_long.stdout == "" and "1 to 1095 days" in too_long.stderr


def test_client_revoke_and_secret_revoke_refuse_unknown_ids_cleanly(dsn: str) -> None:
    env = env_for(dsn)
    cli("tenant", "create", "acme", env=env)
    client_id, _ = cli("client", "create", "--tenant", "acme", "--label", "okta", env=env).stdout.splitlines()
    missing = cli("client", "secret", "revoke", client_id, str(uuid.uuid4()), env=env, check=False)
    assert missing.returncode == 1 and "no active secret" in missing.stderr and "Traceback" not in missing.stderr
    assert cli("client", "revoke", client_id, env=env).returncode == 0
    again = cli("client", "revoke", client_id, env=env, check=False)
    assert again.returncode == 1 and "already revoked" in again.stderr


async def test_a_revoked_client_is_refused_at_once_by_every_worker(dsn: str) -> None:
    """Access tokens are checked against their client on every request (no cache), so a
    revocation made by the CLI is seen by both workers on their next request."""
    env = {**env_for(dsn), "SCIMLEDGER_RATE_LIMIT": "10000"}
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    created = await asyncio.to_thread(cli, "client", "create", "--tenant", "acme", "--label", "entra-prod", env=env)
    client_id, secret = created.stdout.splitlines()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(env, port, "--workers", "2")
    try:
        await asyncio.to_thread(wait_http, f"{base}/healthz")
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        async with aiohttp.ClientSession() as http, http.post(
            f"{base}/oauth2/token", data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        ) as r:
            assert r.status == 200
            access = (await r.json())["access_token"]

        async def statuses(n: int) -> list[int]:
            out = []
            for _ in range(n):  # a new connection each: SO_REUSEPORT spreads them over both workers
                async with aiohttp.ClientSession() as one, one.get(f"{base}/scim/v2/Users", headers=bearer(access)) as r:
                    out.append(r.status)
            return out

        assert set(await statuses(10)) == {200}
        await asyncio.to_thread(cli, "client", "revoke", client_id, env=env)
        assert set(await statuses(20)) == {401}
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)


async def test_expiring_secrets_show_in_the_metrics(dsn: str, client: TestClient) -> None:
    """Issue: expiring secrets show in `client list` and in the metrics, so an operator sees
    them coming: `scimledger_oauth_client_secrets_expiring` counts active secrets of active
    clients by window; a revoked secret no longer counts."""
    env = env_for(dsn)
    cli("tenant", "create", "acme", env=env)
    soon, _ = cli("client", "create", "--tenant", "acme", "--label", "soon", "--secret-days", "5", env=env).stdout.splitlines()
    cli("client", "create", "--tenant", "acme", "--label", "later", "--secret-days", "20", env=env)
    cli("client", "create", "--tenant", "acme", "--label", "far", "--secret-days", "200", env=env)

    async def expiring() -> tuple[float, float]:
        text = await (await client.get("/metrics")).text()
        name = "scimledger_oauth_client_secrets_expiring"
        return metric(text, name, within="7d"), metric(text, name, within="30d")

    assert await expiring() == (1, 2)
    cli("client", "revoke", soon, env=env)
    assert await expiring() == (0, 1)

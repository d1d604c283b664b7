"""At-least-once across a crash: a real `scimledger serve` SIGKILLed in the middle of a burst of
2,000 changes, started again, and a real receiver on 127.0.0.1 that ends with a SET for every
event of the log (none lost), duplicates only as the same jti with the same content (RFC 8417
2.2: the receiver deduplicates on jti; RFC 8935 2.2: the checkpoint moves after the 202)."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
from joserfc import jwt
from joserfc.jwk import KeySet

from projections.domain import security_events as sets
from service.app import set_keys, streams, tenancy
from tests.events.receiver import Receiver
from tests.support import auth_headers, env_for, free_port, serve, wait_http

CHANGES = 2000


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = serve(env, port, stdout=subprocess.DEVNULL, text=False)
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
    return proc


async def test_sigkill_during_a_burst_of_2000_changes_loses_no_set(
    dsn: str, pool: asyncpg.Pool, tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "var"
    async with pool.acquire() as conn:
        tenant_id = await tenancy.create_tenant(conn, "acme")
        _, secret = await tenancy.issue_token(conn, tenant_id, "okta", "scim")
        stream_id = await streams.create_stream(conn, tenant_id, kek=set_keys.key_encryption_key(data_dir),
                                                push=receiver.url)
    env = {**env_for(dsn, data_dir), "SCIMLEDGER_RATE_LIMIT": "1000000"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.to_thread(_start, env, port)
    sent = iter(range(CHANGES))
    try:
        async with aiohttp.ClientSession(headers=auth_headers(secret), timeout=aiohttp.ClientTimeout(total=5)) as http:
            async def writer() -> None:
                for i in sent:
                    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"burst{i}@example.com"}
                    while True:  # an IdP retries what was not acknowledged
                        try:
                            async with http.post(f"{base}/scim/v2/Users", json=body) as r:
                                if r.status in (201, 409):  # 409: it had committed before the crash
                                    break
                        except (aiohttp.ClientError, TimeoutError):
                            pass
                        await asyncio.sleep(0.05)

            writers = [asyncio.create_task(writer()) for _ in range(8)]
            await receiver.wait_for(300, within=60)  # mid-burst, SETs flowing
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = await asyncio.to_thread(_start, env, port)
            await asyncio.gather(*writers)
        async with pool.acquire() as conn:
            positions = [r["global_position"] for r in await conn.fetch(
                "SELECT global_position FROM events WHERE tenant_id = $1", tenant_id)]
        assert len(positions) == CHANGES
        expected = {sets.jti(stream_id, p, sets.PROV_SET) for p in positions}
        deadline = time.monotonic() + 60
        while {c["jti"] for c in map(_claims, receiver.accepted)} != expected:
            assert time.monotonic() < deadline, f"{len(expected - {_claims(t)['jti'] for t in receiver.accepted})} SETs missing"
            await asyncio.sleep(0.1)
        jwks = msgspec.json.decode(await asyncio.to_thread(_get, f"{base}/.well-known/jwks.json"))
        keys = KeySet.import_key_set(jwks)
        by_jti: dict[str, set[bytes]] = {}
        for token in receiver.accepted:
            claims = jwt.decode(token, keys, algorithms=["ES256"]).claims
            content = {k: v for k, v in claims.items() if k != "iat"}
            by_jti.setdefault(claims["jti"], set()).add(msgspec.json.encode(content, order="sorted"))
        assert all(len(c) == 1 for c in by_jti.values()), "a duplicate that is not the same SET"
        duplicates = len(receiver.accepted) - len(by_jti)
        print(f"{len(receiver.accepted)} SETs accepted for {CHANGES} events, {duplicates} redelivered after the SIGKILL")
    finally:
        proc.terminate()
        proc.wait(20)


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return bytes(r.read())

"""The way out for a log written in clear (`scimledger log seal`) and the master key's rotation
(`scimledger keys rotate`): docs/privacy.md."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from eventstore.store import append
from projections.domain import decide
from projections.views.paging import new_events
from service.runtime.database import create_pool
from tests.privacy.test_erasure import pg_dump
from tests.support import cli, env_for


async def _plaintext_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_name: str, title: str) -> uuid.UUID:
    """A user written as the versions before sealing wrote them: payloads in clear."""
    user_id = uuid.uuid4()
    resource = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "title": title,
                "active": True}
    created = decide.create_user(resource)
    metadata = {"actor": {"kind": "token", "label": "okta-old"}}
    await append(conn, tenant_id, "user", user_id, 0, new_events(created), metadata)
    deactivated = decide.update_user(resource, {**resource, "active": False})
    await append(conn, tenant_id, "user", user_id, 1, new_events(deactivated), metadata)
    return user_id


async def test_log_seal_converts_a_plaintext_log_and_keeps_it_verifiable(dsn: str, tmp_path: Path) -> None:
    """A log written in clear: after `log seal` no payload holds the person's data, the chain
    verifies, the views and history are as before, the trail records `log.sealed`, and an
    erasure then leaves nothing of the person in a pg_dump."""
    env = env_for(dsn, data_dir=tmp_path)
    cli("tenant", "create", "acme", env=env)
    tag = uuid.uuid4().hex[:10]
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = 'acme'")
            user_id = await _plaintext_user(conn, tenant_id, f"old.{tag}@x.example", f"Title{tag}")
    finally:
        await pool.close()
    cli("projections", "rebuild", env=env)  # views and trail of the old log, sealed chain over it
    assert cli("audit", "verify", "--tenant", "acme", env=env).returncode == 0
    assert tag in pg_dump(dsn)
    refused = cli("user", "erase", "--tenant", "acme", user_id.hex, "--reason", "r", "--yes", env=env, check=False)
    assert refused.returncode != 0 and "log seal" in refused.stderr  # a key cannot erase clear text

    sealed = cli("log", "seal", env=env)
    assert sealed.stdout.strip() == "2", sealed.stderr
    conn = await asyncpg.connect(dsn)
    try:
        clear = await conn.fetchval("SELECT count(*) FROM events WHERE data::text LIKE $1", f"%{tag}%")
        kinds = [r["type"] for r in await conn.fetch("SELECT type FROM events ORDER BY global_position")]
    finally:
        await conn.close()
    assert clear == 0 and kinds[-1] == "log.sealed"
    assert cli("audit", "verify", "--tenant", "acme", env=env).returncode == 0
    assert f"old.{tag}@x.example" in cli("user", "list", "--tenant", "acme", env=env).stdout
    history = cli("audit", "history", "--tenant", "acme", str(user_id), env=env).stdout
    assert "user.created" in history and "user.deactivated" in history and "okta-old" in history
    assert "nothing to seal" in cli("log", "seal", env=env).stderr  # idempotent
    assert cli("projections", "verify", env=env).returncode == 0

    cli("user", "erase", "--tenant", "acme", str(user_id), "--reason", "GDPR", "--yes", env=env)
    assert tag not in pg_dump(dsn)
    assert cli("audit", "verify", "--tenant", "acme", env=env).returncode == 0


def test_rotating_the_master_key_rewraps_every_subject_key(dsn: str, tmp_path: Path) -> None:
    """`keys rotate` makes a new master key, re-wraps every subject's key under it (no event
    changes) and removes the old one; the subjects' data still opens."""
    env = env_for(dsn, data_dir=tmp_path)
    cli("tenant", "create", "acme", env=env)
    user_id = cli("user", "create", "--tenant", "acme", "ada@x.example", "--given", "Ada", env=env).stdout.strip()
    first = (tmp_path / "master.key").read_text()
    before = cli("keys", "status", env=env).stdout
    new_id = cli("keys", "rotate", env=env).stdout.strip()
    assert (tmp_path / "master.key").read_text() != first
    assert not (tmp_path / "master.key.previous").exists()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    after = cli("keys", "status", env=env).stdout
    assert new_id in after and new_id not in before
    assert after.splitlines()[1].split()[-1] == "1"  # the one subject, now under the new key
    cli("user", "deactivate", "--tenant", "acme", user_id, env=env)  # its key unwraps
    history = cli("audit", "history", "--tenant", "acme", user_id, env=env).stdout
    assert "user.deactivated" in history

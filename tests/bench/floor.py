"""The durable floor of the HTTP benchmark (issue 18): what one SQL statement per request costs.

aiohttp and asyncpg as scimledger uses them, on the same PostgreSQL, but nothing else: no
authentication, no validation, no events, stdlib `json`, one statement per request, one commit
per write. It answers the requests of tests/bench/phases.py with the statuses they expect, so the
same load client measures it in the same run; its figures are the ceiling of this design on the
machine, and scimledger's are reported as a ratio of them (tests/bench/report.py).

    python -m tests.bench.floor --dsn postgresql://... --port 8123

Its tables (`floor_*`) live beside scimledger's in the bench database and are created at start.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid

import asyncpg
from aiohttp import web

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_users (
    id uuid PRIMARY KEY, ordinal bigserial UNIQUE, user_name text NOT NULL, resource jsonb NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS floor_users_user_name ON floor_users (lower(user_name));
CREATE TABLE IF NOT EXISTS floor_groups (id uuid PRIMARY KEY, resource jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS floor_members (group_id uuid, member_id uuid, PRIMARY KEY (group_id, member_id));
"""
FILTER = re.compile(r'userName eq "([^"]*)"')
POOL = web.AppKey("pool", asyncpg.Pool)
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/scim+json")


async def create_user(request: web.Request) -> web.Response:
    resource = json.loads(await request.read())
    resource["id"] = str(uuid.uuid4())
    await request.app[POOL].execute(
        "INSERT INTO floor_users (id, user_name, resource) VALUES ($1, $2, $3)",
        uuid.UUID(resource["id"]), resource["userName"], json.dumps(resource),
    )
    return _json(resource, 201)


async def get_user(request: web.Request) -> web.Response:
    raw = await request.app[POOL].fetchval(
        "SELECT resource FROM floor_users WHERE id = $1", uuid.UUID(request.match_info["id"])
    )
    if raw is None:
        raise web.HTTPNotFound()
    return _json(json.loads(raw))


async def list_users(request: web.Request) -> web.Response:
    """A `userName eq` lookup, else a page by startIndex/count in creation order."""
    pool = request.app[POOL]
    found = FILTER.fullmatch(request.query.get("filter", ""))
    if found:
        rows = await pool.fetch(
            "SELECT resource FROM floor_users WHERE lower(user_name) = lower($1)", found.group(1)
        )
        resources = [json.loads(r[0]) for r in rows]
        return _json({"schemas": [LIST], "totalResults": len(resources), "startIndex": 1,
                      "itemsPerPage": len(resources), "Resources": resources})
    start = int(request.query.get("startIndex", "1"))
    count = int(request.query.get("count", "100"))
    rows = await pool.fetch(
        "SELECT resource, (SELECT count(*) FROM floor_users) FROM floor_users "
        "ORDER BY ordinal OFFSET $1 LIMIT $2", max(0, start - 1), count,
    )
    resources = [json.loads(r[0]) for r in rows]
    return _json({"schemas": [LIST], "totalResults": rows[0][1] if rows else 0, "startIndex": start,
                  "itemsPerPage": len(resources), "Resources": resources})


async def patch_user(request: web.Request) -> web.Response:
    """The values of path-less replace operations merged into the resource: one UPDATE."""
    ops = json.loads(await request.read())["Operations"]
    merged: dict[str, object] = {}
    for op in ops:
        merged.update(op["value"])
    raw = await request.app[POOL].fetchval(
        "UPDATE floor_users SET resource = resource || $2::jsonb WHERE id = $1 RETURNING resource",
        uuid.UUID(request.match_info["id"]), json.dumps(merged),
    )
    if raw is None:
        raise web.HTTPNotFound()
    return _json(json.loads(raw))


async def create_group(request: web.Request) -> web.Response:
    resource = json.loads(await request.read())
    resource["id"] = str(uuid.uuid4())
    await request.app[POOL].execute(
        "INSERT INTO floor_groups (id, resource) VALUES ($1, $2)", uuid.UUID(resource["id"]), json.dumps(resource)
    )
    return _json(resource, 201)


async def patch_group(request: web.Request) -> web.Response:
    """Members added by `add members` operations: one INSERT."""
    ops = json.loads(await request.read())["Operations"]
    members = [uuid.UUID(m["value"]) for op in ops for m in op["value"]]
    await request.app[POOL].execute(
        "INSERT INTO floor_members SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
        uuid.UUID(request.match_info["id"]), members,
    )
    return web.Response(status=204)


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(dsn: str, pool_max: int) -> web.Application:
    async def pool(app: web.Application):  # type: ignore[no-untyped-def]
        app[POOL] = await asyncpg.create_pool(dsn, min_size=pool_max, max_size=pool_max)
        await app[POOL].execute(SCHEMA)
        yield
        await app[POOL].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_post("/Users", create_user)
    app.router.add_get("/Users", list_users)
    app.router.add_get("/Users/{id}", get_user)
    app.router.add_patch("/Users/{id}", patch_user)
    app.router.add_post("/Groups", create_group)
    app.router.add_patch("/Groups/{id}", patch_group)
    app.router.add_get("/readyz", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-max", type=int, default=10)  # scimledger's default pool size
    args = parser.parse_args()
    web.run_app(create_app(args.dsn, args.pool_max), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()

"""The phases of the HTTP benchmark: the same requests, in the same order, for every server.

IdP-shaped traffic: Okta's create body, lookup by `userName eq` before a create, deactivation by a
path-less PATCH replace, GET by id, an import walk of pages of 100 by startIndex, and group push
adding members one PATCH at a time.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec

from tests.bench.load import Call, PhaseResult, run_phase
from tests.bench.servers import Server
from tests.support import CORE_GROUP, CORE_USER, deactivate_okta, patch


def okta_user(user_name: str, i: int) -> dict[str, Any]:
    return {
        "schemas": [CORE_USER],
        "userName": user_name,
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"Given{i} Family{i}",
        "externalId": f"00u{i:08d}",
        "active": True,
    }


def user_names(run: str, n: int) -> list[str]:
    return [f"{run}-{i}@example.com" for i in range(n)]


async def run_phases(
    server: Server, run: str, n: int, list_requests: int, rss: Any
) -> list[PhaseResult]:
    """create, lookup, PATCH deactivate, GET by id, list pages of 100, group member add."""
    names = user_names(run, n)
    shuffled = random.Random(7).sample(range(n), n)
    results: list[PhaseResult] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=server.headers, connector=connector) as session:
        base = server.base_url

        async def phase(name: str, calls: list[Call], keep: bool = False) -> PhaseResult:
            result = await run_phase(session, base, name, calls, rss=rss, keep_bodies=keep)
            results.append(result)
            return result

        created = await phase(
            "create", [Call("POST", "/Users", okta_user(names[i], i), (201,)) for i in range(n)], keep=True
        )
        ids = [msgspec.json.decode(b)["id"] if b else None for b in created.bodies]
        created.bodies = []
        assert all(ids), created.first_error

        await phase("lookup userName eq", [
            Call("GET", "/Users?filter=" + quote(f'userName eq "{names[i]}"')) for i in shuffled
        ])
        deactivate = deactivate_okta()
        await phase("PATCH deactivate", [
            Call("PATCH", f"/Users/{ids[i]}", deactivate, (200, 204)) for i in shuffled
        ])
        await phase("GET by id", [Call("GET", f"/Users/{ids[i]}") for i in shuffled])
        pages = max(1, n // 100)
        await phase("list page of 100", [
            Call("GET", f"/Users?startIndex={1 + 100 * (k % pages)}&count=100") for k in range(list_requests)
        ])

        async with session.post(base + "/Groups", json={"schemas": [CORE_GROUP], "displayName": f"{run} group"}) as r:
            assert r.status == 201, await r.text()
            group_id = (await r.json(content_type=None))["id"]
        await phase("group member add", [
            Call("PATCH", f"/Groups/{group_id}", patch(
                {"op": "add", "path": "members", "value": [{"value": ids[i]}]},
            ), (200, 204))
            for i in shuffled
        ])
    return results

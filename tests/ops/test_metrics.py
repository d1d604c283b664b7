"""/metrics in one process (docs/operations.md, "Metrics"): the Prometheus text format, events
counted from the log exactly once across scrapes, requests by route template, follower lag."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_USER, caught_up, metric, patch


async def scrape(client: TestClient) -> str:
    r = await client.get("/metrics")  # public, like the probes: no token
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return await r.text()


async def scrape_until(client: TestClient, expected: dict[str, int], patience_s: float = 10.0) -> str:
    """Scrape until the event counts reach `expected`. Events are counted below the snapshot's
    xmin (each exactly once), so a transaction still open elsewhere (a follower's batch) can hold
    a count back for a few milliseconds: the metric is eventually exact, never over."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while True:
        text = await scrape(client)
        counts = {t: metric(text, "scimledger_events_total", type=t) for t in expected}
        assert all(counts[t] <= n for t, n in expected.items()), counts  # never over-counted
        if counts == expected:
            return text
        assert asyncio.get_running_loop().time() < deadline, counts
        await asyncio.sleep(0.02)


async def test_events_are_counted_once_across_scrapes(client: TestClient, tenant: Tenant, pool) -> None:
    before = await scrape(client)
    assert metric(before, "scimledger_events_total", type="user.created") == 0
    r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "m1@example.com"}, headers=tenant.headers)
    user_id = (await r.json(content_type=None))["id"]
    await scrape_until(client, {"user.created": 1})
    await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "m2@example.com"}, headers=tenant.headers)
    r = await client.patch(f"/scim/v2/Users/{user_id}", json=patch(
        {"op": "replace", "value": {"active": False, "title": "x"}}), headers=tenant.headers)
    assert r.status == 200
    second = await scrape_until(client, {"user.created": 2, "user.updated": 1, "user.deactivated": 1})
    third = await scrape(client)
    assert metric(third, "scimledger_events_total", type="user.created") == 2  # not counted again

    label = {"method": "PATCH", "route": "/scim/v2/Users/{id}", "status": "200"}
    assert metric(second, "scimledger_http_requests_total", **label) == metric(before, "scimledger_http_requests_total", **label) + 1
    unknown = {"method": "GET", "route": "unmatched", "status": "404"}
    was = metric(third, "scimledger_http_requests_total", **unknown)
    assert (await client.get("/no/such/path/123")).status == 404
    assert metric(await scrape(client), "scimledger_http_requests_total", **unknown) == was + 1

    await caught_up(pool, "audit", "seal")
    lagless = await scrape(client)
    assert metric(lagless, "scimledger_projection_lag_events", projection="audit") == 0
    assert metric(lagless, "scimledger_projection_state", projection="audit", state="running") == 1
    assert metric(lagless, "scimledger_db_pool_size") >= 1

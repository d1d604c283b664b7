"""`make bench`: what one row costs the worst substring filter the input bounds allow (issue 12
item 8: `title co "<4,070 chars>"` over 1 MB titles cost 1.9 s of database CPU per row).

Users with titles of MAX_STRING_LENGTH "a"s, filtered by `title co "a...ab"` with a literal of
MAX_VALUE_LENGTH characters (the worst case of PostgreSQL's LIKE: every position of the title
matches all but the last character), over the real app and its PostgreSQL. Prints the request
time and the time per row scanned (run with -s); asserts only that every answer is a 200.

BENCH_FILTER_USERS (default 200) sets the users, BENCH_FILTER_REQUESTS (default 20) the requests.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
from aiohttp.test_utils import TestClient

from service.scim.filter import MAX_VALUE_LENGTH
from service.scim.limits import MAX_STRING_LENGTH
from tests.conftest import Tenant
from tests.support import new_user

pytestmark = pytest.mark.bench

USERS = int(os.environ.get("BENCH_FILTER_USERS", "200"))
REQUESTS = int(os.environ.get("BENCH_FILTER_REQUESTS", "20"))


async def test_worst_substring_filter_at_the_bounds(client: TestClient, tenant: Tenant) -> None:
    title = "a" * MAX_STRING_LENGTH
    for i in range(USERS):
        resp = await client.post("/scim/v2/Users", json=new_user(f"b{i}@example.com", title=title),
                                 headers=tenant.headers)
        assert resp.status == 201
    worst = 'title co "' + "a" * (MAX_VALUE_LENGTH - 1) + 'b"'
    cheap = 'title co "b"'
    timings: dict[str, list[float]] = {worst: [], cheap: []}
    for text, samples in timings.items():
        for _ in range(REQUESTS):
            started = time.perf_counter()
            resp = await client.get("/scim/v2/Users", params={"filter": text, "count": "1"}, headers=tenant.headers)
            assert resp.status == 200 and (await resp.json(content_type=None))["totalResults"] == 0
            samples.append(time.perf_counter() - started)
    print(f"\n{USERS} users, titles of {MAX_STRING_LENGTH} characters, {REQUESTS} requests each")
    print("| filter | median request (ms) | max (ms) | per row scanned (ms) |")
    print("|---|---|---|---|")
    base = statistics.median(timings[cheap])
    for name, text in ((f"`title co` {MAX_VALUE_LENGTH}-character worst case", worst), ('`title co "b"`', cheap)):
        median = statistics.median(timings[text])
        per_row = (median - (base if text is worst else 0)) / USERS
        print(f"| {name} | {median * 1000:.1f} | {max(timings[text]) * 1000:.1f} | "
              f"{per_row * 1000:.3f}{' (above the cheap filter)' if text is worst else ''} |")

"""startIndex walks continue where the previous page ended (service/paging.py; RFC 7644 3.4.2.4).

An import walk is linear in its number of pages: the next page is an index range after the last
ordinal, not an OFFSET. Observable difference: a user deleted from an earlier page during the walk
does not make the walk skip a user (an OFFSET walk would)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from service.app.paging import PageCursors
from tests.conftest import Tenant
from tests.support import CORE_USER


async def test_walk_continues_after_a_deletion_without_skipping(client: TestClient, tenant: Tenant) -> None:
    ids = []
    for i in range(30):
        r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": f"w{i:02}@x.example"},
                              headers=tenant.headers)
        ids.append((await r.json(content_type=None))["id"])
    r = await client.get("/scim/v2/Users?startIndex=1&count=10", headers=tenant.headers)
    first = [u["id"] for u in (await r.json(content_type=None))["Resources"]]
    assert first == ids[:10]
    assert (await client.delete(f"/scim/v2/Users/{ids[3]}", headers=tenant.headers)).status == 204
    r = await client.get("/scim/v2/Users?startIndex=11&count=10", headers=tenant.headers)
    second = [u["id"] for u in (await r.json(content_type=None))["Resources"]]
    assert second == ids[10:20]  # an OFFSET of 10 would have started at ids[11]
    # a jump nobody walked to falls back to OFFSET over the current rows
    r = await client.get("/scim/v2/Users?startIndex=5&count=2", headers=tenant.headers)
    assert [u["id"] for u in (await r.json(content_type=None))["Resources"]] == ids[5:7]


async def test_a_filtered_walk_has_its_own_continuations(client: TestClient, tenant: Tenant) -> None:
    for i in range(6):
        await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": f"f{i}@x.example",
                                                  "title": "even" if i % 2 == 0 else "odd"}, headers=tenant.headers)
    seen = []
    for start in (1, 3):
        r = await client.get(f'/scim/v2/Users?filter=title eq "odd"&startIndex={start}&count=2', headers=tenant.headers)
        seen += [u["userName"] for u in (await r.json(content_type=None))["Resources"]]
    assert seen == ["f1@x.example", "f3@x.example", "f5@x.example"]


def test_page_cursors_expire_and_stay_bounded() -> None:
    cursors = PageCursors(ttl=0.0, max_entries=2)
    cursors.remember("q", 11, 100, 500)
    assert cursors.after("q", 11) is None  # expired at once
    cursors = PageCursors(ttl=60.0, max_entries=2)
    for n in (11, 21, 31):
        cursors.remember("q", n, n * 10, 500)
    assert cursors.after("q", 11) is None  # evicted, least recently used
    assert cursors.after("q", 21) == (210, 500) and cursors.after("q", 31) == (310, 500)

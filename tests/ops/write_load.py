"""Concurrent IdP-like writers over HTTP that remember every write the service acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support import CORE_GROUP, CORE_USER, patch

# (method, path, json, headers) -> (status, body); the aiohttp TestClient or a ClientSession
Send = Callable[[str, str, Any], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass
class Acknowledged:
    """What the clients were told: user id -> highest version acknowledged, and memberships."""

    users: dict[str, int] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)  # (group id, user id)
    groups: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def saw(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def version(self, user_id: str, body: dict[str, Any]) -> None:
        v = int(body["meta"]["version"].removeprefix('W/"').rstrip('"'))
        self.users[user_id] = max(self.users.get(user_id, 0), v)


async def create_groups(send: Send, ack: Acknowledged, n: int) -> None:
    for i in range(n):
        status, body = await send("POST", "/scim/v2/Groups", {"schemas": [CORE_GROUP], "displayName": f"team-{i}-{uuid.uuid4().hex[:6]}"})
        assert status == 201, body
        ack.groups.append(body["id"])


async def writer(send: Send, ack: Acknowledged, stop: asyncio.Event, worker: int) -> None:
    """Create a user, patch it, add it to a group; again until `stop`."""
    for i in itertools.count():
        if stop.is_set():
            return
        try:
            status, body = await send("POST", "/scim/v2/Users", {
                "schemas": [CORE_USER], "userName": f"w{worker}-{i}-{uuid.uuid4().hex[:8]}@example.com",
                "name": {"givenName": "W", "familyName": str(i)}, "active": True,
            })
            ack.saw(status)
            if status != 201:
                continue
            user_id = body["id"]
            ack.version(user_id, body)
            status, body = await send("PATCH", f"/scim/v2/Users/{user_id}", patch(
                {"op": "replace", "value": {"title": f"t{i}", "active": i % 3 != 0}},
            ))
            ack.saw(status)
            if status == 200:
                ack.version(user_id, body)
            group_id = ack.groups[(worker + i) % len(ack.groups)]
            status, body = await send("PATCH", f"/scim/v2/Groups/{group_id}", patch(
                {"op": "add", "path": "members", "value": [{"value": user_id}]},
            ))
            ack.saw(status)
            if status in (200, 204):
                ack.members.add((group_id, user_id))
        except (aiohttp.ClientError, OSError, TimeoutError):  # the crash test kills the server
            ack.saw(-1)
            if stop.is_set():
                return
            await asyncio.sleep(0.05)


async def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)

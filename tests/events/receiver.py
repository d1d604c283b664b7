"""A real RFC 8935 push receiver on 127.0.0.1 for the tests, and SET verification.

The receiver records every SET POSTed to it and answers from a script (a list of statuses and
bodies, 202 once the script is used up). `verify` checks a SET's signature against the
service's published JWKS with joserfc, as an app would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support import free_port


@dataclass
class Receiver:
    url: str
    runner: web.AppRunner | None = None
    tokens: list[str] = field(default_factory=list)  # every SET that arrived, accepted or not
    accepted: list[str] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)
    script: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    arrival_times: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        token = (await request.read()).decode()
        self.tokens.append(token)
        self.arrival_times.append(time.monotonic())
        self.content_types.add(request.headers.get("Content-Type", ""))
        status, body = self.script.pop(0) if self.script else (202, None)
        if status == 202:
            self.accepted.append(token)
            return web.Response(status=202)
        return web.json_response(body, status=status) if body is not None else web.Response(status=status)

    async def wait_for(self, n: int, within: float = 15.0, *, attempts: bool = False) -> list[str]:
        """The first `n` accepted SETs (or, with `attempts`, SETs that arrived at all), waiting
        up to `within` seconds for them."""
        seen = self.tokens if attempts else self.accepted
        deadline = time.monotonic() + within
        while len(seen) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(seen)} SETs, not {n}, after {within} s")
            await asyncio.sleep(0.02)
        return seen[:n]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def start_receiver() -> Receiver:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}/events")
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    receiver.runner = web.AppRunner(app, access_log=None)
    await receiver.runner.setup()
    await web.TCPSite(receiver.runner, "127.0.0.1", port).start()
    return receiver


def verify(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a SET whose ES256 signature checks against `jwks`."""
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    return dict(decoded.header), dict(decoded.claims)

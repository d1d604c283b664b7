"""What the observing middlewares (metrics, the console's request log) share: run the handler and
report its final status, the response when there is one, and the time it took, whether the
handler returned or raised an aiohttp HTTP exception. Anything else propagates with status 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Done = Callable[[web.StreamResponse | None, int, float], None]


async def observed(request: web.Request, handler: Handler, done: Done) -> web.StreamResponse:
    """Call `handler`, then `done(response, status, seconds)` exactly once, even on an exception."""
    started = time.perf_counter()
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        done(response, status, time.perf_counter() - started)

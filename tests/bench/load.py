"""A bounded HTTP load on loopback: N requests, C at a time, latency of each, peak RSS.

The client is aiohttp in the test process. Each phase is a finite list of requests; a request
that does not get its expected status counts as an error and the phase reports it (a benchmark
of failing requests measures nothing).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil

CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str  # appended to the server's base URL
    json: Any = None
    expect: tuple[int, ...] = (200,)


@dataclass
class PhaseResult:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str | None
    peak_rss_mb: float
    bodies: list[Any] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)


def tree_rss_mb(pids: Sequence[int]) -> float:
    """RSS of these processes and all their descendants, in MiB."""
    seen: set[int] = set()
    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total / 2**20


class RssSampler:
    """Samples `measure()` every `interval` seconds in the background; keeps the peak."""

    def __init__(self, measure: Callable[[], float], interval: float = 0.1) -> None:
        self.measure = measure
        self.interval = interval
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, await asyncio.to_thread(self.measure))
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> RssSampler:
        self.peak = await asyncio.to_thread(self.measure)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.peak = max(self.peak, await asyncio.to_thread(self.measure))


async def run_phase(
    session: aiohttp.ClientSession,
    base_url: str,
    name: str,
    calls: Sequence[Call],
    *,
    rss: Callable[[], float],
    concurrency: int = CONCURRENCY,
    keep_bodies: bool = False,
) -> PhaseResult:
    """Send `calls` with `concurrency` requests in flight; time each one."""
    latencies: list[float] = [0.0] * len(calls)
    bodies: list[Any] = [None] * len(calls) if keep_bodies else []
    errors = 0
    first_error: str | None = None
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors, first_error
        while next_index < len(calls):
            i = next_index
            next_index += 1
            call = calls[i]
            started = time.perf_counter()
            async with session.request(call.method, base_url + call.path, json=call.json) as resp:
                raw = await resp.read()
            latencies[i] = (time.perf_counter() - started) * 1000
            if resp.status not in call.expect:
                errors += 1
                first_error = first_error or f"{call.method} {call.path} -> {resp.status} {raw[:300]!r}"
            elif keep_bodies:
                bodies[i] = raw

    async with RssSampler(rss) as sampler:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return PhaseResult(name, len(calls), seconds, latencies, errors, first_error, sampler.peak, bodies)

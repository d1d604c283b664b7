"""The provisioning log's chart: requests per hour by outcome, one small chart per connection,
as geometry for inline SVG (templates/chart.svg.html). Pure: numbers in, shapes out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from service.app.request_log import OUTCOMES

WIDTH, HEIGHT = 720, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    outcome: str
    label: str  # the tooltip and the accessible text


@dataclass(frozen=True, slots=True)
class Chart:
    connection: str
    segments: list[Segment]
    ticks: list[tuple[float, str]]  # x, hour label
    peak: int
    totals: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def summary(self) -> str:
        return (f"{self.connection}: " + ", ".join(f"{self.totals[o]} {o}" for o in OUTCOMES)
                + " in the last 24 hours")


def hours_ending(now: dt.datetime, hours: int = 24) -> list[dt.datetime]:
    top = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return [top - dt.timedelta(hours=hours - 1 - i) for i in range(hours)]


def charts(data: dict[str, dict[dt.datetime, dict[str, int]]], now: dt.datetime, hours: int = 24) -> list[Chart]:
    slots = hours_ending(now, hours)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / hours
    out = []
    for connection in sorted(data):
        per_hour = {h.astimezone(dt.UTC): counts for h, counts in data[connection].items()}
        peak = max((sum(c.values()) for c in per_hour.values()), default=0) or 1
        segments = []
        totals = dict.fromkeys(OUTCOMES, 0)
        for i, hour in enumerate(slots):
            counts = per_hour.get(hour, {})
            base = float(TOP + plot_h)
            for outcome in OUTCOMES:
                n = counts.get(outcome, 0)
                totals[outcome] += n
                if not n:
                    continue
                h = max(1.0, plot_h * n / peak)
                base -= h
                segments.append(Segment(
                    round(LEFT + i * step + 1, 1), round(base, 1), round(step - 2, 1), round(h, 1), outcome,
                    f"{hour:%H}:00 UTC: {n} {outcome}",
                ))
        ticks = [(round(LEFT + i * step + step / 2, 1), f"{h:%H}:00") for i, h in enumerate(slots) if i % 4 == 0]
        out.append(Chart(connection, segments, ticks, peak, totals))
    return out

"""The benchmark's tables, printed as Markdown so a run pastes straight into docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tests.bench.load import PhaseResult

# issue 8: ours / scim2-server in the same run
RATIO_TARGETS = {
    "create": 5.0,
    "lookup userName eq": 5.0,
    "PATCH deactivate": 5.0,
    "GET by id": 5.0,
    "list page of 100": 20.0,
}
# issue 18: ours / the durable floor (tests/bench/floor.py) in the same run
FLOOR_TARGETS = {
    "create": 0.8,
    "lookup userName eq": 0.8,
    "PATCH deactivate": 0.8,
    "GET by id": 0.8,
    "list page of 100": 0.8,
}
# issue 8: absolute goals on the 2-core machine (req/s, p99 ms)
ABSOLUTE_TARGETS = {"create": (1500.0, 50.0), "lookup userName eq": (3000.0, 50.0)}


def _table(title: str, header: str, rule: str, rows: Iterable[str]) -> str:
    """A Markdown table under a level-4 heading."""
    return "\n".join([f"#### {title}", "", header, rule, *rows])


def phase_table(title: str, results: Sequence[PhaseResult], extra_rss: dict[str, float] | None = None) -> str:
    rows = [
        f"| {r.name} | {r.requests} | {r.rate:,.0f} | {r.p50:.1f} | {r.p99:.1f} | {r.errors} | {r.peak_rss_mb:.0f} |"
        for r in results
    ]
    rows += [f"| {label} | | | | | | {value:.0f} |" for label, value in (extra_rss or {}).items()]
    return _table(title, "| phase | requests | req/s | p50 ms | p99 ms | errors | peak RSS MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|", rows)


def ratio_table(
    ours_name: str, ours: Sequence[PhaseResult], peer: Sequence[PhaseResult], *,
    against: str = "scim2-server", targets: Mapping[str, float] = RATIO_TARGETS, digits: int = 1,
) -> str:
    """Ours as a ratio of another server's rate, phase by phase, against `targets`."""
    by_name = {r.name: r for r in peer}
    rows = []
    for r in ours:
        p = by_name[r.name]
        ratio = r.rate / p.rate if p.rate else float("inf")
        target = targets.get(r.name)
        met = "-" if target is None else ("yes" if ratio >= target else "no")
        rows.append(
            f"| {r.name} | {r.rate:,.0f} | {p.rate:,.0f} | {ratio:.{digits}f}x | "
            f"{'-' if target is None else f'{target:g}x'} | {met} | {r.p99:.1f} | {p.p99:.1f} |"
        )
    return _table(f"{ours_name} / {against}",
                  f"| phase | ours req/s | {against} req/s | ratio | target | met | ours p99 ms | {against} p99 ms |",
                  "|---|---:|---:|---:|---:|---|---:|---:|", rows)


def absolute_table(name: str, ours: Sequence[PhaseResult]) -> str:
    by_name = {r.name: r for r in ours}
    rows = []
    for phase, (rate, p99) in ABSOLUTE_TARGETS.items():
        r = by_name[phase]
        met = "yes" if r.rate >= rate and r.p99 < p99 else "no"
        rows.append(f"| {phase} | >= {rate:,.0f}/s, p99 < {p99:g} ms | {r.rate:,.0f}/s, p99 {r.p99:.1f} ms | {met} |")
    return _table(f"Absolute goals, {name}", "| phase | goal | measured | met |", "|---|---|---|---|", rows)

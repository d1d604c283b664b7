"""The layout rules of docs/architecture.md, checked on the source: one direction of imports, each
room one kind of thing, the event store the only code with SQL on `events`.

Imports are read with `ast` (also those inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eventstore", "projections", "service")
HANDLERS = {f"service.http.{m}" for m in ("users", "groups", "audit", "discovery", "probes", "metrics")}
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(path: Path) -> set[str]:
    """Every module an import in the file names (the full dotted name, `from a import b` as a.b
    when a.b is a module of the repository, else a)."""
    known = modules()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {i for i in imports_of(path) if i in known and i != name} for name, path in known.items()}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_module_import_graph_has_no_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_rooms_of_service_import_each_other_one_way() -> None:
    """service.{cli, server, http, app, runtime, scim}: a room imports only rooms below it."""
    order = ["service.cli", "service.server", "service.http", "service.app", "service.runtime", "service.scim"]
    allowed = {room: set(order[i + 1:]) for i, room in enumerate(order)}
    allowed["service.cli"].discard("service.http")  # the CLI and HTTP never import each other
    allowed["service.app"].discard("service.runtime")  # use cases get their connection handed in
    bad = []
    for module, targets in graph().items():
        room = next((r for r in order if in_package(module, r)), None)
        if room is None:
            continue
        for target in targets:
            other = next((r for r in order if in_package(target, r)), None)
            if other is not None and other != room and other not in allowed[room]:
                bad.append(f"{module} -> {target}")
    assert not bad, bad


def test_the_protocol_layer_is_pure() -> None:
    bad = [
        f"{m} -> {i}" for m, p in modules().items() if in_package(m, "service.scim")
        for i in imports_of(p)
        if i.split(".")[0] in ("aiohttp", "asyncpg", "eventstore", "projections")
        or (in_package(i, "service") and not in_package(i, "service.scim"))
    ]
    assert not bad, bad


def test_eventstore_imports_nothing_of_the_repository_and_projections_nothing_of_service() -> None:
    bad = []
    for module, path in modules().items():
        for target in imports_of(path):
            top = target.split(".")[0]
            if in_package(module, "eventstore") and top in ("projections", "service"):
                bad.append(f"{module} -> {target}")
            if in_package(module, "projections") and top == "service":
                bad.append(f"{module} -> {target}")
            if in_package(module, "projections.domain") and top in PACKAGES and not in_package(target, "projections.domain"):
                bad.append(f"{module} -> {target}")
    assert not bad, bad


def test_no_handler_imports_another_handlers_module() -> None:
    bad = [f"{m} -> {t}" for m, targets in graph().items() if m in HANDLERS for t in targets if t in HANDLERS]
    assert not bad, bad


EVENTS_SQL = re.compile(r"\b(from|into|join|update|table)\s+events\b", re.IGNORECASE)


def test_only_the_event_store_has_sql_on_the_events_table() -> None:
    bad = []
    for module, path in modules().items():
        if in_package(module, "eventstore"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and EVENTS_SQL.search(node.value):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad


def test_service_holds_only_packages() -> None:
    loose = sorted(p.name for p in (ROOT / "service").iterdir()
                   if p.is_file() and p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))
    assert not loose, loose


def test_modules_stay_small_unless_they_say_why() -> None:
    """A module over 600 lines must say in its docstring why it is one module."""
    big = []
    for module, path in modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "one module" not in doc:
            big.append(f"{module}: {lines} lines")
    assert not big, big


def test_the_layer_checks_see_the_whole_tree() -> None:
    """A guard for the checks above: they read every package and find real imports."""
    edges = graph()
    rooms = defaultdict(int)
    for module in edges:
        rooms[".".join(module.split(".")[:2])] += 1
    for room in ("service.http", "service.app", "service.cli", "service.scim", "projections.domain", "eventstore.store"):
        assert rooms[room] > 0, room
    assert "eventstore.store" in edges["projections.views.users"]

"""The shape of service/scim/filter/ (one module per stage of RFC 7644 section 3.4.2.2), read
from the source: the public API, one direction of imports, no private names across modules,
and service/scim as the pure protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import service.scim.filter as scim_filter

SCIM = Path(scim_filter.__file__).parent.parent
FILTER = SCIM / "filter"
# Lower stages first: a module imports only from stages before it.
STAGES = ["ast", "lexer", "parser", "resolve", "evaluate", "sql"]
FORBIDDEN = {"aiohttp", "asyncpg", "eventstore", "projections", "service"}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in `path`."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def test_public_api_is_importable_and_complete() -> None:
    for name in scim_filter.__all__:
        assert hasattr(scim_filter, name), name
        assert not name.startswith("_"), name
    assert sorted({p.stem for p in FILTER.glob("*.py")} - {"__init__"}) == sorted(STAGES)


def test_imports_inside_the_package_point_one_way() -> None:
    for stage in STAGES:
        for module, _ in imports(FILTER / f"{stage}.py"):
            if module.startswith("service.scim.filter"):
                target = module.rsplit(".", 1)[-1]
                assert target in STAGES, (stage, module)
                assert STAGES.index(target) < STAGES.index(stage), (stage, module)


def test_no_private_name_is_imported_across_modules() -> None:
    for path in SCIM.rglob("*.py"):
        for module, names in imports(path):
            if module.startswith("service."):
                assert not [n for n in names if n.startswith("_")], (path.name, module, names)


def test_service_scim_is_the_pure_protocol() -> None:
    for path in SCIM.rglob("*.py"):
        for module, _ in imports(path):
            if module != "service.scim" and not module.startswith("service.scim."):
                assert module.split(".")[0] not in FORBIDDEN, (path.name, module)

"""Dependencies point inward: timing <- control/targets/dispatch <- controller <- aws, cli.

The imports of every module under src/subminute are read with ``ast`` (also those inside functions), so a
lazy import counts as much as a top-level one. The core that is bundled into inline Lambda code must stay
standard-library only.
"""

from __future__ import annotations

import ast
import importlib
import sys
from functools import cache
from pathlib import Path

import pytest

import subminute

SRC = Path(subminute.__file__).resolve().parent
STDLIB = sys.stdlib_module_names

# the modules bundled into the inline Lambda code: standard library and each other only
CORE_STDLIB_ONLY = (
    "subminute.errors",
    "subminute.controller",
    "subminute.control.base",
    "subminute.targets.base",
    "subminute.dispatch.base",
    "subminute.timing",
)
# the only modules of the core (outside aws/ and cli/) that may use sqlite3: the SQLite control store and
# the sinks that write fire records and kept bodies, and their shared batch writer
SQLITE_USERS = ("subminute.control.sqlite", "subminute.targets.sinks", "subminute.targets.results",
                "subminute.targets.batching")
FORBIDDEN_IN_CORE = ("boto3", "botocore", "moto", "subminute.cli", "subminute.aws")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@cache
def imports_of(name: str) -> tuple[str, ...]:
    """Absolute names of everything ``name`` imports, anywhere in the module; ``from x import y`` also
    yields ``x.y`` when that is a module of ours (``from . import plan``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            found.append(base)
            found.extend(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return tuple(found)


def external(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not within(n, "subminute")]


def test_the_scan_sees_the_package() -> None:
    assert "subminute.timing.plan" in MODULES and "subminute.controller" in MODULES
    assert "subminute.errors" in imports_of("subminute.timing.plan")
    assert "subminute.timing.slots" in imports_of("subminute.timing.plan")
    assert "zoneinfo" in imports_of("subminute.timing.plan")
    assert "subminute.control.base" in imports_of("subminute.controller")


@pytest.mark.parametrize("name", [n for n in MODULES if within(n, "subminute.timing")])
def test_timing_imports_nothing_from_other_subminute_packages(name: str) -> None:
    ours = [n for n in imports_of(name) if within(n, "subminute")]
    strays = [n for n in ours if not (within(n, "subminute.timing") or n == "subminute.errors")]
    assert not strays, f"{name} imports {strays}; timing may use only itself and subminute.errors"


@pytest.mark.parametrize("name", [n for n in MODULES if any(within(n, c) for c in CORE_STDLIB_ONLY)])
def test_core_imports_only_the_standard_library(name: str) -> None:
    third_party = [n for n in external(imports_of(name)) if n.partition(".")[0] not in STDLIB]
    assert not third_party, f"{name} imports {third_party}; the core is bundled into Lambda code: stdlib only"
    ours = [n for n in imports_of(name) if within(n, "subminute")]
    outside = [n for n in ours if not any(within(n, c) for c in CORE_STDLIB_ONLY)]
    assert not outside, f"{name} imports {outside}, which is not part of the stdlib-only core"


CORE = [
    n
    for n in MODULES
    if not (within(n, "subminute.aws") or within(n, "subminute.cli")) and n != "subminute.__main__"
]


@pytest.mark.parametrize("name", CORE)
def test_core_imports_no_boto3_cli_or_aws(name: str) -> None:
    bad = [n for n in imports_of(name) if any(within(n, f) for f in FORBIDDEN_IN_CORE)]
    assert not bad, f"{name} imports {bad}; only subminute.aws and subminute.cli may"


@pytest.mark.parametrize("name", CORE)
def test_only_the_sqlite_store_and_the_sinks_use_sqlite3(name: str) -> None:
    if name in SQLITE_USERS:
        return
    assert not [n for n in imports_of(name) if within(n, "sqlite3")], f"{name} imports sqlite3"


def test_every_name_in_every_all_exists() -> None:
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        declared = [
            node
            for node in tree.body
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
        ]
        if not declared or name == "subminute.__main__":
            continue
        module = importlib.import_module(name)
        names = list(module.__all__)
        assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ names {missing}, which it does not define"


# The public surface of ``import subminute``. A change here is a change of the API: make it on purpose.
PUBLIC = {
    "ConfigError",
    "ControlStore",
    "Controller",
    "ControllerOptions",
    "Every",
    "FakeClock",
    "FireRecord",
    "LeaseLostError",
    "LocalRuntime",
    "MemoryStore",
    "NotFoundError",
    "Plan",
    "Result",
    "Schedule",
    "SqliteStore",
    "StoreError",
    "SubminuteError",
    "SystemClock",
    "__version__",
    "make_event",
    "parse_plan",
    "register_target",
}


def test_the_public_names_are_pinned() -> None:
    exported = list(getattr(subminute, "__all__", []))
    if not exported:
        pytest.skip("subminute/__init__.py has no __all__ yet")
    assert set(exported) == PUBLIC
    namespace: dict[str, object] = {}
    exec("from subminute import *", namespace)
    assert PUBLIC <= set(namespace)

"""The layers of the package, as an explicit map of which package may import which, checked by reading the
imports of every module under src/subminute with ``ast`` (also those inside functions, so a lazy import
counts as much as a top-level one). The modules bundled into inline Lambda code must stay standard-library
only.

    adapters   cli  aws  (and the public names in subminute/__init__.py)
    runtime    runtime (the local runtime, the Scheduler API)       observe (logs, metrics, report)
    engine     controller -> dispatch.base          dispatch (local) -> targets
    model      control (rows, hand-off, stores)     results (records, sinks, bodies)
    base       timing  storage  secrets  errors
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

CORE = {"errors", "secrets", "timing", "storage", "control", "results", "targets", "dispatch", "controller"}
# package (or top-level module) -> the packages of ours it may import, besides itself
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "secrets": {"errors"},
    "timing": {"errors"},
    "storage": {"errors"},
    "control": {"errors", "timing", "storage"},
    "results": {"errors", "timing", "storage", "secrets"},
    "targets": {"errors", "timing", "secrets", "results"},
    "dispatch": {"errors", "timing", "control", "results", "targets"},
    "controller": {"errors", "timing", "control", "results", "dispatch"},
    "runtime": CORE,
    "observe": {"errors", "secrets", "timing", "storage", "results"},
    "aws": CORE,
    "cli": CORE | {"runtime", "observe", "aws"},
    "__main__": {"cli"},
}
# the controller knows dispatchers only by their interface
NARROW = {"controller": {"dispatch": {"subminute.dispatch.base"}}}
# the modules bundled into the inline Lambda code: standard library and each other only
CORE_STDLIB_ONLY = (
    "subminute.errors",
    "subminute.controller",
    "subminute.control.base",
    "subminute.control.rows",
    "subminute.control.handoff",
    "subminute.results.records",
    "subminute.dispatch.base",
    "subminute.timing",
)
# the only modules outside aws/ and cli/ that may use sqlite3: the one owner of the SQLite file
SQLITE_USERS = ("subminute.storage",)


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


def package_of(name: str) -> str:
    """``subminute.control.sqlite`` -> ``control``; the package itself -> ``""``."""
    return name.split(".")[1] if "." in name else ""


def test_the_scan_sees_the_package() -> None:
    assert "subminute.timing.plan" in MODULES and any(within(m, "subminute.controller") for m in MODULES)
    assert "subminute.errors" in imports_of("subminute.timing.plan")
    assert "zoneinfo" in imports_of("subminute.timing.plan")
    assert set(ALLOWED) >= {package_of(m) for m in MODULES if package_of(m)}, "a package is missing from ALLOWED"


@pytest.mark.parametrize("name", [n for n in MODULES if package_of(n)])
def test_imports_follow_the_layer_map(name: str) -> None:
    package = package_of(name)
    allowed = ALLOWED[package] | {package}
    ours = [n for n in imports_of(name) if within(n, "subminute")]
    bad = [n for n in ours if n != "subminute" and package_of(n) not in allowed]
    assert not bad, f"{name} imports {bad}; {package} may import only {sorted(ALLOWED[package])}"
    for other, modules in NARROW.get(package, {}).items():
        wide = [n for n in ours if package_of(n) == other and not any(within(n, m) for m in modules)]
        assert not wide, f"{name} imports {wide}; {package} may use only {sorted(modules)} of {other}"


@pytest.mark.parametrize("name", [n for n in MODULES if any(within(n, c) for c in CORE_STDLIB_ONLY)])
def test_core_imports_only_the_standard_library(name: str) -> None:
    third_party = [n for n in external(imports_of(name)) if n.partition(".")[0] not in STDLIB]
    assert not third_party, f"{name} imports {third_party}; the core is bundled into Lambda code: stdlib only"
    ours = [n for n in imports_of(name) if within(n, "subminute")]
    outside = [n for n in ours if not any(within(n, c) for c in CORE_STDLIB_ONLY)]
    assert not outside, f"{name} imports {outside}, which is not part of the stdlib-only core"


@pytest.mark.parametrize("name", [n for n in MODULES if package_of(n) in CORE])
def test_core_imports_no_boto3(name: str) -> None:
    bad = [n for n in imports_of(name) if n.partition(".")[0] in ("boto3", "botocore", "moto")]
    assert not bad, f"{name} imports {bad}; only subminute.aws and subminute.cli may"


@pytest.mark.parametrize("name", [n for n in MODULES if package_of(n) not in ("aws", "cli", "")])
def test_only_the_storage_owner_uses_sqlite3(name: str) -> None:
    if any(within(name, m) for m in SQLITE_USERS):
        return
    assert not [n for n in imports_of(name) if within(n, "sqlite3")], f"{name} imports sqlite3"


def test_no_module_over_450_lines_and_no_class_over_300() -> None:
    long_modules = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert not {n: c for n, c in long_modules.items() if c > 450}, "split these modules"
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 300, f"{name}.{node.name} has {length} lines; split it"


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
    "Scheduler",
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

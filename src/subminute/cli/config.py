"""Schedules declared in a TOML file, and how they meet the control table.

Example ``subminute.toml``::

    [[schedule]]
    id = 2
    name = "predictions"
    every = "2s"                      # or: waitseconds = 2, or: plan = "tz=...; ...; otherwise every 30s"
    overlap = "skip"
    timeout = 5
    target = { type = "http", url = "http://127.0.0.1:8080/predictions" }

Which wins when the file and the table disagree: **the table**. The file seeds schedules that the table
does not have yet; a row that exists is left as it is, because it may carry a runtime change (``subminute
set``, ``stop``) that must not be lost silently. Every field where the row and the file differ is reported,
and ``run --file-wins`` overwrites those rows from the file instead (reporting what it replaced).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..control.base import ControlStore
from ..control.rows import ROW_FIELDS, normalize_row
from ..errors import ConfigError

__all__ = ["load_config", "apply_config", "ConfigChange"]

_KEYS = set(ROW_FIELDS) | {"every"}


def load_config(path: str | Path) -> list[dict[str, Any]]:
    """Read and check the schedules of a TOML file; return them as normalized control rows."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "give the path of an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"fix the TOML syntax ({exc})") from None
    unknown = set(data) - {"schedule"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(key, data[key], "use [[schedule]] tables only").located(str(path))
    entries = data.get("schedule", [])
    if not isinstance(entries, list):
        raise ConfigError("schedule", entries, "use [[schedule]] tables").located(str(path))
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"{path} schedule #{i + 1}"
        bad = [k for k in entry if k not in _KEYS]
        if bad:
            raise ConfigError(bad[0], entry[bad[0]], "use only " + ", ".join(sorted(_KEYS))).located(where)
        raw = dict(entry)
        if "every" in raw:
            if "waitseconds" in raw:
                raise ConfigError("every", raw["every"], "give every or waitseconds, not both").located(where)
            raw["waitseconds"] = raw.pop("every")
        if "id" not in raw:
            raw["id"] = max(seen | {1}) + 1 if seen else 1
        try:
            row = normalize_row(raw)
        except ConfigError as exc:
            raise exc.located(str(path)) from None
        if row["id"] in seen:
            raise ConfigError("id", row["id"], "give each schedule its own id").located(where)
        seen.add(row["id"])
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ConfigChange:
    schedule_id: int
    action: str  # added | kept | replaced
    differences: tuple[tuple[str, Any, Any], ...] = ()  # (field, table value, file value)

    def describe(self, source: str) -> str:
        if self.action == "added":
            return f"schedule {self.schedule_id}: added from {source}"
        diffs = ", ".join(f"{f} (table {t!r}, file {v!r})" for f, t, v in self.differences)
        if self.action == "replaced":
            return f"schedule {self.schedule_id}: replaced from {source}; it was {diffs}"
        return (f"schedule {self.schedule_id}: the table differs from {source} in {diffs}; the table wins "
                "(use 'subminute set' or 'run --file-wins' to apply the file)")


def _differences(table: Mapping[str, Any], file: Mapping[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    out = []
    for key in ROW_FIELDS:
        a, b = table.get(key), file.get(key)
        if key == "running" and a is not None:
            a = bool(a)
        if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
            out.append((key, a, b))
    return tuple(out)


def apply_config(store: ControlStore, rows: list[dict[str, Any]], *, file_wins: bool = False) -> list[ConfigChange]:
    """Seed the table from the file's rows; report what was added, kept (table wins) or replaced."""
    existing = {int(r["id"]): r for r in store.rows()}
    changes = []
    for row in rows:
        current = existing.get(row["id"])
        if current is None:
            store.put(row)
            changes.append(ConfigChange(row["id"], "added"))
            continue
        try:
            current_norm = normalize_row(current)
        except ConfigError:
            current_norm = dict(current)
        diffs = _differences(current_norm, row)
        if not diffs:
            continue
        if file_wins:
            store.put(row)
            changes.append(ConfigChange(row["id"], "replaced", diffs))
        else:
            changes.append(ConfigChange(row["id"], "kept", diffs))
    return changes

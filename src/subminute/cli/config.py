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

from ..control.base import ControlStore, check_unique_name
from ..control.rows import ROW_FIELDS, normalize_row, parse_row, plain
from ..errors import ConfigError
from ..timing.durations import format_ms, parse_duration_ms, parse_interval_ms
from .checks import check_row

__all__ = ["load_config", "apply_config", "ConfigChange"]

_KEYS = set(ROW_FIELDS) | {"every"}
MAX_CONFIG_BYTES = 4 << 20  # a schedules file larger than this is surely not one


def _read(path: Path) -> str:
    rule = "give the path of a readable UTF-8 TOML file of [[schedule]] tables"
    try:
        if path.is_dir():
            raise IsADirectoryError
        if not path.is_file():  # a device or a pipe: its size says nothing, and it may never end
            if path.exists():
                raise ConfigError("--config", str(path), f"{rule}, not a device or a pipe")
            raise FileNotFoundError
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)  # the cap holds even if the file grows meanwhile
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError("--config", str(path), f"{rule} (at most {MAX_CONFIG_BYTES >> 20} MB)")
        return data.decode("utf-8-sig")  # a byte order mark (some editors write one) is no TOML
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "give the path of an existing TOML file") from None
    except IsADirectoryError:
        raise ConfigError("--config", str(path), f"{rule}, not a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", str(path), f"{rule} (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ConfigError("--config", str(path), f"{rule} ({exc.strerror or exc})") from None


def _interval_ms(value: Any) -> int | None:
    try:
        return parse_interval_ms(value)
    except ConfigError:
        return None


def load_config(path: str | Path) -> list[dict[str, Any]]:
    """Read and check the schedules of a TOML file, each whole (the row parser, then its target built as the
    controller will build it, see :mod:`.checks`), names unique within the file; return them as normalized
    control rows. Nothing is written: a bad file is refused whole, naming the file and the schedule."""
    path = Path(path)
    try:
        data = tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"fix the TOML syntax ({exc})") from None
    except RecursionError:
        raise ConfigError("--config", str(path), "nest tables and arrays less deeply (a target may be nested "
                                                 "at most 32 deep)") from None
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
        if not isinstance(entry, dict):
            raise ConfigError("schedule", entry, "use [[schedule]] tables").located(where)
        bad = [k for k in entry if k not in _KEYS]
        if bad:
            raise ConfigError(bad[0], entry[bad[0]], "use only " + ", ".join(sorted(_KEYS))).located(where)
        raw = dict(entry)
        if "every" in raw and "waitseconds" in raw:
            raise ConfigError("every", raw["every"], "give every or waitseconds, not both").located(where)
        if "plan" in raw and "every" in raw:
            raise ConfigError("every", raw["every"], "give every or plan, not both (a plan has its own default "
                                                     "interval: 'otherwise every ...')").located(where)
        if "every" in raw:
            raw["waitseconds"] = raw.pop("every")
        if "id" not in raw:
            raw["id"] = max(seen | {1}) + 1 if seen else 1
        try:
            row, _note = check_row(raw)
        except ConfigError as exc:
            raise exc.located(where) from None
        if "plan" in raw and "waitseconds" in raw:  # allowed only as the stored form writes it: the same
            default = parse_row(row).timetable.base_ms
            if _interval_ms(raw["waitseconds"]) != default:
                raise ConfigError("waitseconds", raw["waitseconds"],
                                  f"leave it out with a plan, or give the plan's own default ({format_ms(default)}"
                                  ", its 'otherwise every')").located(where)
        if row["id"] in seen:
            raise ConfigError("id", row["id"], "give each schedule its own id").located(where)
        try:
            check_unique_name(row, rows)
        except ConfigError as exc:
            raise exc.located(where) from None
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


_DURATIONS = ("waitseconds", "timeout", "offset", "grace")  # stored as given: 4, "4", "4s" and 4.0 are one value


def _same(key: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if key in _DURATIONS and a is not None and b is not None:
        try:
            return parse_duration_ms(a, key) == parse_duration_ms(b, key)
        except ConfigError:
            return False
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)


def _differences(table: Mapping[str, Any], file: Mapping[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    out = []
    for key in ROW_FIELDS:
        a, b = table.get(key), file.get(key)
        if key == "running" and a is not None:
            a = bool(a)
        if not _same(key, a, b):
            out.append((key, a, b))
    return tuple(out)


def apply_config(store: ControlStore, rows: list[dict[str, Any]], *, file_wins: bool = False,
                 source: str | Path = "the file") -> list[ConfigChange]:
    """Seed the table from the file's rows; report what was added, kept (table wins) or replaced. The
    names of the table as it will be are checked before any row is written (each write checks again)."""
    existing = {int(plain(r["id"])): r for r in store.rows() if isinstance(plain(r.get("id")), int)}
    writes: list[tuple[dict[str, Any], ConfigChange]] = []
    for row in rows:
        current = existing.get(row["id"])
        if current is None:
            writes.append((row, ConfigChange(row["id"], "added")))
            continue
        try:
            current_norm = normalize_row(current)
        except ConfigError:
            current_norm = dict(current)
        diffs = _differences(current_norm, row)
        if diffs:
            writes.append((row, ConfigChange(row["id"], "replaced" if file_wins else "kept", diffs)))
    final = dict(existing)
    final.update((row["id"], row) for row, change in writes if change.action != "kept")
    for row, change in writes:
        if change.action != "kept":
            try:
                check_unique_name(row, final.values())
            except ConfigError as exc:
                raise exc.located(f"{source}") from None
    for row, change in writes:
        if change.action != "kept":
            store.put(row)
    return [change for _, change in writes]

"""Export: fire records and kept bodies as JSON Lines, JSON or CSV, or bodies as files.

Used by ``subminute export`` and ``subminute report``. Standard library only.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError
from ..storage.files import private_dirs, write_private
from ..storage.sqlite import Database
from .bodies import read_bodies, where_clause
from .sinks import RECORD_COLUMNS, read_records

__all__ = ["EXPORT_FORMATS", "export_bodies", "export_fires", "fire_rows"]

EXPORT_FORMATS = ("jsonl", "json", "csv")


def fire_rows(db: str | os.PathLike[str], schedule_id: int | None, since_ms: int | None,
              limit: int | None) -> list[dict[str, Any]]:
    """Fire records as dicts, oldest first (the last ``limit``)."""
    if not Path(db).exists():
        raise ConfigError("db", str(db), "name an existing subminute database file")
    where, args = where_clause(schedule_id, since_ms)
    sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM fires{where} ORDER BY id DESC"
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    database = Database(db)
    try:
        with database.transaction() as conn:
            rows = read_records(conn, sql, args)
    finally:
        database.close()
    return rows[::-1]


def _write(rows: list[dict[str, Any]], out: TextIO, fmt: str) -> None:
    if fmt == "jsonl":
        out.writelines(json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)
    elif fmt == "json":
        json.dump(rows, out, indent=1, default=str)
        out.write("\n")
    elif fmt == "csv":
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v
                             for k, v in row.items()})
    else:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))


def export_fires(db: str | os.PathLike[str], out: TextIO, fmt: str = "jsonl", *, schedule_id: int | None = None,
                 since_ms: int | None = None, limit: int | None = None) -> int:
    """Write fire records (oldest first) to ``out``; return how many."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))
    rows = fire_rows(db, schedule_id, since_ms, limit)
    _write(rows, out, fmt)
    return len(rows)


def export_bodies(source: str | os.PathLike[str], out: TextIO | None = None, fmt: str = "jsonl", *,
                  schedule_id: int | None = None, since_ms: int | None = None, limit: int | None = None,
                  decode: str | None = None, directory: str | os.PathLike[str] | None = None) -> int:
    """Write kept bodies to ``out`` (``jsonl``/``json``/``csv``), or each body as a file into
    ``directory`` named ``<schedule>-<slot>-<digest>.<ext>`` (the directory and its missing parents made
    0700, the files 0600). Return how many."""
    if not Path(source).exists():
        raise ConfigError("bodies", str(source), "name the database file or jsonl directory holding kept bodies")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError("format", fmt, "use one of " + ", ".join(EXPORT_FORMATS))
    rows = read_bodies(source, schedule_id, limit, since_ms, decode)
    if directory is not None:
        target = private_dirs(directory)
        for row in rows:
            stamp = row["slot"].replace(":", "").replace("-", "")
            ext = _extension(row.get("content_type"), row["encoding"])
            data = (base64.b64decode(row["body"]) if row["encoding"] == "base64" else row["body"].encode("utf-8"))
            write_private(target / f"{row['schedule_id']}-{stamp}-{row['digest']}.{ext}", data)
        return len(rows)
    _write(rows, out or io.StringIO(), fmt)
    return len(rows)


def _extension(content_type: str | None, encoding: str) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    for needle, ext in (("json", "json"), ("html", "html"), ("xml", "xml"), ("csv", "csv"), ("protobuf", "pb"),
                        ("text/", "txt")):
        if needle in kind:
            return ext
    return "txt" if encoding == "utf-8" else "bin"

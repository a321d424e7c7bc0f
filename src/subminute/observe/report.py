"""``subminute report``: how well a schedule kept time, as a short text and a PNG plot.

The text (no extra packages) gives the fires by status, start lateness (the target's start minus the
slot), hand-over lateness (the controller's hand-over minus the slot) and target latency percentiles,
missed slots and the most frequent errors. The plot (``pip install 'subminute[report]'``, matplotlib)
has two panels: the start lateness of each fire over time (failed fires in red, p50/p99 lines) and its
distribution (a histogram on a log scale); records written before starts were recorded plot the
hand-over lateness instead, and say so.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..results.sinks import missed_slots
from ..timing.stats import summarize

__all__ = ["format_summary", "load_fires", "plot", "plotted", "summarize_fires"]

_RAN = ("ok", "error", "timeout")


def load_fires(db: str | os.PathLike[str], schedule_id: int | None, *, since_ms: int | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Fire records of a schedule (or of all), oldest first."""
    from ..results.export import fire_rows

    return fire_rows(db, schedule_id, since_ms, limit)


def error_kind(error: str) -> str:
    """An error's kind, for counting alike ones together: its first two parts (``GET http://x/:
    ConnectionRefusedError``, ``ValueError: bad row``), not its first alone (every error of one URL)."""
    return ": ".join(error.split(": ")[:2])[:120]


def summarize_fires(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts by status, lateness and latency percentiles (ms), missed slots, top errors, time span."""
    counts = Counter(str(r["status"]) for r in rows)
    ran = [r for r in rows if r["status"] in _RAN and r["slot_ms"] is not None]  # (None: unreadable, by hand)
    start = summarize(float(r["start_lateness_ms"]) for r in ran if r.get("start_lateness_ms") is not None)
    lateness = summarize(float(r["lateness_ms"]) for r in ran if r.get("lateness_ms") is not None)
    latency = summarize(float(r["latency_ms"]) for r in ran if r.get("latency_ms") is not None)
    missed = sum(missed_slots(r.get("detail")) for r in rows if r["status"] == "missed")
    errors = Counter(error_kind(str(r["error"])) for r in rows if r["status"] in ("error", "timeout") and r.get("error"))
    slots = [int(r["slot_ms"]) for r in ran]
    names = {str(r["name"]) for r in rows if r.get("name")}
    return {
        "schedules": sorted({int(r["schedule_id"]) for r in rows if r["schedule_id"] is not None}),
        "name": ", ".join(sorted(names)),
        "fires": len(ran),
        "counts": dict(counts),
        "missed_slots": missed,
        "first_slot_ms": min(slots) if slots else None,
        "last_slot_ms": max(slots) if slots else None,
        "start_lateness_ms": start.as_dict(),
        "lateness_ms": lateness.as_dict(),
        "latency_ms": latency.as_dict(),
        "top_errors": errors.most_common(3),
    }


def _ms(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def format_summary(s: Mapping[str, Any]) -> str:
    from ..timing.slots import iso_utc

    if not s["fires"] and not s["counts"]:
        return "no fire records"
    start, late, lat = s["start_lateness_ms"], s["lateness_ms"], s["latency_ms"]
    ok = s["counts"].get("ok", 0)
    lines = [
        f"schedule {', '.join(map(str, s['schedules']))} ({s['name']}): {s['fires']} fires"
        + (f" from {iso_utc(s['first_slot_ms'])} to {iso_utc(s['last_slot_ms'])}" if s["first_slot_ms"] else ""),
        "status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
        + (f" ({100 * ok / s['fires']:.1f}% ok)" if s["fires"] else ""),
        f"start lateness ms:     p50 {_ms(start['p50'])}  p99 {_ms(start['p99'])}  max {_ms(start['max'])}",
        f"hand-over lateness ms: p50 {_ms(late['p50'])}  p99 {_ms(late['p99'])}  max {_ms(late['max'])}",
        f"target latency ms:     p50 {_ms(lat['p50'])}  p99 {_ms(lat['p99'])}  max {_ms(lat['max'])}",
        f"missed slots: {s['missed_slots']}",
    ]
    for error, count in s["top_errors"]:
        lines.append(f"error x{count}: {error}")
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("report", "png", "install the report extra: pip install 'subminute[report]' "
                                           "(matplotlib), or ask for the text summary only") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plotted(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """What the plot shows, and the record field it takes it from: the start lateness, or the hand-over
    lateness when no record of ``rows`` has a start (records written before starts were recorded)."""
    if any(r["status"] in _RAN and r.get("start_lateness_ms") is not None for r in rows):
        return "start lateness", "start_lateness_ms"
    return "hand-over lateness (no start recorded)", "lateness_ms"


def plot(rows: Sequence[Mapping[str, Any]], out: str | os.PathLike[str], *, width_px: int = 1200,
         height_px: int = 800, dpi: int = 100, title: str | None = None) -> Path:
    """Write the two-panel PNG of exactly ``width_px`` x ``height_px`` pixels; return its path."""
    if not (200 <= width_px <= 10000 and 150 <= height_px <= 10000):
        raise ConfigError("size", f"{width_px}x{height_px}", "use WIDTHxHEIGHT in pixels, 200x150 to 10000x10000")
    what, field = plotted(rows)
    ran = [r for r in rows if r["status"] in _RAN and r.get(field) is not None and r["slot_ms"] is not None]
    if not ran:
        raise ConfigError("schedule", title or "", "pick a schedule with fire records to plot")
    plt = _pyplot()
    from datetime import datetime

    from matplotlib import dates as mdates

    times = [datetime.fromtimestamp(int(r["slot_ms"]) / 1000, tz=UTC) for r in ran]
    late = [float(r[field]) for r in ran]
    failed = [i for i, r in enumerate(ran) if r["status"] != "ok"]
    s = summarize(late)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    try:
        top.plot(times, late, ".", markersize=2, color="tab:blue", label="fire")
        if failed:
            top.plot([times[i] for i in failed], [late[i] for i in failed], "x", markersize=4, color="tab:red",
                     label="error or timeout")
        for value, style, name in ((s.p50, "--", "p50"), (s.p99, ":", "p99")):
            top.axhline(value, linestyle=style, color="black", linewidth=1, label=f"{name} {value:.2f} ms")
        top.set_ylabel(f"{what} (ms)")
        top.set_title(f"{title}: {what}" if title else f"{what} over time")
        top.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))  # type: ignore[no-untyped-call]
        top.set_xlabel("slot (UTC)")
        top.legend(loc="upper right", fontsize="small")
        top.grid(alpha=0.3)
        bins = max(10, min(100, int(math.sqrt(len(late)) * 2)))
        bottom.hist(late, bins=bins, color="tab:blue", log=True)
        for value, style in ((s.p50, "--"), (s.p99, ":")):
            bottom.axvline(value, linestyle=style, color="black", linewidth=1)
        bottom.set_xlabel(f"{what} (ms)")
        bottom.set_ylabel("fires (log)")
        bottom.set_title(f"distribution: {s.count} fires, p50 {s.p50:.2f} ms, p99 {s.p99:.2f} ms, "
                         f"max {s.max:.2f} ms")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path

"""A shared check of real-time runs: every slot of a schedule fired once, or counted in a missed record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FIRED = ("ok", "error", "timeout")


def assert_every_slot_once(records: Iterable[Mapping[str, Any]], interval_ms: int) -> list[int]:
    """The fired slots of one schedule's records (dicts with ``slot_ms``, ``status`` and for ``missed``
    records ``detail``) lie on the ``interval_ms`` grid, each fired once, with no gap between the first
    and the last but the slots a ``missed`` record counts: a machine that stalls for longer than an
    interval lets slots pass, and the misfire policy fires the latest and counts the others (documented;
    a loaded CI machine does this now and then). Returns the fired slots, in order."""
    records = list(records)
    fired = sorted(r["slot_ms"] for r in records if r["status"] in FIRED)
    assert fired, "nothing fired"
    assert len(set(fired)) == len(fired), f"a slot fired twice: {fired}"
    assert all((s - fired[0]) % interval_ms == 0 for s in fired), f"off the {interval_ms} ms grid: {fired}"
    counted: list[int] = []
    for r in records:
        if r["status"] == "missed":
            detail = r.get("detail") or {}
            first = detail.get("first_slot_ms", r["slot_ms"])
            counted += [first + i * interval_ms for i in range(int(detail.get("missed", 1)))]
    every = range(fired[0], fired[-1] + 1, interval_ms)
    lost = sorted(set(every) - set(fired) - set(counted))
    assert not lost, f"slots neither fired nor counted missed: {lost[:10]} ({len(lost)})"
    return fired

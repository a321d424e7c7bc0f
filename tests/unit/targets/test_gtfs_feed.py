"""GTFS-realtime: a feed built from dicts decodes back to the same facts."""

from __future__ import annotations

import pytest

from subminute.errors import ConfigError
from subminute.results.gtfs import brief, build_feed, format_summary, summarize_feed


def test_round_trip() -> None:
    data = build_feed(
        vehicles=[{"id": "bus-7", "trip_id": "t1", "route_id": "42", "lat": 47.37, "lon": 8.54, "bearing": 90,
                   "speed": 8.5, "stop_id": "S3", "timestamp": 1_800_000_000}],
        trip_updates=[{"id": "tu1", "trip_id": "t1", "route_id": "42", "vehicle_id": "bus-7",
                       "stops": [{"stop_id": "S3", "time": 1_800_000_060, "delay": 30}, {"stop_id": "S4"}]}],
        alerts=[{"id": "a1", "header": "Stop S3 moved", "description": "Use S3b", "effect": "STOP_MOVED",
                 "cause": "CONSTRUCTION", "route_ids": ["42"], "stop_ids": ["S3"]}],
        timestamp=1_800_000_005)
    s = summarize_feed(data)
    assert s["header"] == {"version": "2.0", "timestamp": 1_800_000_005, "incrementality": "FULL_DATASET"}
    assert s["vehicles"] == [{"id": "bus-7", "trip_id": "t1", "route_id": "42", "lat": 47.37, "lon": 8.54,
                              "bearing": 90.0, "speed": 8.5, "stop_id": "S3", "status": "IN_TRANSIT_TO",
                              "timestamp": 1_800_000_000}]
    assert s["trip_updates"][0]["stops"] == [{"stop_id": "S3", "time": 1_800_000_060, "delay": 30},
                                             {"stop_id": "S4"}]
    assert s["trip_updates"][0]["vehicle_id"] == "bus-7"
    assert s["alerts"] == [{"id": "a1", "header": "Stop S3 moved", "description": "Use S3b", "cause": "CONSTRUCTION",
                            "effect": "STOP_MOVED", "routes": ["42"], "stops": ["S3"]}]
    assert brief(data, now_s=1_800_000_015) == {"entities": 3, "trip_updates": 1, "vehicles": 1, "alerts": 1,
                                                "timestamp": 1_800_000_005, "age_s": 10.0}
    text = format_summary(s)
    assert "1 vehicles, 1 trip updates, 1 alerts" in text and "delay +30s" in text and "[STOP_MOVED]" in text


@pytest.mark.parametrize("data", [b"", b"<html>busy</html>", b"\x08\x96\x01"])
def test_not_a_feed(data: bytes) -> None:
    with pytest.raises(ConfigError, match="expected a GTFS-realtime FeedMessage"):
        brief(data)

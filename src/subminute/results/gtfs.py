"""GTFS-realtime: decode a feed (bus predictions, vehicle positions, alerts) into a readable summary,
and build one from plain dicts (the demo serves one).

Uses the official ``gtfs-realtime-bindings`` package (``pip install 'subminute[gtfs]'``); importing this
module works without it, and the functions raise :class:`ConfigError` saying what to install.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["brief", "build_feed", "format_summary", "require", "summarize_feed"]

_INSTALL = "install the gtfs extra: pip install 'subminute[gtfs]' (the gtfs-realtime-bindings package)"


def _pb() -> Any:
    try:
        from google.transit import gtfs_realtime_pb2
    except ImportError:
        raise ConfigError("decode", "gtfs-rt", _INSTALL) from None
    return gtfs_realtime_pb2


def require() -> None:
    """Raise :class:`ConfigError` if the bindings are not installed."""
    _pb()


def _parse(data: bytes) -> Any:
    pb = _pb()
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]

    feed = pb.FeedMessage()
    try:
        feed.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise ConfigError("body", f"{len(data)} bytes", f"expected a GTFS-realtime FeedMessage ({exc})") from None
    if not feed.header.gtfs_realtime_version:
        raise ConfigError("body", f"{len(data)} bytes", "expected a GTFS-realtime FeedMessage (no header version)")
    return feed


def _text(translated: Any) -> str:
    for t in translated.translation:
        if not t.language or t.language.startswith("en"):
            return str(t.text)
    return str(translated.translation[0].text) if translated.translation else ""


def brief(data: bytes, now_s: float | None = None) -> dict[str, Any]:
    """A few numbers for a fire record: entity counts, header timestamp and feed age in seconds."""
    feed = _parse(data)
    counts = {"trip_updates": 0, "vehicles": 0, "alerts": 0}
    for entity in feed.entity:
        counts["trip_updates"] += entity.HasField("trip_update")
        counts["vehicles"] += entity.HasField("vehicle")
        counts["alerts"] += entity.HasField("alert")
    out: dict[str, Any] = {"entities": len(feed.entity), **counts, "timestamp": int(feed.header.timestamp)}
    if feed.header.timestamp:
        out["age_s"] = round((time.time() if now_s is None else now_s) - feed.header.timestamp, 1)
    return out


def summarize_feed(data: bytes, limit: int = 50) -> dict[str, Any]:
    """A readable summary: header, and up to ``limit`` vehicles, trip updates (next stops and delays) and
    alerts, as plain JSON-able dicts."""
    feed = _parse(data)
    pb = _pb()
    vehicles: list[dict[str, Any]] = []
    trips: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    for entity in feed.entity:
        if entity.HasField("vehicle") and len(vehicles) < limit:
            v = entity.vehicle
            item: dict[str, Any] = {"id": v.vehicle.id or entity.id, "trip_id": v.trip.trip_id,
                                    "route_id": v.trip.route_id}
            if v.HasField("position"):
                item.update(lat=round(v.position.latitude, 5), lon=round(v.position.longitude, 5))
                if v.position.HasField("bearing"):
                    item["bearing"] = round(v.position.bearing, 1)
                if v.position.HasField("speed"):
                    item["speed"] = round(v.position.speed, 2)
            if v.stop_id:
                item["stop_id"] = v.stop_id
                item["status"] = pb.VehiclePosition.VehicleStopStatus.Name(v.current_status)
            if v.timestamp:
                item["timestamp"] = int(v.timestamp)
            vehicles.append(item)
        if entity.HasField("trip_update") and len(trips) < limit:
            tu = entity.trip_update
            stops = []
            for stu in tu.stop_time_update:
                stop: dict[str, Any] = {"stop_id": stu.stop_id}
                event = stu.arrival if stu.HasField("arrival") else stu.departure
                if event.time:
                    stop["time"] = int(event.time)
                if event.HasField("delay"):
                    stop["delay"] = int(event.delay)
                stops.append(stop)
            trip: dict[str, Any] = {"id": entity.id, "trip_id": tu.trip.trip_id, "route_id": tu.trip.route_id,
                                    "stops": stops}
            if tu.vehicle.id:
                trip["vehicle_id"] = tu.vehicle.id
            if tu.HasField("delay"):
                trip["delay"] = int(tu.delay)
            trips.append(trip)
        if entity.HasField("alert") and len(alerts) < limit:
            a = entity.alert
            alerts.append({
                "id": entity.id, "header": _text(a.header_text), "description": _text(a.description_text),
                "cause": pb.Alert.Cause.Name(a.cause), "effect": pb.Alert.Effect.Name(a.effect),
                "routes": sorted({e.route_id for e in a.informed_entity if e.route_id}),
                "stops": sorted({e.stop_id for e in a.informed_entity if e.stop_id}),
            })
    return {"header": {"version": feed.header.gtfs_realtime_version, "timestamp": int(feed.header.timestamp),
                       "incrementality": pb.FeedHeader.Incrementality.Name(feed.header.incrementality)},
            "counts": brief(data), "vehicles": vehicles, "trip_updates": trips, "alerts": alerts}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines of text for a terminal."""
    c = summary["counts"]
    lines = [(f"feed at {summary['header']['timestamp']}: {c['vehicles']} vehicles, {c['trip_updates']} trip "
             f"updates, {c['alerts']} alerts")]
    for v in summary["vehicles"]:
        where = f" at {v['lat']},{v['lon']}" if "lat" in v else ""
        lines.append(f"  vehicle {v['id']} route {v['route_id'] or '-'} trip {v['trip_id'] or '-'}{where}")
    for t in summary["trip_updates"]:
        nxt = t["stops"][0] if t["stops"] else {}
        delay = nxt.get("delay", t.get("delay"))
        lines.append(f"  trip {t['trip_id']} route {t['route_id'] or '-'}: next stop {nxt.get('stop_id', '-')}"
                     + (f" delay {delay:+d}s" if delay is not None else ""))
    for a in summary["alerts"]:
        lines.append(f"  alert {a['id']} [{a['effect']}]: {a['header']}")
    return "\n".join(lines)


def build_feed(vehicles: Iterable[Mapping[str, Any]] = (), trip_updates: Iterable[Mapping[str, Any]] = (),
               alerts: Iterable[Mapping[str, Any]] = (), *, timestamp: int | None = None) -> bytes:
    """A GTFS-realtime ``FeedMessage`` (serialized bytes) from plain dicts::

        vehicles:     {"id": "bus-7", "trip_id": "t1", "route_id": "42", "lat": 47.37, "lon": 8.54,
                       "bearing": 90.0, "speed": 8.3, "stop_id": "S3", "timestamp": 1795428005}
        trip_updates: {"id": "tu-t1", "trip_id": "t1", "route_id": "42", "vehicle_id": "bus-7",
                       "stops": [{"stop_id": "S3", "time": 1795428065, "delay": 30}]}
        alerts:       {"id": "a1", "header": "Stop S3 moved", "description": "...", "route_ids": ["42"],
                       "stop_ids": ["S3"], "effect": "STOP_MOVED", "cause": "CONSTRUCTION"}

    Only ``id`` (and ``lat``/``lon`` for a position) are needed; ``timestamp`` defaults to now.
    """
    pb = _pb()
    feed = pb.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = pb.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(time.time() if timestamp is None else timestamp)
    for v in vehicles:
        entity = feed.entity.add(id=str(v["id"]))
        vp = entity.vehicle
        vp.vehicle.id = str(v.get("vehicle_id", v["id"]))
        if v.get("trip_id"):
            vp.trip.trip_id = str(v["trip_id"])
        if v.get("route_id"):
            vp.trip.route_id = str(v["route_id"])
        if "lat" in v and "lon" in v:
            vp.position.latitude = float(v["lat"])
            vp.position.longitude = float(v["lon"])
            if v.get("bearing") is not None:
                vp.position.bearing = float(v["bearing"])
            if v.get("speed") is not None:
                vp.position.speed = float(v["speed"])
        if v.get("stop_id"):
            vp.stop_id = str(v["stop_id"])
        if v.get("timestamp"):
            vp.timestamp = int(v["timestamp"])
    for t in trip_updates:
        entity = feed.entity.add(id=str(t["id"]))
        tu = entity.trip_update
        tu.trip.trip_id = str(t.get("trip_id", t["id"]))
        if t.get("route_id"):
            tu.trip.route_id = str(t["route_id"])
        if t.get("vehicle_id"):
            tu.vehicle.id = str(t["vehicle_id"])
        if t.get("delay") is not None:
            tu.delay = int(t["delay"])
        for s in t.get("stops", ()):
            stu = tu.stop_time_update.add(stop_id=str(s["stop_id"]))
            if s.get("time") is not None:
                stu.arrival.time = int(s["time"])
            if s.get("delay") is not None:
                stu.arrival.delay = int(s["delay"])
    for a in alerts:
        entity = feed.entity.add(id=str(a["id"]))
        alert = entity.alert
        if a.get("header"):
            alert.header_text.translation.add(text=str(a["header"]), language="en")
        if a.get("description"):
            alert.description_text.translation.add(text=str(a["description"]), language="en")
        if a.get("effect"):
            alert.effect = pb.Alert.Effect.Value(str(a["effect"]))
        if a.get("cause"):
            alert.cause = pb.Alert.Cause.Value(str(a["cause"]))
        for route in a.get("route_ids", ()):
            alert.informed_entity.add(route_id=str(route))
        for stop in a.get("stop_ids", ()):
            alert.informed_entity.add(stop_id=str(stop))
    return bytes(feed.SerializeToString())

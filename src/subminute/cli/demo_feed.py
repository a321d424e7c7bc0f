"""A simulated city bus feed on 127.0.0.1, for the demo and the tests: no network needed.

Endpoints (JSON, changing every second as the buses move):

* ``/predictions?stop=S`` — arrival predictions at a stop (all stops without ``stop``)
* ``/vehicles`` — vehicle positions (lat/lon, bearing, next stop)
* ``/alerts`` — service alerts, which come and go
* ``/gtfs-rt/vehicles`` — the same positions as a GTFS-realtime protobuf, when
  :mod:`subminute.results.gtfs` can build one (optional dependency)

The state is a pure function of the wall clock, so every request is cheap and answers are reproducible.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["BusFeed", "FeedServer"]

# route id -> (name, stops, minutes per stop, buses on the route)
_ROUTES = {
    "1": ("Harbour - University", ["Harbour", "Market", "Cathedral", "Library", "Park", "University"], 2.0, 4),
    "7": ("Station - Airport", ["Station", "Old Town", "Stadium", "Business Park", "Airport"], 3.0, 3),
    "12": ("Riverside loop", ["Riverside", "Mill", "Bridge", "Hospital"], 1.5, 2),
}
_CENTRE = (52.52, 13.405)
_ALERTS = [
    ("Stop Cathedral moved 50 m north for road works", "1"),
    ("Route 7 delayed by about 4 minutes near Stadium", "7"),
    ("Lift out of service at Station", "7"),
    ("Detour on route 12 between Mill and Bridge", "12"),
]


class BusFeed:
    """The simulated network. ``now`` is a wall-clock function (seconds), injectable for tests."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now

    def vehicles(self) -> list[dict[str, Any]]:
        t = self.now()
        out = []
        for route, (_, stops, minutes, buses) in _ROUTES.items():
            loop_s = len(stops) * minutes * 60
            for b in range(buses):
                pos = ((t + b * loop_s / buses) % loop_s) / (minutes * 60)  # stops travelled, fractional
                index = int(pos)
                angle = 2 * math.pi * pos / len(stops)
                radius = 0.01 * (1 + int(route) % 5)
                out.append({
                    "vehicle_id": f"{route}-{b + 1}",
                    "route": route,
                    "lat": round(_CENTRE[0] + radius * math.sin(angle), 6),
                    "lon": round(_CENTRE[1] + radius * math.cos(angle), 6),
                    "bearing": round(math.degrees(angle + math.pi / 2) % 360, 1),
                    "next_stop": stops[(index + 1) % len(stops)],
                    "timestamp": int(t),
                })
        return out

    def predictions(self, stop: str | None = None) -> list[dict[str, Any]]:
        t = self.now()
        out = []
        for route, (_, stops, minutes, buses) in _ROUTES.items():
            loop_s = len(stops) * minutes * 60
            for b in range(buses):
                travelled = ((t + b * loop_s / buses) % loop_s) / (minutes * 60)
                for i, name in enumerate(stops):
                    if stop is not None and name.lower() != stop.lower():
                        continue
                    ahead = (i - travelled) % len(stops)
                    out.append({"stop": name, "route": route, "vehicle_id": f"{route}-{b + 1}",
                                "arrival_in_s": int(ahead * minutes * 60)})
        out.sort(key=lambda p: (p["stop"], p["arrival_in_s"]))
        return out

    def alerts(self) -> list[dict[str, Any]]:
        minute = int(self.now() // 60)
        return [{"id": i + 1, "route": route, "text": text}
                for i, (text, route) in enumerate(_ALERTS) if (minute + i) % 3 != 0]


class _Handler(BaseHTTPRequestHandler):
    server: FeedServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        feed = self.server.feed
        body: bytes
        content_type = "application/json"
        if parts.path == "/predictions":
            stop = parse_qs(parts.query).get("stop", [None])[0]
            body = json.dumps({"predictions": feed.predictions(stop)}).encode()
        elif parts.path == "/vehicles":
            body = json.dumps({"vehicles": feed.vehicles()}).encode()
        elif parts.path == "/alerts":
            body = json.dumps({"alerts": feed.alerts()}).encode()
        elif parts.path == "/gtfs-rt/vehicles" and self.server.gtfs is not None:
            body = self.server.gtfs(feed.vehicles(), int(feed.now()))
            content_type = "application/x-protobuf"
        elif parts.path == "/slow":
            threading.Event().wait(float(parse_qs(parts.query).get("s", ["5"])[0]))
            body = b"{}"
        else:
            self.send_error(404, "unknown path; try /predictions, /vehicles or /alerts")
            return
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo has its own view
        pass


class FeedServer(ThreadingHTTPServer):
    """Serves a :class:`BusFeed` on 127.0.0.1 (port 0 picks a free one) from a background thread."""

    daemon_threads = True

    def __init__(self, now: Callable[[], float], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.feed = BusFeed(now)
        self.requests = 0
        self.gtfs = _gtfs_builder()
        self._thread = threading.Thread(target=self.serve_forever, name="subminute-feed", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (reset, broken pipe) is not the feed's error: no traceback in the demo."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _gtfs_builder() -> Callable[[list[dict[str, Any]], int], bytes] | None:
    from ..errors import ConfigError

    try:
        from ..results.gtfs import build_feed, require  # optional: needs gtfs-realtime-bindings

        require()
        build_feed()
    except (ImportError, ConfigError):  # a bare install: the feed serves JSON only
        return None

    def vehicles_feed(vehicles: list[dict[str, Any]], now: int) -> bytes:
        return build_feed(vehicles=[{"id": v["vehicle_id"], "route_id": v["route"], "lat": v["lat"],
                                     "lon": v["lon"], "bearing": v["bearing"], "stop_id": v["next_stop"],
                                     "timestamp": v["timestamp"]} for v in vehicles], timestamp=now)

    return vehicles_feed

"""The webhook Alertmanager notifies: every notification recorded with the time it arrived, the
moment an engineer's phone would ring. One per stack, on the stack's loopback port."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Notification:
    alert: str
    status: str               # "firing" or "resolved"
    received: float           # time.monotonic() when it arrived
    received_at: float        # time.time(), for reports
    starts_at: str = ""       # as Prometheus says (RFC 3339)
    ends_at: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    channel: str = ""         # the webhook's path after /alerts/: slack, email, sms, pagerduty, phone
    group: str = ""           # Alertmanager's group key: alerts sent together in one notification

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def to_json(self) -> dict[str, Any]:
        return {"alert": self.alert, "status": self.status, "received_at": round(self.received_at, 3),
                "starts_at": self.starts_at, "ends_at": self.ends_at, "labels": self.labels, "channel": self.channel}


class AlertReceiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self._notifications: list[Notification] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> "AlertReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    channel = self.path.rstrip("/").removeprefix("/alerts").strip("/")
                    receiver._record(json.loads(self.rfile.read(length) or b"{}"), channel)
                    self.send_response(200)
                except (ValueError, TypeError, AttributeError):
                    self.send_response(400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)
        self._thread.start()
        return self

    def _record(self, payload: dict[str, Any], channel: str = "") -> None:
        now, wall = time.monotonic(), time.time()
        found = [Notification(str(a.get("labels", {}).get("alertname", "?")), str(a.get("status", "?")), now, wall,
                              str(a.get("startsAt", "")), str(a.get("endsAt", "")), dict(a.get("labels", {})),
                              channel, str(payload.get("groupKey", "")))
                 for a in payload.get("alerts") or []]
        with self._lock:
            self._notifications.extend(found)

    def notifications(self, since: float | None = None) -> list[Notification]:
        with self._lock:
            return [n for n in self._notifications if since is None or n.received >= since]

    def wait_for(self, alert: str, status: str, after: float, deadline: float) -> Notification | None:
        """The first ``status`` notification of ``alert`` received from ``after`` (time.monotonic()),
        waiting until ``deadline`` at most; None: none came."""
        while True:
            found = next((n for n in self.notifications(after) if n.alert == alert and n.status == status), None)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""The probe judges hangs whenever they happen: a request still unanswered when someone looks is
a hang once it is older than the alert threshold, and is not judged at all before."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fulsk_chaos.probes import Probe, Sample, Samples, Target


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/hang":
            self.server.release.wait(10)  # a request that hangs until the test lets it go
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.release
    httpd.release.set()
    httpd.shutdown()


def test_requests_in_flight_past_the_threshold_are_unanswered_and_younger_ones_not_judged(server):
    url, release = server
    probe = Probe(url, [Target("health", "/ok", json=True), Target("api", "/hang")], interval_s=0.1,
                  timeout_s=8).start()
    try:
        time.sleep(1.2)
        finished = probe.snapshot(hang_s=60)  # nothing is old enough to be a hang yet
        judged = probe.snapshot(hang_s=0.5)
    finally:
        release.set()
        probe.stop()
    # Looking only at finished requests, as before, every hang is invisible:
    assert finished.target("api").unanswered() == 0 and len(finished.target("api")) == 0
    hung = judged.target("api")
    assert hung.unanswered() == len(hung) >= 5 and all(s.pending and s.latency_s >= 0.5 for s in hung)
    assert judged.target("health").unanswered() == 0
    # Requests younger than the threshold are not judged: the record is complete only up to them.
    assert judged.horizon < float("inf") and all(s.started < judged.horizon for s in hung)


def test_settle_waits_until_every_request_of_a_window_can_be_judged(server):
    url, release = server
    probe = Probe(url, [Target("api", "/hang")], interval_s=0.1, timeout_s=8).start()
    try:
        time.sleep(0.35)
        window_end = time.monotonic()
        probe.settle(window_end, hang_s=0.6)
        waited = time.monotonic() - window_end
        window = probe.snapshot(hang_s=0.6).window(0, window_end)
    finally:
        release.set()
        probe.stop()
    assert 0.2 < waited < 2  # until the youngest request of the window was 0.6 s old
    assert len(window) >= 3 and window.unanswered() == len(window)


def ok(t: float) -> Sample:
    return Sample("api", t, 0.01, 200)


def test_a_streak_is_not_declared_over_requests_still_in_flight():
    samples = [ok(t / 10) for t in range(10, 40)]
    assert Samples(samples).first_streak(after=1.0, streak_s=2.0) == 1.0
    # a request started at 2.5 is still in flight and young: it may yet hang, so no streak yet
    assert Samples(samples, horizon=2.5).first_streak(after=1.0, streak_s=2.0) is None
    assert Samples(samples, horizon=3.5).first_streak(after=1.0, streak_s=2.0) == 1.0
    # a hung request (pending, past the threshold) breaks the streak
    hung = Sample("api", 1.55, 2.0, None, "no answer", pending=True)
    assert Samples([*samples, hung]).first_streak(after=1.0, streak_s=2.0) == 1.6  # not 1.0
    assert Samples([*samples, hung]).first_streak(after=1.0, streak_s=2.5) is None

"""The observers (probe, live feed, fleet) run in processes of their own, stamp what they see with
the host's monotonic clock, and say how late they ran: the test process only judges."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fulsk_chaos.checks.validity import HostFigures
from fulsk_chaos.config import Settings
from fulsk_chaos.host.ports import free_ports
from fulsk_chaos.probes import Fleet, Probe, Target
from fulsk_chaos.probes.observer import ObserverError


@pytest.fixture
def http_server(tmp_path):
    """A static HTTP server in a process of its own (not behind this process's interpreter lock)."""
    (tmp_path / "ok").write_text('{"status": "ok"}')
    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    import requests
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/ok", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    yield url
    server.kill()
    server.wait()


def _hold_the_interpreter_lock(seconds: float) -> float:
    """Run one C call that never releases the GIL for about ``seconds``; returns when it began."""
    n = 1_000_000
    while True:
        t0 = time.monotonic()
        sum(range(n))
        took = time.monotonic() - t0
        if took > seconds / 8:
            break
        n *= 2
    n = int(n * seconds / took)
    t0 = time.monotonic()
    sum(range(n))
    return t0


def test_the_probe_is_not_slowed_by_the_test_process(http_server):
    """The test process holds its interpreter lock for a second: the probe, in its own process,
    keeps its schedule and measures the server, not us (in-process it reported our stall)."""
    probe = Probe(http_server, [Target("api", "/ok")], interval_s=0.05, timeout_s=5).start()
    try:
        time.sleep(0.3)
        held_from = _hold_the_interpreter_lock(1.0)
        held_to = time.monotonic()
        time.sleep(0.3)
        probe.settle(held_to, hang_s=2)
        during = probe.snapshot(hang_s=2).window(held_from, held_to)
    finally:
        probe.stop()
    assert held_to - held_from > 0.5, "the lock was not held long enough to tell"
    assert len(during) >= 0.5 * (held_to - held_from) / 0.05  # the schedule went on meanwhile
    assert during.max_ms() < 0.5 * (held_to - held_from) * 1000, during.latencies_ms()


def test_a_fault_shorter_than_the_interval_is_held_until_every_target_was_asked(http_server):
    """A graceful restart is over in tens of ms, less than the probe's interval: waiting until every
    target was asked since it began leaves a window with a sample of each (it had none)."""
    targets = [Target("api", "/ok"), Target("health", "/ok")]
    probe = Probe(http_server, targets, interval_s=0.5, timeout_s=5).start()
    try:
        time.sleep(0.7)
        began = time.monotonic()
        probe.asked_since(began)
        ended = time.monotonic()
        probe.settle(ended, hang_s=2)
        window = probe.snapshot(hang_s=2).window(began, ended)
    finally:
        probe.stop()
    assert {s.target for s in window} == {"api", "health"}


def test_what_the_fleet_streams_back_is_stamped_on_this_hosts_monotonic_clock(stack):
    before = time.monotonic()
    fleet = Fleet(stack.endpoints.mqtt_host, stack.endpoints.mqtt_port, inverters=2, interval_s=0.05).start()
    time.sleep(1.0)
    fleet.stop(settle_s=5)
    after = time.monotonic()
    messages = list(fleet.messages())
    assert len(messages) > 10 and fleet.observer is not None and fleet.observer._proc.pid != os.getpid()
    assert all(before <= m.sent_at <= m.acked_at <= after for m in messages)
    assert [m.seq for m in messages if m.inverter_id == fleet.inverter_ids[0]] == list(
        range(1, 1 + sum(m.inverter_id == fleet.inverter_ids[0] for m in messages)))


def test_an_observer_that_stalls_shows_as_lag_beyond_its_bound(http_server):
    """The observer itself stopped for 0.4 s (as a starved process would be): its lag says so,
    and a window over it is past ``validity.max_observer_lag_ms``."""
    probe = Probe(http_server, [Target("api", "/ok")], interval_s=0.05, timeout_s=5).start()
    try:
        time.sleep(0.3)
        pid = probe.observer._proc.pid
        start = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.4)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)
        end = time.monotonic()
        probe.settle(end, hang_s=2)
        figures = HostFigures({}, probe.lags_s(start, end))
    finally:
        probe.stop()
    assert max(figures.lags_s) >= 0.3
    assert figures.beyond(Settings()) == [f"observers' scheduling lag p99 {figures.lag_p99_ms:g} > 50"]
    (lag,) = figures.expectations("during: ", Settings())
    assert lag.kind == "validity" and lag.held is False


def test_an_observer_that_dies_is_an_error_not_a_quiet_record(http_server):
    probe = Probe(http_server, [Target("api", "/ok")], interval_s=0.05, timeout_s=5).start()
    try:
        os.kill(probe.observer._proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while probe.observer.running and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(ObserverError, match="probe observer exited with status -9 before it was stopped"):
            probe.snapshot(hang_s=2)
    finally:
        with pytest.raises(ObserverError):
            probe.stop()


def test_a_target_asks_for_each_inverter_in_turn_and_a_recent_span():
    target = Target("history", "/api/inverters/{inverter}/readings?from={from}&to={to}", inverters=("a", "b"),
                    span_s=30)
    path, meta = target.request(3, now=1000.0)
    assert path == "/api/inverters/b/readings?from=970.0&to=1000.0"
    assert meta == {"inverter_id": "b", "from": 970.0, "to": 1000.0}
    assert Target.from_json(target.to_json()) == target

"""Parallel drills (pytest-xdist): each worker judges its scenarios, the controller writes one
report; ``serial`` tests run with nothing beside them; workers never pick the same ports."""
from __future__ import annotations

import json

from fulsk_chaos.host.ports import free_ports, port_slice
from fulsk_chaos.plugin import DURATIONS, durations_key, order_for_workers

SCENARIOS = '''
import os
import time

from dataclasses import dataclass

import pytest
from fulsk_chaos.figures import Figures
from fulsk_chaos.verdict import at_most, judge


@dataclass(frozen=True)
class Span(Figures):  # a plugin's own figures: the controller keeps their keys as the worker wrote them
    pid: int
    started: float
    ended: float


def judged(journal, value):
    started = time.monotonic()
    time.sleep(0.4)
    journal.expect([at_most("value", value, 3)])
    journal.measure(Span(os.getpid(), started, time.monotonic()))
    journal.conclude(judge(journal.hypothesis, journal.expectations, journal.evidence))


@pytest.mark.scenario
@pytest.mark.parametrize("value", [1, 2, 3, 4, 1, 2])
def test_parallel(journal, value):
    """Hypothesis: the value stays at most 3."""
    judged(journal, value)


@pytest.mark.scenario
@pytest.mark.serial
@pytest.mark.parametrize("value", [1, 2])
def test_alone(journal, value):
    """Hypothesis: nothing runs beside it."""
    judged(journal, value)
'''


def test_workers_judge_and_the_controller_writes_one_report_with_serial_tests_alone(pytester):
    pytester.makepyfile(test_drill=SCENARIOS)
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess("-n", "2", "--report-dir", str(reports), "--no-html")
    (run,) = [p for p in reports.iterdir() if p.is_dir()]
    results = json.loads((run / "results.json").read_text())
    scenarios = results["scenarios"]
    assert result.ret == 1 and results["verdict"] == "fail"  # value 4 broke the hypothesis
    assert sorted(s["verdict"] for s in scenarios) == ["fail"] + ["pass"] * 7
    assert len({s["measurements"]["pid"] for s in scenarios}) == 2  # two workers judged them
    assert (run / "junit.xml").is_file() and len(list(reports.iterdir())) == 1
    spans = {s["name"]: (s["measurements"]["started"], s["measurements"]["ended"]) for s in scenarios}
    for name, (start, end) in spans.items():
        if name.startswith("alone"):
            beside = [other for other, (a, b) in spans.items() if other != name and a < end and b > start]
            assert beside == [], f"{name} ran beside {beside}"


def test_each_worker_picks_ports_from_a_slice_of_its_own(monkeypatch):
    assert port_slice({}) == (0, 1)
    assert port_slice({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "3"}) == (1, 3)
    assert port_slice({"FULSK_CHAOS_PORT_SLICE": "2/4", "PYTEST_XDIST_WORKER": "gw0"}) == (2, 4)
    taken = {}
    for k in range(2):
        monkeypatch.setenv("FULSK_CHAOS_PORT_SLICE", f"{k}/2")
        taken[k] = free_ports(50)
    assert max(taken[0]) < min(taken[1])


class _Item:
    def __init__(self, nodeid: str, *markers: str) -> None:
        self.nodeid, self.markers = nodeid, markers

    def get_closest_marker(self, name: str):
        return name if name in self.markers else None


def test_serial_tests_go_first_then_the_longest_by_what_this_shape_of_run_measured(pytester):
    """A serial test last waited for the longest test still running (the drill's schedule search,
    started late because the tests session's far shorter search was what the cache knew)."""
    items = [_Item("a", "scenario"), _Item("search", "scenario"), _Item("alone", "scenario", "serial"),
             _Item("unit")]
    assert [i.nodeid for i in order_for_workers(items, {"search": 316.0, "a": 14.0})] == ["alone", "search", "a", "unit"]
    assert [i.nodeid for i in order_for_workers(items, {"search": 3.0, "a": 14.0})] == ["alone", "a", "search", "unit"]
    drill = durations_key(pytester.parseconfig("--monitoring", "--schedule-profile", "drill"))
    tests = durations_key(pytester.parseconfig())
    assert drill != tests and drill.startswith(DURATIONS) and tests.startswith(DURATIONS)


def test_durations_are_kept_per_shape_of_run_as_its_settings_say(pytester):
    """A run monitored by its configuration (stack.monitoring in TOML) is the same shape of run
    as one monitored by --monitoring: it reads and keeps the same durations."""
    config = pytester.path / "monitored.toml"
    config.write_text("[stack]\nmonitoring = true\n")
    by_flag = durations_key(pytester.parseconfigure("--monitoring", "--report-dir", str(pytester.path / "r")))
    by_toml = durations_key(pytester.parseconfigure("--chaos-config", str(config), "--report-dir",
                                                    str(pytester.path / "r")))
    plain = durations_key(pytester.parseconfigure("--report-dir", str(pytester.path / "r")))
    assert by_flag == by_toml != plain

"""The host's own pressure is evidence: every window records Linux's pressure stall information,
and a latency broken on a stalled host is measured again and, stalled still, ``invalid``; a stack
slow on a quiet host still fails."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fulsk_chaos.checks.steady import percentiles_only
from fulsk_chaos.checks.validity import HostFigures
from fulsk_chaos.config import Settings
from fulsk_chaos.host.pressure import PressureSampler, read
from fulsk_chaos.verdict import at_most, judge


def _write_psi(root: Path, cpu_total_us: int) -> None:
    for resource, total in (("cpu", cpu_total_us), ("io", 0), ("memory", 0)):
        (root / resource).write_text(f"some avg10=1.00 avg60=0.00 avg300=0.00 total={total}\n"
                                     f"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def test_a_windows_stall_share_is_the_stall_time_over_its_length(tmp_path):
    _write_psi(tmp_path, 0)
    sampler = PressureSampler(interval_s=0.01, root=tmp_path).start()
    try:
        start = time.monotonic()
        time.sleep(0.2)
        _write_psi(tmp_path, 100_000)  # 0.1 s of CPU stall in about 0.4 s
        time.sleep(0.2)
        end = time.monotonic()
        shares = sampler.shares(start, end)
    finally:
        sampler.stop()
    assert 0.2 <= shares["cpu"] <= 0.3 and shares["io"] == shares["memory"] == 0.0


def test_without_psi_there_is_nothing_to_excuse(tmp_path):
    assert read(tmp_path) is None
    sampler = PressureSampler(root=tmp_path).start()
    assert sampler.shares(0, time.monotonic()) == {}
    assert HostFigures({}, []).beyond(Settings()) == [] and HostFigures({}, []).expectations("x: ", Settings()) == []


def test_a_latency_broken_on_a_stalled_host_is_invalid_and_on_a_quiet_one_a_failure():
    broken = at_most("after: api p95", 900.0, 500, "ms")
    assert percentiles_only("after", [broken]) == [broken]
    assert percentiles_only("after", [broken, at_most("after: api error rate", 0.5, 0.05)]) == []  # a finding stays
    stalled = HostFigures({"cpu": 0.6, "io": 0.0, "memory": 0.0}, [0.001] * 100)
    quiet = HostFigures({"cpu": 0.05, "io": 0.0, "memory": 0.0}, [0.001] * 100)
    assert stalled.beyond(Settings()) == ["host CPU stall 0.6 > 0.2"] and quiet.beyond(Settings()) == []
    assert judge("h", [broken, *stalled.expectations("after: ", Settings())]).status == "invalid"
    assert judge("h", [broken, *quiet.expectations("after: ", Settings())]).status == "fail"


# --- against the stack -----------------------------------------------------------------------------
# These judge latencies and load the host on purpose: never beside another worker (`serial`).
FLUSHALL = "scenarios/test_cache.py -k flushall"


@pytest.fixture
def cpu_hog():
    """Twice as many busy processes as the host has cores, each stopping by itself after 90 s."""
    import os
    hogs = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 90\n"
                                                    "while time.monotonic() < end: pass"])
            for _ in range(2 * (os.cpu_count() or 2))]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


def _windows(run) -> dict[str, dict]:
    m = run.scenario["measurements"]
    return {k.removesuffix("_host"): v for k, v in m.items() if k.endswith("_host") and v}


@pytest.mark.slow
@pytest.mark.serial
def test_a_stack_slow_on_a_quiet_host_still_fails(run_scenario):
    """The backend stalls one second in ten: every 10 s window holds a stall (a tenth of its API
    answers, waiting up to a second: p95 about 500 ms, held here to 200), the host is quiet, and
    the verdict is fail, not invalid."""
    run = run_scenario(FLUSHALL, '[steady_state]\nwindow_s = 10\n[baselines]\napi_response_ms = 200\n'
                                 '[backend.env]\nFULSK_BUGS = "periodic-stall"\n')
    assert run.scenario["verdict"] == "fail", run.output[-3000:]
    assert "before: api p95" in run.expectations(held=False)
    assert not [e for e in run.scenario["expectations"] if e.get("kind") == "validity"]
    assert all(w["stall_share"]["cpu"] <= 0.2 for w in _windows(run).values()), _windows(run)


@pytest.mark.slow
@pytest.mark.serial
def test_a_cpu_hog_beside_a_healthy_stack_is_never_a_failure(run_scenario, cpu_hog):
    run = run_scenario(FLUSHALL)
    assert run.scenario["verdict"] in ("pass", "invalid"), run.output[-3000:]
    assert any(w["stall_share"]["cpu"] > 0.2 for w in _windows(run).values()), _windows(run)  # the hog bit


@pytest.mark.slow
@pytest.mark.serial
def test_a_latency_broken_while_the_host_stays_stalled_is_invalid_with_the_figures(run_scenario, cpu_hog):
    """A baseline no answer meets (1 ms) on a host a hog keeps stalled: measured once more, still
    stalled, so the verdict blames nothing on the stack and says why."""
    run = run_scenario(FLUSHALL, "[baselines]\napi_response_ms = 1\n")
    assert run.scenario["verdict"] == "invalid", run.output[-3000:]
    assert "host CPU stall" in run.scenario["reason"]
    validity = [e for e in run.scenario["expectations"] if e.get("kind") == "validity" and e["held"] is False]
    assert validity and validity[0]["measured"] > 0.2

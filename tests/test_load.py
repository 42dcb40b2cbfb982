"""Locust load: profiles, per-window figures, the baseline history, and load runs that prove each
verdict can be reached - a slow endpoint regresses, a saturated generator is invalid, a stall is
seen by the open model and hidden by the closed one, a ramp finds its capacity."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fulsk_chaos.checks.ledger import settle
from fulsk_chaos.config import Settings
from fulsk_chaos.errors import ConfigError
from fulsk_chaos.host.procs import identity, survivors
from fulsk_chaos.load import (BaselineStore, LoadResult, LoadSamples, LoadTest, Tolerance, comparable, load_profile,
                              parse_duration, regressions)
from fulsk_chaos.load import judge as load_judge
from fulsk_chaos.load.ledger import LoadLedger
from fulsk_chaos.load.profile import from_env, from_mapping
from fulsk_chaos.load.resources import ResourceSampler, Usage, UsageSummary
from fulsk_chaos.load.samples import READING_DELAY, LoadSample, percentile
from fulsk_chaos.verdict import judge


# --- profiles ------------------------------------------------------------------------------------
def test_the_shipped_profiles_load():
    for name in ("weekly", "stress", "chaos"):
        profile = load_profile(name)
        assert profile.users, name
    assert load_profile("stress").stepped and not load_profile("weekly").stepped


@pytest.mark.parametrize("data, message", [
    ({"api": {"mode": "sometimes", "rate": 5}}, "api.mode must be open or closed"),
    ({"api": {"mode": "closed", "steps": [5, 10]}}, "needs api.mode = open"),
    ({"dashboard": {"users": 1, "think_s": [3.0, 1.0]}}, "think_s must be [min, max]"),
    ({"dashboard": {"userz": 1}}, "dashboard.userz: unknown key"),
    ({}, "no users at all"),
])
def test_a_bad_profile_is_refused_with_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_mapping(data, "bad")


def test_an_unknown_profile_names_the_profiles_there_are():
    with pytest.raises(ConfigError, match="no file .*nope.toml.*profiles here: chaos, scale-up, stress, weekly"):
        load_profile("nope")


def test_a_profile_travels_to_the_locust_processes_unchanged():
    profile = load_profile("stress").with_(api__step_s=4.0, duration_s=9.0)
    assert from_env({"FULSK_LOAD_PROFILE": profile.to_json()}) == profile
    assert profile.run_s == 4.0 * len(profile.api.steps)


def test_a_ramp_steps_its_rate_and_ends():
    profile = from_mapping({"api": {"steps": [10, 20, 40], "step_s": 5}})
    assert [profile.rate_at(t) for t in (0, 4.9, 5, 14.9, 15)] == [10, 10, 20, 40, 0]


@pytest.mark.parametrize("text, seconds", [("60s", 60), ("5m", 300), ("1h30m", 5400), ("90", 90), ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "0s", "-5s"])
def test_bad_durations(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


# --- figures -------------------------------------------------------------------------------------
def _samples(n: int, ms: float, name: str = "/api/x", ok: bool = True, start: float = 0.0, kind: str = "GET"):
    return [LoadSample(start + i * 0.01, kind, name, ms, ok) for i in range(n)]


def test_percentiles_are_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 95) is None


def test_failures_count_in_the_error_rate_not_in_latency():
    samples = LoadSamples(_samples(90, 5.0) + _samples(10, 1.0, ok=False))
    api = samples.figures(10.0)["api"]
    assert api.error_rate == 0.1 and api.p95_ms == 5.0 and api.throughput_rps == 10.0


def test_a_request_held_back_by_the_generator_is_a_failure_the_stack_never_saw(tmp_path):
    (tmp_path / "samples-1.csv").write_text("10.0,GET,/api/generation,5.0,1\n10.1,GET,/api/generation,900.0,0\n"
                                            "10.2,GET,/api/generation,1200.0,u\n")
    answered, failed, held_back = LoadSamples.read(tmp_path).samples
    assert (answered.ok, answered.sent) == (True, True) and (failed.ok, failed.sent) == (False, True)
    assert (held_back.ok, held_back.sent) == (False, False)
    assert LoadSamples([answered, failed, held_back]).figures(1.0)["api"].failures == 2  # users' error rate


def test_windows_select_by_when_a_request_was_due():
    samples = LoadSamples(_samples(100, 5.0, start=0) + _samples(100, 900.0, start=10))
    assert samples.window(0, 5).figures(5)["api"].p99_ms == 5.0
    assert samples.window(10, 20).figures(10)["api"].p50_ms == 900.0


def test_groups_follow_the_ops_guides_figures():
    samples = LoadSamples(_samples(5, 1, "dashboard page load", kind="PAGE") + _samples(5, 1, "page /health")
                          + _samples(5, 1, "/v2/totals")  # a read users make, whatever the backend's paths
                          + _samples(5, 1, "reading publish to arrival", kind="WS")
                          + _samples(5, 1, "publish", kind="MQTT"))
    figures = samples.figures(1.0)
    assert {g: f.count for g, f in figures.items()} == {"page load": 5, "api": 5, "http": 10, "websocket": 5,
                                                         "mqtt publish": 5}


# --- verdicts ------------------------------------------------------------------------------------
def test_a_saturated_generator_makes_the_verdict_invalid_even_over_failures():
    busy = {"generator worker-0": UsageSummary(0.5, 0.6, 1, 10, demand_mean_cores=0.97),
            "generator master": UsageSummary(0.0, 0.0, 1, 10, 0.0)}
    validity = load_judge.generator_validity(busy, Settings())
    figures = LoadSamples(_samples(50, 900.0)).figures(5.0)
    failing = load_judge.baseline_expectations(figures, Settings())
    verdict = judge("h", [*failing, *validity])
    assert verdict.status == "invalid" and "worker-0 was saturated" in verdict.reason
    calm = {"generator worker-0": UsageSummary(0.3, 0.4, 1, 10, demand_mean_cores=0.35)}
    assert judge("h", [*failing, *load_judge.generator_validity(calm, Settings())]).status == "fail"


def _result(samples, until: float) -> LoadResult:
    sampler = ResourceSampler({}, interval_s=1.0)
    sampler.series["generator worker-0"] = [Usage(t + 0.5, 0.1, 1, 0.1) for t in range(int(until))]
    return LoadResult(from_mapping({"api": {"rate": 10}}), Path("."), LoadSamples(samples), 0.0, until, sampler,
                      None, None)


def test_under_load_before_and_after_are_the_scenarios_steady_windows():
    """The baselines are judged where the scenario's hypothesis says the stack is steady: not over
    the fault, not over the recovery after it (here: 4 s answers while recovering, 30..40)."""
    def every_20ms(start: float, end: float, ms: float) -> list[LoadSample]:
        return [LoadSample(start + i * 0.02, "GET", "/api/x", ms, True) for i in range(int((end - start) / 0.02))]
    samples = every_20ms(0, 20, 5.0) + every_20ms(20, 40, 4000.0) + every_20ms(40, 60, 5.0)
    judged = load_judge.around_faults(_result(samples, 60.0), Settings(), [("kill postgres", 20.0, 30.0)],
                                      steady=[10.0, 40.0])
    held = {e.name: e.held for e in judged.expectations if "API response" in e.name}
    assert held == {"before: API response p95 (baseline)": True, "after: API response p95 (baseline)": True}
    assert judged.figures[-1].load_baselines_during_faults["during kill postgres"][
        "API response p95 (baseline)"]["held"] is False
    late = load_judge.around_faults(_result(samples, 60.0), Settings(), [("kill postgres", 20.0, 30.0)],
                                    steady=[10.0])  # no steady window after the fault: from its rollback
    assert {e.name: e.held for e in late.expectations}["after: API response p95 (baseline)"] is False


def test_readings_a_fault_caught_in_flight_are_the_faults_not_the_steady_states():
    """Readings published just before a kill and delivered after the recovery were due in the
    steady window, but what they suffered is the fault's; slow ones that arrived before it still
    count against the steady state."""
    def feed(start: float, end: float, delivered_at: float | None, ms: float = 8.0) -> list[LoadSample]:
        return [LoadSample(start + i * 0.02, "WS", READING_DELAY,
                           ms if delivered_at is None else (delivered_at - start - i * 0.02) * 1000, True)
                for i in range(int((end - start) / 0.02))]
    caught = feed(0, 19, None) + feed(19, 20, delivered_at=26.5) + feed(20, 60, None)
    judged = load_judge.around_faults(_result(caught, 60.0), Settings(), [("kill postgres", 20.0, 26.0)],
                                      steady=[10.0, 30.0])
    assert {e.name: e.held for e in judged.expectations}["before: WebSocket latency p95 (baseline)"] is True
    slow = feed(0, 17, None) + feed(17, 19, None, ms=900.0) + feed(19, 60, None)
    judged = load_judge.around_faults(_result(slow, 60.0), Settings(), [("kill postgres", 20.0, 26.0)],
                                      steady=[10.0, 30.0])
    assert {e.name: e.held for e in judged.expectations}["before: WebSocket latency p95 (baseline)"] is False


def test_an_unsampled_generator_cannot_pass():
    validity = load_judge.generator_validity({}, Settings())
    assert judge("h", validity).status == "error"


def test_regressions_need_both_the_fraction_and_the_floor():
    tolerance = Tolerance(0.2, floor_ms=5.0, floor_error_rate=0.01)
    base = {"run_id": "r1", "requests": {"GET /a": {"count": 100, "p95_ms": 10.0, "error_rate": 0.0},
                                         "GET /b": {"count": 100, "p95_ms": 100.0, "error_rate": 0.0},
                                         "GET /rare": {"count": 5, "p95_ms": 1.0, "error_rate": 0.0}}}
    now = {"requests": {"GET /a": {"count": 100, "p95_ms": 14.9, "error_rate": 0.005},   # within the 5 ms floor
                        "GET /b": {"count": 100, "p95_ms": 121.0, "error_rate": 0.02},   # 21 % and 21 ms worse
                        "GET /rare": {"count": 5, "p95_ms": 900.0, "error_rate": 1.0}}}  # too few to compare
    held = {e.name: e.held for e in regressions(now, base, tolerance)}
    assert held == {"GET /a: p95 against the baseline": True, "GET /a: error rate against the baseline": True,
                    "GET /b: p95 against the baseline": False, "GET /b: error rate against the baseline": False}


def test_the_first_run_becomes_the_baseline_and_later_ones_are_kept(tmp_path):
    store = BaselineStore(tmp_path, "weekly", "local")
    assert store.baseline() is None
    assert store.record({"groups": {"api": {"p95_ms": 3}}}, "r1", accept=False).startswith("created baseline")
    assert store.record({"groups": {"api": {"p95_ms": 9}}}, "r2", accept=False).startswith("compared with")
    assert store.baseline()["run_id"] == "r1"
    assert store.record({"groups": {"api": {"p95_ms": 5}}}, "r3", accept=True).startswith("updated baseline")
    assert store.baseline()["run_id"] == "r3"
    assert [json.loads(line)["run_id"] for line in store.history_path.read_text().splitlines()] == ["r1", "r2", "r3"]


def test_a_run_that_did_not_pass_never_becomes_the_baseline(tmp_path):
    store = BaselineStore(tmp_path, "weekly", "local")
    assert store.record({"groups": {}}, "r1", accept=False, passed=False).startswith("not accepted")
    assert store.baseline() is None
    store.record({"groups": {}}, "r2", accept=False)
    assert store.record({"groups": {}}, "r3", accept=True, passed=False).startswith("not accepted")
    assert store.baseline()["run_id"] == "r2"


def test_runs_of_another_traffic_mix_are_not_compared():
    weekly = load_profile("weekly")
    same = {"profile": "weekly", "fingerprint": weekly.with_(duration_s=60).fingerprint}
    assert comparable(same, {"fingerprint": weekly.fingerprint}) is None
    other = {"profile": "weekly", "fingerprint": weekly.with_(api__rate=99).fingerprint}
    assert "--update-baseline" in comparable(other, {"fingerprint": weekly.fingerprint, "run_id": "r1"})


def test_the_load_ledger_reads_every_process_file(tmp_path):
    (tmp_path / "ledger-1.jsonl").write_text(
        '{"k": ["a", 1], "v": {"ts": 1.0}}\n{"k": ["a", 1], "acked": true}\n{"k": ["a", 2], "v": {"ts": 2.0}}\n')
    (tmp_path / "ledger-2.jsonl").write_text('{"k": ["b", 1], "v": {"ts": 3.0}}\n{"k": ["b", 1], "acked": true}\n')
    ledger = LoadLedger(tmp_path)
    assert ledger.acked() == {("a", 1), ("b", 1)} and set(ledger.sent()) == {("a", 1), ("a", 2), ("b", 1)}
    assert ledger.inverter_ids == ["a", "b"]


# --- against a real stack --------------------------------------------------------------------------
SHORT = {"duration_s": 6, "warmup_s": 2, "dashboard": {"users": 3, "think_s": [0.2, 0.5], "page_weight": 2},
         "api": {"rate": 30, "users": 1}, "viewers": {"users": 1}, "inverters": {"users": 10, "interval_s": 0.5}}


@pytest.mark.provider
def test_a_load_run_measures_every_figure_on_this_provider(stack, tmp_path):
    """Locust in processes of its own (never gevent in the test process), every group of samples,
    each service's CPU and memory (processes or containers), the database's statement times, and
    every acknowledged reading stored."""
    settings = Settings()
    with LoadTest(stack, from_mapping(SHORT, "short"), tmp_path, workers=2) as load:
        generator = {identity(pid) for pid in load.locust.pids.values()}
        load.wait()
    result = load.result
    assert "gevent" not in sys.modules
    assert None not in generator and survivors(generator) == []
    judged = load_judge.window(result, settings, result.measured_from, result.measured_to)
    figures = judged.load
    assert {"page load", "api", "http", "websocket", "mqtt publish"} <= set(figures)
    assert all(e.enough for e in judged.evidence), [e.describe() for e in judged.evidence]
    resources = judged.figures[0].resources
    assert set(stack.services) | {"generator master", "generator worker-0", "generator worker-1"} <= set(resources)
    assert resources["backend"]["cpu_mean_cores"] > 0 and resources["postgres"]["rss_max_mb"] > 0
    assert load_judge.db_expectation(result, settings).measured is not None
    ledger = settle(result.ledger, stack.endpoints.database_dsn, timeout_s=20)
    assert ledger.acked > 0 and ledger.ok, ledger.describe()


KILLED_PARENT = """
import json, sys, time
from pathlib import Path
from fulsk_chaos.load import LoadTarget, LocustRun
from fulsk_chaos.load.profile import from_mapping
profile = from_mapping({"duration_s": 600, "api": {"rate": 1, "users": 1}})
run = LocustRun(profile, LoadTarget("http://127.0.0.1:9", "127.0.0.1", 9), Path(sys.argv[1]), workers=2).start()
print(json.dumps(list(run.pids.values())), flush=True)
time.sleep(600)
"""


def test_a_killed_test_process_leaves_no_locust_behind(tmp_path):
    """The generator's processes are reaped even when the process that started them is SIGKILLed."""
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(parent.stdout.readline())
        generator = {identity(pid) for pid in pids}
        assert len(pids) == 3 and None not in generator
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while survivors(generator) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors(generator) == []


def _profile(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


BUGS = '[backend.env]\nFULSK_BUGS = "{}"\n'


@pytest.mark.slow
@pytest.mark.serial  # the generator's CPU and the stack's latency: nothing beside it
def test_the_weekly_load_gives_a_verdict_per_baseline_and_threshold(run_scenario, tmp_path):
    run = run_scenario(f"loadtests/test_load.py --duration 10s --baseline-dir {tmp_path / 'baselines'}")
    assert run.returncode == 0, run.output[-3000:]
    names = set(run.expectations())
    for wanted in ("page load p95 (baseline)", "API response p95 (baseline)", "WebSocket latency p95 (baseline)",
                   "database query time, slowest statement's mean (baseline)", "HTTP response p99 (alert threshold)",
                   "HTTP error rate (alert threshold)", "backend CPU, mean share of the machine (alert threshold)",
                   "postgres memory, peak share of the machine (alert threshold)", "lost (acknowledged, not stored)"):
        assert wanted in names, wanted
    measured = run.scenario["measurements"]
    assert {"p50_ms", "p95_ms", "p99_ms", "throughput_rps", "error_rate"} <= set(measured["load"]["api"])
    assert measured["acked"] > 0 and measured["lost"] == 0
    assert (tmp_path / "baselines" / "weekly-local.json").exists()


@pytest.mark.slow
@pytest.mark.serial  # the generator's CPU and the stack's latency: nothing beside it
def test_a_slow_endpoint_fails_against_the_stored_baseline(run_scenario, tmp_path):
    """150 ms on one endpoint is well within the ops guide's 500 ms: only the baseline catches it."""
    profile = _profile(tmp_path, "regress", """
        duration_s = 8
        warmup_s = 2
        [api]
        rate = 40
        users = 1
        [inverters]
        users = 10
    """)
    args = f"loadtests/test_load.py --load-profile {profile} --baseline-dir {tmp_path / 'baselines'}"
    first = run_scenario(args)
    assert first.returncode == 0, first.output[-3000:]
    slow = run_scenario(args, BUGS.format("slow-endpoint"))
    assert slow.scenario["verdict"] == "fail", slow.output[-3000:]
    failed = slow.expectations(held=False)
    assert "GET /api/inverters/[id]/latest: p95 against the baseline" in failed
    assert all("against the baseline" in name for name in failed), list(failed)
    assert slow.expectations()["API response p95 (baseline)"]["held"] is True


@pytest.mark.slow
def test_a_saturated_generator_is_invalid_not_a_finding(run_scenario, tmp_path):
    # More than one worker can generate whatever the stack answers: 500 users who never think, and
    # API requests due far faster than one process can send them (the open model does not wait).
    profile = _profile(tmp_path, "oversized", """
        duration_s = 8
        warmup_s = 2
        spawn_rate = 500
        [dashboard]
        users = 500
        think_s = [0.0, 0.0]
        [api]
        mode = "open"
        rate = 4000
        users = 4
    """)
    run = run_scenario(f"loadtests/test_load.py --load-profile {profile} --workers 1 "
                       f"--baseline-dir {tmp_path / 'baselines'}")
    assert run.scenario["verdict"] == "invalid", run.output[-3000:]
    assert run.results["verdict"] == "invalid" and run.returncode != 0
    validity = [e for e in run.scenario["expectations"] if e.get("kind") == "validity"]
    assert validity and validity[0]["held"] is False and validity[0]["measured"] > 90


@pytest.mark.slow
@pytest.mark.serial  # the generator's CPU and the stack's latency: nothing beside it
def test_the_open_model_reports_a_stall_the_closed_model_hides(run_scenario, tmp_path):
    """The same rate against a backend that stalls one second in ten (a run of 14 s sees at least
    one stall): users who wait for each answer send nothing while it stalls (coordinated
    omission); requests due at fixed times queue up and their latency, counted from when they
    were due, shows the stall."""
    p99 = {}
    for mode in ("open", "closed"):
        profile = _profile(tmp_path, mode, f"""
            duration_s = 14
            warmup_s = 1
            [api]
            mode = "{mode}"
            rate = 40
            users = 2
        """)
        run = run_scenario(f"loadtests/test_load.py --load-profile {profile} --baseline-dir {tmp_path / mode}",
                           BUGS.format("periodic-stall"))
        p99[mode] = run.scenario["measurements"]["load"]["api"]["p99_ms"]
    assert p99["open"] >= 500, p99
    assert p99["closed"] <= p99["open"] / 3, p99


@pytest.mark.slow
@pytest.mark.serial  # the generator's CPU and the stack's latency: nothing beside it
def test_the_stress_ramp_reports_capacity_and_the_first_broken_baseline(run_scenario, tmp_path):
    """A backend that serves one API request at a time, 5 ms each (200 requests/s at most): the ramp
    holds at 50 and 100 requests/s and breaks at 400; the bisection then finds the knee in between,
    bracketed within 10 %. Enough dashboard users and seconds per step that a step near the knee,
    whose pages slow down, still has its 10 page loads (with 3 users and 5 s, a CI run had 9 at
    154 requests/s: too little evidence, and the search ended there)."""
    profile = _profile(tmp_path, "ramp", """
        [dashboard]
        users = 5
        think_s = [0.3, 0.6]
        page_weight = 2
        api_weight = 1
        [api]
        users = 1
        steps = [50, 100, 400, 800]
        step_s = 6
        [viewers]
        users = 1
        [inverters]
        users = 5
    """)
    run = run_scenario(f"loadtests/test_stress.py --load-profile {profile} --baseline-dir {tmp_path / 'baselines'}",
                       BUGS.format("serialized-api"))
    measured = run.scenario["measurements"]
    steps = measured["steps"]
    held, broken = measured["capacity_bracket_rps"]
    assert measured["capacity_rps"] == held and 100 <= held < broken < 400, json.dumps(steps, indent=1)
    assert measured["search_ended"].startswith("resolved") and (broken - held) / held <= 0.1, measured["search_ended"]
    assert [s["phase"] for s in steps] == ["ramp"] * 3 + ["bisect"] * (len(steps) - 3)  # the ladder stopped at 400
    first_broken = measured["first_broken"]
    assert first_broken["step"] == 3 and first_broken["rate_rps"] == 400
    assert any("API response p95 (baseline)" in b for b in first_broken["baselines"]), first_broken
    assert run.scenario["verdict"] == "pass", run.output[-3000:]


@pytest.mark.slow
@pytest.mark.serial  # the generator's CPU and the stack's latency: nothing beside it
def test_a_scenario_under_load_judges_the_load_around_its_fault_and_holds_its_readings_to_the_ledger(run_scenario):
    """One run (each costs a stack and a scenario): the load's baselines are judged in the
    scenario's steady windows and shown during the fault, and the readings the load's own
    inverters had acknowledged and an at-most-once backend lost are caught."""
    run = run_scenario("scenarios/test_db_loss.py -k kill --under-load", BUGS.format("ack-on-receipt"))
    assert run.scenario["verdict"] == "fail", run.output[-3000:]
    expectations = run.expectations()
    for phase in ("before", "after"):
        for baseline in ("page load p95 (baseline)", "API response p95 (baseline)", "HTTP error rate (alert threshold)",
                         "load generator CPU demand (used + waited for), busiest process"):
            assert f"{phase}: {baseline}" in expectations
    measured = run.scenario["measurements"]
    assert measured["load_profile"] == "chaos"
    assert "API response p95 (baseline)" in measured["load_baselines_during_faults"]["during kill postgres"]
    assert measured["load_acked"] > 0 and measured["load_lost"] > 0
    assert "lost (acknowledged, not stored)" in run.expectations(held=False)


def test_host_busy_is_the_busy_share_of_all_cores_between_two_readings():
    """The scale-up runbook's validity: idle and iowait are not busy; guest time is already in user."""
    from collections import namedtuple
    from fulsk_chaos.runbooks.scaling import host_busy
    Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
    before = Times(10, 0, 5, 100, 1, 0, 0, 0, 0, 0)
    after = Times(16, 0, 7, 110, 3, 0, 0, 0, 4, 0)  # 8 busy, 12 idle or waiting on disk: 40 %
    assert host_busy(before, after) == pytest.approx(0.4)
    assert host_busy(before, before) == 0.0  # no time passed: nothing to judge, not a division by zero

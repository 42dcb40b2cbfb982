"""The load drills (the weekly load test, the monthly stress ramp), on the one experiment base
(drills.base): the stack shown healthy before, the profile's load as the method, judged against
the ops guide's baselines and alert thresholds, the stored baseline, and the ledger; the stress
ramp's knee bisected (load.knee).

    drill.steady()    # the weekly load: the whole run is one window
    drill.ramp()      # the stress test: the ladder until a step breaks, then bisection to the knee
    drill.verdict()
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

from ..checks import alerts as alert_judge
from ..config import Settings
from ..figures import AlertFigures, LoadFigures, StressFigures
from ..host.pressure import PressureSampler
from ..load import BaselineStore, LoadResult, LoadSamples, LoadTest, Tolerance, comparable, regressions
from ..load import judge as load_judge, knee, under_fault
from ..load.history import stored_capacity
from ..load.steering import Steering
from ..load.under_fault import UnderFault
from ..report import ScenarioRecord
from ..stack import Stack
from ..verdict import Expectation, at_least, judge
from .base import Drill
from .phases import Phase


class LoadDrill(Drill):
    def __init__(self, stack: Stack, settings: Settings, record: ScenarioRecord, load: LoadTest, *,
                 store: BaselineStore | None = None, accept_baseline: bool = False, min_samples: int = 10,
                 run_id: str = "") -> None:
        super().__init__(stack, settings, record)
        self.load = load
        self.store = store
        self.accept_baseline = accept_baseline
        self.min_samples = min_samples
        self.run_id = run_id or record.name
        self.windows: list[alert_judge.UsersWindow] = []  # the ramp's steps as users measured them
        # The host's pressure beside each window's figures. Recorded, never an excuse here: at its
        # knee a stack on this host stalls the host (its capacity is the host's); the generator's
        # own CPU is what decides whether a load measurement is valid.
        self.host = PressureSampler()

    def _host_stall(self, start_epoch: float, end_epoch: float) -> dict[str, float]:
        offset = time.monotonic() - time.time()
        return self.host.shares(start_epoch + offset, end_epoch + offset)

    def healthy_before(self) -> None:
        """The steady state before the load: every service of the stack healthy. A load on a stack
        that was not proves nothing about it: that is the verdict, and no load runs."""
        self.phases.enter(Phase.OBSERVING)
        self.phases.enter(Phase.BEFORE)
        try:
            detail = f"healthy within {self.stack.wait_healthy(timeout_s=self.settings.recovery.target_s):.1f} s"
            held = True
        except Exception as exc:  # noqa: BLE001 - whatever stops a service answering: not healthy
            detail, held = f"{type(exc).__name__}: {exc}", False
        expectation = Expectation("before the load: every service of the stack healthy", int(held), "==", 1,
                                  detail=detail)
        self.record.expect([expectation])
        if not held:
            self.not_steady_before(judge(self.record.hypothesis, [expectation], []), "the load")

    def steady(self) -> LoadResult:
        """Run the profile to its end and judge the whole run as one window."""
        self.healthy_before()
        self.begin_method()
        self.record.note(f"load: the {self.load.profile.name} profile for {self.load.locust.run_s:g} s")
        with self.host.start(), self.load:
            self.load.wait()
        result = self.load.result
        assert result is not None
        judged = load_judge.window(result, self.settings, result.measured_from, result.measured_to,
                                   minimum=self.min_samples)
        self.record.expect(judged.expectations, judged.evidence)
        self.record.measure(LoadFigures(load_profile=result.profile.name,
                                        host_stall_share=self._host_stall(result.measured_from, result.measured_to)),
                            *judged.figures)
        self._judge_run(result)
        return result

    def ramp(self, under: UnderFault | None = None) -> LoadResult:
        """The stress search (load.knee): the profile's ladder until a step breaks a baseline (or
        saturates the generator), then bisection until the knee is bracketed within
        ``load.knee_resolution``; each step judged as it ends. Capacity: the highest rate that met
        every baseline, with its bracket. ``under``: the same search while a fault holds, its
        capacity compared with the healthy one (this run's, else the stored baseline's)."""
        profile = self.load.profile
        if not profile.stepped:
            raise ValueError(f"profile {profile.name} has no steps (api.steps): it is not a stress ramp")
        resolution = self.settings.load.knee_resolution
        if self.load.locust.run_s < (bound := knee.run_bound_s(profile, resolution)):
            raise ValueError(f"the load run is bounded at {self.load.locust.run_s:.0f} s and the search may take "
                             f"{bound:.0f} s: give its LoadTest run_s=knee.run_bound_s(profile, resolution)")
        floor, settings = profile.api.steps[0], self.settings
        self.healthy_before()
        self.begin_method(disrupts=under is not None)
        with contextlib.ExitStack() as held:
            held.enter_context(self.host.start())
            each_step = held.enter_context(under.holding(self.record.note)) if under is not None else None
            with self.load:
                assert self.load.spawned_at is not None
                found = knee.run(
                    knee.Search(tuple(profile.api.steps), resolution), Steering(self.load.out_dir),
                    self.load.spawned_at, profile.api.step_s, self._judge_step, each_step=each_step,
                    recovered=lambda a, b: knee.answers_within(LoadSamples.read(self.load.out_dir), a, b, floor,
                                                               settings.baselines.api_response_ms,
                                                               settings.alerts.error_rate),
                    cooldown_max=knee.cooldown_max_s(profile.timeout_s), note=self.record.note)
        result = self.load.result
        assert result is not None
        for fault in self.record.faults:  # what the ramp ran under must have bitten
            self.must_bite(fault)
        self._conclude_ramp(found)
        self._judge_run(result, history=False)
        self._compare_capacity(found, under)
        return result

    def _judge_step(self, k: int, step: knee.Next, start: float, end: float) -> tuple[str, dict[str, Any]]:
        rate = step.rate
        samples = LoadSamples.read(self.load.out_dir)
        partial = LoadResult(self.load.profile, self.load.out_dir, samples, start, end, self.load.sampler, None, None)
        api_sent = [s for s in samples.window(start, end).group("api") if s.sent]
        judged = load_judge.window(partial, self.settings, start, end, f"step {k + 1}", minimum=self.min_samples)
        api = judged.load.get("api", {})
        broken = [e for e in judged.expectations if e.held is False and e.kind != "validity"]
        invalid = [e for e in judged.expectations if e.held is False and e.kind == "validity"]
        short = [e.describe() for e in judged.evidence if not e.enough]
        demand = next((e.measured for e in judged.expectations if e.kind == "validity"), None)
        record = {"step": k + 1, "rate_rps": rate, "achieved_api_rps": api.get("throughput_rps"),
                  "generator_cpu_demand_pct": demand,
                  "api_p95_ms": api.get("p95_ms"), "api_p99_ms": api.get("p99_ms"), "error_rate": api.get("error_rate"),
                  # what the stack answered (the requests held back, too many in flight, never reached it)
                  "answered_error_rate": (round(sum(not s.ok for s in api_sent) / len(api_sent), 5) if api_sent
                                          else None),
                  "held_back": api.get("count", 0) - len(api_sent) if api else 0,
                  # the API requests in flight, on average (Little's law: their latency summed over the window)
                  "api_in_flight": round(sum(s.ms for s in api_sent) / 1000 / max(end - start, 1e-9), 2),
                  "window_s": round(end - start, 2), "host_stall_share": self._host_stall(start, end),
                  "broken": [e.describe() for e in broken], "invalid": [e.describe() for e in invalid],
                  "short": short, "judged": judged}
        self.windows.append(alert_judge.UsersWindow(f"step {k + 1}, {rate:g} req/s", start, end,
                                                    record["api_p95_ms"], record["answered_error_rate"]))
        # a saturated generator's figures describe the generator, whatever they broke
        outcome = knee.INVALID if invalid else knee.BROKEN if broken else knee.SHORT if short else knee.HELD
        return outcome, record

    def _conclude_ramp(self, found: knee.Knee) -> None:
        steps, capacity = found.steps, found.capacity
        last = steps[-1] if steps else None
        first_broken = next((s for s in steps if s["broken"]), None)
        profile = self.load.profile
        self.record.measure(LoadFigures(load_profile=profile.name), StressFigures(
            capacity_rps=capacity, capacity_bracket_rps=found.bracket, knee_resolution=self.settings.load.knee_resolution,
            first_broken=({"step": first_broken["step"], "rate_rps": first_broken["rate_rps"],
                           "baselines": first_broken["broken"]} if first_broken else None),
            search_ended=found.ended, steps=[{k: v for k, v in s.items() if k != "judged"} for s in steps]))
        # What the verdict stands on: the first step is the load the stack must carry; every later one
        # is a measurement of its capacity, not a requirement.
        if steps:
            first = steps[0]["judged"]
            self.record.expect(list(first.expectations), first.evidence)
        if last is not None and last["invalid"]:
            self.record.expect([e for e in last["judged"].expectations if e.kind == "validity"])
        held, broken = found.bracket
        self.record.expect([at_least("capacity (highest rate meeting every baseline)", capacity, profile.api.steps[0],
                                     "req/s", evidence={"steps_run": len(steps)},
                                     detail=f"knee between {held:g} and {broken:g} req/s; {found.ended}"
                                     if broken is not None else found.ended)])

    def _compare_capacity(self, found: knee.Knee, under: UnderFault | None) -> None:
        """Healthy: the capacity goes into the stress history (the baseline, if none is, and it
        passed) and is shown against the stored one. Under fault: its ratio to the healthy one."""
        if self.store is None and under is None:
            return
        profile = self.load.profile
        figures = {"profile": profile.name, "fingerprint": profile.fingerprint, "capacity_rps": found.capacity,
                   "capacity_bracket_rps": found.bracket, "knee_resolution": self.settings.load.knee_resolution}
        baseline = self.store.baseline() if self.store is not None else None
        stored, why_not = stored_capacity(baseline, figures)
        if under is not None:  # a faulted capacity is never a baseline
            self.record.measure(under_fault.compare(found.capacity, found.bracket, under, stored, why_not))
            return
        assert self.store is not None
        if stored is not None and found.capacity is not None and not self.accept_baseline:
            ratio = round(found.capacity / stored["capacity_rps"], 3)
            self.record.measure(StressFigures(capacity_vs_baseline={**stored, "ratio": ratio}))
        elif baseline is not None and not self.accept_baseline:
            self.record.measure(StressFigures(capacity_not_compared=why_not))
        passed = judge(self.record.hypothesis, self.record.expectations, self.record.evidence).status == "pass"
        self.record.measure(LoadFigures(baseline=self.store.record(figures, self.run_id, accept=self.accept_baseline,
                                                                   passed=passed)))

    def _judge_run(self, result: LoadResult, history: bool = True) -> None:
        self.phases.enter(Phase.CLOSED)  # the load has stopped: its ledger settles
        self.record.expect([load_judge.db_expectation(result, self.settings)])
        self.judge_ledger([result.ledger])
        self.record.measure(LoadFigures(locust=result.locust_stats.get("entries", []),
                                        db_statements=[{"query": t.query, "calls": t.calls,
                                                        "mean_ms": round(t.mean_ms, 3)}
                                                       for t in (result.db_times() or [])[:10]]))
        if not history or self.store is None:
            return
        figures = load_judge.figures_for_history(result)
        passed = judge(self.record.hypothesis, self.record.expectations, self.record.evidence).status == "pass"
        baseline = self.store.baseline()
        if baseline is not None and not self.accept_baseline:
            load = self.settings.load
            if (why_not := comparable(figures, baseline)) is not None:
                self.record.measure(LoadFigures(baseline_not_compared=why_not))
            else:
                self.record.expect(regressions(figures, baseline, Tolerance(load.regression_tolerance,
                                                                             load.regression_floor_ms,
                                                                             load.regression_floor_error_rate)))
        self.record.measure(LoadFigures(baseline=self.store.record(figures, self.run_id, accept=self.accept_baseline,
                                                                   passed=passed)))

    def quiet(self, silent: Sequence[str], began: float) -> None:
        """Under load on a healthy stack, none of ``silent`` may page (since ``began``,
        time.monotonic()); not judged on a stack without monitoring (``alerts_not_judged``)."""
        if (monitoring := self.monitoring(silent=list(silent))) is None:
            return
        receiver, prometheus = monitoring
        notifications = receiver.notifications(began)
        self.record.expect(alert_judge.silence(notifications, silent, began, began, "the load's start"),
                           alert_judge.evidence(prometheus, began, time.monotonic(), 3, "under the load"))
        self.record.measure(AlertFigures(alert_notifications=[n.to_json() for n in notifications]))

    def alerts_follow_users(self, silent: Sequence[str], began: float) -> None:
        """After ``ramp()``: pages agree with what the ramp's users measured. While the steps stayed
        under the alert thresholds none of ``silent`` paged; the first step whose users were past
        one (p95 over the HTTP threshold, errors over the rate) paged (checks.alerts.follow_users)."""
        if (monitoring := self.monitoring(follow_users=list(silent))) is None:
            return
        receiver, prometheus = monitoring
        m = self.settings.monitoring
        if self.windows:  # a late page is still a page: wait as long as one may take
            time.sleep(max(0.0, self.windows[-1].end + alert_judge.fire_within_s(m) + m.window_s - time.time()))
        notifications = receiver.notifications(began)
        found, measured = alert_judge.follow_users(notifications, self.windows, self.settings.alerts, m, silent)
        self.record.expect(found, alert_judge.evidence(prometheus, began, time.monotonic(), 3, "under the ramp"))
        self.record.measure(measured)

"""The steady-state hypothesis judged over windows of the experiment's observers: before the
method (a stack not steady ends the scenario with its verdict), during it, and after it; a
window that broke a latency percentile alone is extended, and one measured on a stalled host is
measured again or said to be (drills.base.on_a_stalled_host). Part of the experiment
(drills.experiment), which provides the observers."""
from __future__ import annotations

import time
from typing import Any

from ..checks import Observation, steady_evidence, steady_figures, steady_state
from ..checks.steady import percentiles_only
from ..checks.validity import HostFigures
from ..verdict import Expectation, judge
from .phases import Phase, PhaseError


class SteadyWindows:
    # provided by the experiment: its observers, its record and phases, what its verdicts need
    settings: Any
    record: Any
    phases: Any
    needs: Any
    faults: Any
    probe: Any
    feed: Any
    fleet: Any
    host: Any
    _steady: list[float]
    def observe(self, phase: str, since: float | None = None) -> Observation:
        """Watch for the steady-state window, then wait until every request of it can be judged;
        ``since`` (monotonic) extends an earlier window: the observation then begins there."""
        start = time.monotonic() if since is None else since
        time.sleep(self.settings.steady_state.window_s)
        end = time.monotonic()
        self.probe.settle(end, self.settings.hang_s)
        samples = self.probe.snapshot(self.settings.hang_s).window(start, end)
        return Observation(phase, start, end, samples, self.fleet_record(), self.feed.arrivals())

    def host_figures(self, start: float, end: float) -> HostFigures:
        """The host's pressure and the observers' own lag over ``start``..``end``."""
        lags = [*self.probe.lags_s(start, end), *self.feed.lags_s(start, end), *self.fleet.lags_s(start, end)]
        return HostFigures(self.host.shares(start, end), lags)

    def steady_state(self, phase: str, *, health: bool = True) -> list[Expectation]:
        """Judge the steady-state hypothesis over one window. Before any fault, a hypothesis that
        does not hold ends the scenario with its verdict: a fault proves nothing about a stack
        that was not steady to begin with. During a fault users may be held to it too, without
        /health (``health=False``), which should then report the faulted dependency."""
        self.phases.enter(self._phase_of(phase))
        needs = self.needs
        before_method = self.phases.current is Phase.BEFORE
        attempts = max(1, self.settings.steady_state.before_attempts) if before_method else 1
        quiet_waits = max(0, self.settings.steady_state.quiet_host_windows) if before_method else 0
        unsettled: list[str] = []
        while True:
            self.record.note(f"steady state {phase} ({self.settings.steady_state.window_s:g} s)")
            obs = self.observe(phase)
            expectations = steady_state(obs, self.settings, judge_health=health)
            evidence = steady_evidence(obs, samples=needs.samples_per_window, acked=needs.acked_per_window,
                                       judged=needs.judged_per_window)
            before = judge(self.record.hypothesis, expectations, evidence) if before_method else None
            if before is None or before.status == "pass":
                break
            # Not steady yet: measured once more before any fault. A window whose latency alone
            # broke while the host was stalled says nothing of the stack: nothing is at stake
            # before the fault, so the experiment waits for a quiet host (quiet_host_windows).
            why = self.host_figures(obs.start, obs.end).beyond(self.settings)
            if why and percentiles_only(phase, expectations) and quiet_waits > 0:
                quiet_waits -= 1
                unsettled.append(f"{before.reason} (on a stalled host: {'; '.join(why)})")
                continue
            attempts -= 1
            if attempts <= 0:
                break
            unsettled.append(before.reason)
        extended: list[str] = []
        if not before_method and not self.faults.active:
            obs, expectations, extended = self._extend(obs, expectations, health)
            evidence = steady_evidence(obs, samples=needs.samples_per_window, acked=needs.acked_per_window,
                                       judged=needs.judged_per_window)
        host = self.host_figures(obs.start, obs.end)
        remeasured: dict[str, Any] = {}
        if not before_method and (broken := percentiles_only(phase, expectations)) and host.beyond(self.settings):
            # Only a latency broke, on a stalled host: measured once more (before the method, the
            # attempts above did). A window that broke anything else keeps its findings.
            remeasured = {"why": host.beyond(self.settings), "broken": [e.describe() for e in broken],
                          "host": host.to_json()}
            self.record.note(f"steady state {phase}: {broken[0].name} broke while "
                             f"{host.beyond(self.settings)[0]}: measured once more")
            obs = self.observe(phase)
            expectations = steady_state(obs, self.settings, judge_health=health)
            if not self.faults.active:
                obs, expectations, _ = self._extend(obs, expectations, health)
            evidence = steady_evidence(obs, samples=needs.samples_per_window, acked=needs.acked_per_window,
                                       judged=needs.judged_per_window)
            host = self.host_figures(obs.start, obs.end)
        if (broken := percentiles_only(phase, expectations)) and host.beyond(self.settings):
            expectations = self.on_a_stalled_host(f"{phase}: ", expectations, broken, host)
            if before is not None:  # nothing but latency broke, on a stalled host: invalid, not fail
                before = judge(self.record.hypothesis, [*expectations, *host.expectations(f"{phase}: ", self.settings)],
                               evidence)
        self._steady.append(obs.start)
        self.record.expect(expectations, evidence)
        self.record.measure(steady_figures(obs, host=host.to_json(), unsettled=unsettled or None,
                                           extended=extended or None, remeasured=remeasured or None))
        if before is not None and before.status != "pass":
            self.not_steady_before(before)
        return expectations

    def _phase_of(self, label: str) -> Phase:
        """The phase a steady-state window labelled ``label`` belongs to: before the method, a
        window while faults hold (or the method runs), or after it."""
        if not self.phases.method_began:
            if label != "before":
                raise PhaseError(f"a steady state {label!r} before the method began: the first window is 'before'")
            return Phase.BEFORE
        if label == "before":
            raise PhaseError("a steady state 'before' once the method began: a fault was injected, or the method "
                             "began, before it")
        if self.faults.active:
            if label == "after":
                raise PhaseError(f"a steady state 'after' while {', '.join(f'{f.record.kind} {f.record.target}' for f in self.faults.active)} "
                                 f"still holds: roll it back first (leave its `with` block)")
            return Phase.METHOD
        return Phase.AFTER if label == "after" else Phase.METHOD

    def _extend(self, obs: Observation, expectations: list[Expectation], health: bool
                ) -> tuple[Observation, list[Expectation], list[str]]:
        """A window after the method that failed on a latency percentile alone is extended, up to
        ``steady_state.percentile_windows`` windows in all, and judged over all of them: one short
        stall of the host breaks a percentile of 3 s, not one of 6 s. A window that broke anything
        else (an error, a stale or wrong answer, a hang) is never given a second chance. Returns
        what the first window broke (empty when it was not extended)."""
        extended: list[str] = []
        for _ in range(1, self.settings.steady_state.percentile_windows):
            broken = percentiles_only(obs.phase, expectations)
            if not broken:
                break
            extended = extended or [e.describe() for e in broken]
            self.record.note(f"steady state {obs.phase}: only a latency percentile broke ({broken[0].describe()}); "
                             f"extended by {self.settings.steady_state.window_s:g} s")
            obs = self.observe(obs.phase, since=obs.start)
            expectations = steady_state(obs, self.settings, judge_health=health)
        return obs, expectations, extended


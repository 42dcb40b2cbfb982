"""A chaos experiment in plain Python, after Chaos Toolkit's model: the steady-state hypothesis
is checked with numbers before the method (the faults) and after it, every fault is rolled back,
and everything measured goes into the scenario's journal, from which the verdict is judged.

    with experiment:                                  # fleet, probe and live feed running
        experiment.steady_state("before")             # not steady: the verdict, and no fault
        with experiment.inject("kill", "postgres") as fault:
            time.sleep(5)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault, dependency="postgres")
    experiment.verdict()                              # ledger settled when the with-block ended
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from .checks import alerts as alert_judge
from .checks.alerts import AlertWindow
from .checks import (FaultWindow, Observation, Recovery, fault_window, judge_answer, settle, steady_evidence,
                     steady_measurements, steady_state, ingest_of, wait_for_recovery)
from .checks.dbload import DbLoadWindow
from .checks.ledger import never_stored
from .checks.timeline import timeline
from .checks.steady import no_unanswered, no_wrong_answers, percentiles_only
from .checks.validity import HostFigures
from .config import Settings
from .drills import LedgerPolicy, Phase, PhaseError, Phases
from .drills.ledger import Allowance
from .faults import Fault, FaultInjector
from .faults.conditions import condition_expectation
from .host.pressure import PressureSampler
from .load import BaselineStore, LoadResult, LoadSamples, LoadTest, Tolerance, comparable, regressions
from .load import judge as load_judge
from .load import knee, under_fault
from .load.steering import Steering
from .load.under_fault import UnderFault
from .probes import Fleet, FleetRecord, Fleets, LiveFeed, Probe, Target
from .report import ScenarioRecord
from .stack import Stack
from .verdict import Expectation, Verdict, VerdictReached, at_least, judge


@dataclass(frozen=True)
class Needs:
    """The least evidence a verdict rests on; below it the verdict is ``error``, never ``pass``."""
    samples_per_window: int = 10   # probe samples of each target, and API answers, in each window
    acked_per_window: int = 10     # readings the broker acknowledged in each steady window
    judged_per_window: int = 5     # latest-reading answers that could be judged for freshness
    acked_during_fault: int = 10   # readings the broker acknowledged while the fault was active
    samples_during_fault: int | None = None  # API samples while it was active (default: samples_per_window)


FLUSH_S = 1.5  # until the Locust processes have written a window's samples (they flush every second)
HISTORY_S = 30.0  # how far back the probe asks for an inverter's readings, as a dashboard chart does
LISTING_PATH = "/api/inverters"  # its answer, when it is the API path probed, is judged for completeness


def user_targets(settings: Settings, inverter_ids: list[str]) -> list[Target]:
    """What the probe asks for through the frontend: /health, the API, and, for each inverter in
    turn, its latest reading and its recent history."""
    ids = tuple(inverter_ids)
    listing = settings.probe.api_path == LISTING_PATH
    return [Target("health", "/health", json=True),
            Target("api", settings.probe.api_path, json=listing, meta={"listing": True} if listing else {}),
            Target("latest", "/api/inverters/{inverter}/latest", json=True, inverters=ids),
            Target("history", "/api/inverters/{inverter}/readings?from={from}&to={to}", json=True, inverters=ids,
                   span_s=HISTORY_S)]


def make_fleet(stack: Stack, settings: Settings) -> Fleet:
    """Simulated inverters publishing through their own proxied edge (not started)."""
    endpoints, fleet = stack.endpoints, settings.fleet
    return Fleet(endpoints.mqtt_host, endpoints.mqtt_port, inverters=fleet.inverters, sites=fleet.sites,
                 interval_s=fleet.interval_s)


def make_probe(stack: Stack, settings: Settings, fleet: Fleet) -> Probe:
    """The user-side probe through the frontend, asking for the fleet's readings (not started)."""
    return Probe(stack.endpoints.frontend_url, user_targets(settings, fleet.inverter_ids),
                 interval_s=settings.probe.interval_s, timeout_s=settings.probe_timeout_s)


def make_feed(stack: Stack) -> LiveFeed:
    """A dashboard's live-feed client through the frontend (not started)."""
    return LiveFeed(stack.endpoints.live_feed_url)


class Experiment:
    def __init__(self, stack: Stack, settings: Settings, record: ScenarioRecord, *, fleet: Fleet, probe: Probe,
                 feed: LiveFeed, faults: FaultInjector, needs: Needs = Needs(), load: LoadTest | None = None) -> None:
        self.stack = stack
        self.settings = settings
        self.record = record
        self.fleet = fleet
        self.probe = probe
        self.feed = feed
        self.faults = faults
        self.needs = needs
        self.load = load  # background load (chaos under load): judged before and after each fault
        self.phases = Phases()  # Chaos Toolkit's order, enforced (drills.phases)
        self.ledger = LedgerPolicy()  # what the ledger holds the run to (drills.ledger)
        self._recovered_at: float | None = None
        self._steady: list[float] = []  # steady windows' starts: the load's "before" and "after" start at them
        self._started: float | None = None
        self._biting: list[Fault] = []  # injected by the method: each must reach its condition (judged in verdict)
        self.host = PressureSampler()  # the host's own pressure, next to every window's figures
        self._stalled: list[tuple[str, HostFigures]] = []  # windows whose latency alone broke on a stalled host
        self._excusable: set[str] = set()  # those latency expectations

    # --- the instruments -----------------------------------------------------------------------
    def __enter__(self) -> "Experiment":
        self.phases.enter(Phase.OBSERVING)
        if self.load is not None:
            self.load.start()  # every user running and warmed up before the first window
        self._started = time.monotonic()
        self.host.start()
        instruments = (self.feed, self.fleet, self.probe)  # each an observer process of its own
        for instrument in instruments:
            instrument.launch()
        for instrument in instruments:
            instrument.wait_started()
        self._warm_up()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.phases.enter(Phase.CLOSED)
        self.probe.stop()
        self.feed.stop()
        self.fleet.stop(settle_s=0 if exc_type else 5.0)
        self.host.stop()
        result = self.load.stop() if self.load is not None else None
        if exc_type is None:
            # Wrong data is never acceptable, not during a fault nor while recovering from it.
            fleet = self.fleet_record()
            samples = self.probe.snapshot(self.settings.hang_s).window(self._started)
            judged = [(s, judge_answer(s, fleet)) for s in samples]  # once: the wrong answers and the timeline
            self.record.expect([no_wrong_answers("at any time: ", [a for _, a in judged if a is not None])])
            self._record_timeline(judged, fleet)
            dsn = self.stack.endpoints.database_dsn
            senders = [self.fleet, *self.ledger.tracked, *([result.ledger] if result is not None else [])]
            if result is not None:
                self._judge_load(result)
            ledger = settle(Fleets(*senders), dsn, timeout_s=self.settings.recovery.target_s,
                            allow_duplicates=self.settings.ledger.allow_duplicates)
            if (allowance := self.ledger.allowance) is not None:  # a restore's RPO: the loss it may cause
                acked_at = {m.key: m.acked_at for f in self.fleets for m in f.messages() if m.acked_at is not None}
                judged = allowance.judge(list(ledger.lost), acked_at)
                self.record.expect(judged.expectations, judged.evidence, first=True)
                self.record.measure(**judged.measurements)
                ledger = replace(ledger, lost=judged.unaccounted)
            self.record.expect(ledger.expectations(), first=True)  # data loss is reported first
            self.record.measure(**ledger.measurements())
            if result is not None:  # the background load's own share of the ledger
                load_acked = result.ledger.acked()
                self.record.measure(load_acked=len(load_acked), load_lost=len(load_acked & set(ledger.lost)))
            self.record.expect([never_stored(dsn, prefix, what) for prefix, what in self.ledger.never_stored])

    def _record_timeline(self, judged, fleet: FleetRecord) -> None:
        """The run second by second, with the moments that matter on it (for the report's chart)."""
        assert self._started is not None
        series = timeline(judged, fleet, self.feed.arrivals(), self._started, time.monotonic())
        if self._recovered_at is not None:
            series["recovered_s"] = round(self._recovered_at - self._started, 2)
        self.record.measure(series=series)

    def _judge_load(self, result) -> None:
        """Chaos under load: the ops guide's baselines before and after each fault, shown during it."""
        to_epoch = time.time() - time.monotonic()
        faults = [(f"{f.kind} {f.target}", f.started + to_epoch, f.ended + to_epoch if f.ended else None)
                  for f in self.record.faults]
        judged = load_judge.around_faults(result, self.settings, faults, [t + to_epoch for t in self._steady],
                                          self._recovered_at + to_epoch if self._recovered_at else None)
        self.record.expect(judged.expectations, judged.evidence)
        self.record.measure(load_profile=result.profile.name, **judged.measurements)

    def _warm_up(self) -> None:
        """Until the live feed is connected and carrying readings, bounded: a stack that never gets
        there is judged on what the first window sees."""
        deadline = time.monotonic() + 3 * self.settings.steady_state.window_s
        while time.monotonic() < deadline:
            if self.feed.arrivals() and self.fleet.acked():
                return
            time.sleep(0.05)

    # --- hypothesis, method, measurements ------------------------------------------------------
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

    def _on_a_stalled_host(self, prefix: str, expectations: list[Expectation], broken: list[Expectation],
                           host: HostFigures) -> list[Expectation]:
        """Latency expectations that broke, alone in their window, while the host was stalled: said
        so, and remembered. If nothing else of the scenario fails, its verdict is ``invalid`` with
        the host's figures (see ``verdict``); a finding anywhere else is still a finding."""
        why = "; ".join(host.beyond(self.settings))
        self._stalled.append((prefix, host))
        self._excusable |= {e.name for e in broken}
        said = {e.name: replace(e, detail=f"{e.detail + '; ' if e.detail else ''}measured on a stalled host: {why}")
                for e in broken}
        return [said.get(e.name, e) for e in expectations]

    def steady_state(self, phase: str, *, health: bool = True) -> list[Expectation]:
        """Judge the steady-state hypothesis over one window. Before any fault, a hypothesis that
        does not hold ends the scenario with its verdict: a fault proves nothing about a stack
        that was not steady to begin with. During a fault users may be held to it too, without
        /health (``health=False``), which should then report the faulted dependency."""
        self.phases.enter(self._phase_of(phase))
        needs = self.needs
        before_method = self.phases.current is Phase.BEFORE
        attempts = max(1, self.settings.steady_state.before_attempts) if before_method else 1
        unsettled: list[str] = []
        for attempt in range(1, attempts + 1):
            self.record.note(f"steady state {phase} ({self.settings.steady_state.window_s:g} s)")
            obs = self.observe(phase)
            expectations = steady_state(obs, self.settings, judge_health=health)
            evidence = steady_evidence(obs, samples=needs.samples_per_window, acked=needs.acked_per_window,
                                       judged=needs.judged_per_window)
            before = judge(self.record.hypothesis, expectations, evidence) if before_method else None
            if before is None or before.status == "pass" or attempt == attempts:
                break
            unsettled.append(before.reason)  # not steady yet: measured once more before any fault
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
            expectations = self._on_a_stalled_host(f"{phase}: ", expectations, broken, host)
            if before is not None:  # nothing but latency broke, on a stalled host: invalid, not fail
                before = judge(self.record.hypothesis, [*expectations, *host.expectations(f"{phase}: ", self.settings)],
                               evidence)
        self._steady.append(obs.start)
        self.record.expect(expectations, evidence)
        self.record.measure(**steady_measurements(obs), **({f"{phase}_unsettled": unsettled} if unsettled else {}),
                            **({f"{phase}_extended": extended} if extended else {}),
                            **({f"{phase}_remeasured": remeasured} if remeasured else {}),
                            **{f"{phase}_host": host.to_json()})
        if before is not None and before.status != "pass":
            verdict = Verdict(before.status, f"steady state did not hold before the fault, so none was "
                                             f"injected: {before.reason}", before.hypothesis,
                              before.expectations, before.evidence)
            self.record.conclude(verdict)
            raise VerdictReached(verdict)
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

    def begin_method(self, *, disrupts: bool = False) -> None:
        """The method has begun: a steady state that fails from here is a finding. ``disrupts``:
        it takes something away from the stack (a fault, a lost database), so the stack's recovery
        must be measured (``recover``, ``served_again``) before the steady state after."""
        self.phases.enter(Phase.METHOD, disrupts=disrupts)

    def inject(self, kind: str, target: str, **params: Any) -> Fault:
        self.begin_method(disrupts=True)
        fault = self.faults.inject(kind, target, **params)
        self.record.note(f"fault injected: {kind} {target}")
        self._biting.append(fault)
        return fault

    def db_load(self) -> DbLoadWindow:
        """A window over which the database's own statement counts are compared with users' reads."""
        return DbLoadWindow(self.stack.endpoints.database_dsn)

    def judge_db_load(self, window: DbLoadWindow, phase: str = "during") -> None:
        """No stampede: each user read cost the database at most ``max_db_reads_per_read`` statements."""
        self.probe.settle(window.end, self.settings.hang_s)
        samples = self.probe.snapshot(self.settings.hang_s)
        self.record.expect([window.expectation(phase, samples, self.settings.steady_state.max_db_reads_per_read,
                                               self._background_reads(window.start, window.end))])
        self.record.measure(**window.measurements(phase))

    def _background_reads(self, start: float, end: float) -> int:
        """API reads the background load had answered between monotonic ``start`` and ``end``."""
        if self.load is None or self.load.spawned_at is None:
            return 0
        time.sleep(FLUSH_S)  # each Locust process writes its samples every second
        to_epoch = time.time() - time.monotonic()
        window = LoadSamples.read(self.load.out_dir).window(start + to_epoch, end + to_epoch)
        return sum(1 for s in window.group("api") if s.ok)

    def track(self, fleet: Any) -> None:
        """Hold another sender's acknowledged readings to the ledger too (e.g. a flood's fleet)."""
        self.ledger = self.ledger.track(fleet)

    @property
    def fleets(self) -> list[Fleet]:
        """Every fleet the ledger holds to account: the scenario's own, then those tracked."""
        return [self.fleet, *self.ledger.tracked]

    def excuse(self, start: float, end: float) -> None:
        """Readings acknowledged between monotonic ``start`` and ``end`` may be lost by design:
        answers are not due to hold them (their loss is the ledger's to judge)."""
        self.ledger = self.ledger.excuse(start, end)

    def allow_loss(self, allowance: Allowance) -> None:
        """The loss the method may cause by design (a restore: checks.restore), judged over the
        ledger once it has settled; answers are not due to hold what it excuses."""
        self.ledger = self.ledger.allow(allowance)

    def fleet_record(self) -> FleetRecord:
        """The fleet's record as answers are judged against it: excused readings are not due."""
        spans = self.ledger.spans
        return self.fleet.record((lambda m: any(a <= m.acked_at <= b for a, b in spans)) if spans else None)

    def expect_never_stored(self, prefix: str, what: str) -> None:
        """Nothing under inverter ids starting with ``prefix`` may ever be stored (judged with the ledger)."""
        self.ledger = self.ledger.never(prefix, what)

    def recover(self, fault: Fault) -> Recovery:
        """Wait until the stack is steady again after the fault's rollback; judge it against the target."""
        if fault.record.ended is None:
            raise PhaseError(f"recovery from {fault.record.kind} {fault.record.target} measured while it still holds: "
                             f"roll it back first (leave its `with` block)")
        self.record.note(f"waiting for recovery (target {self.settings.recovery.target_s:g} s)")
        target = self.settings.recovery.target_s
        recovery = wait_for_recovery(self.probe, self.fleet.record, fault.ended, self.settings,
                                     ingest=ingest_of(self.fleet, self.stack.endpoints.database_dsn, fault.ended),
                                     waiting=lambda s: self.record.progress.step(f"{s:.0f}/{target:g} s"))
        recovering = self.probe.snapshot(self.settings.hang_s).window(fault.ended)
        self.record.expect([*recovery.expectations(), no_unanswered("recovering: ", recovering)])
        self.record.measure(**recovery.measurements())
        self.recovered()
        return recovery

    def served_again(self, since: float, deadline: float) -> float | None:
        """When users were served fresh, correct data again (a whole streak begun after ``since``),
        waiting until ``deadline`` (both monotonic) at most: the one wait every drill's recovery
        uses. The recovery is then measured, whatever it found (``None``: never)."""
        recovery = wait_for_recovery(self.probe, self.fleet_record, since, self.settings, deadline=deadline)
        self.recovered()
        return None if recovery.users_s is None else since + recovery.users_s

    def recovered(self) -> None:
        """The stack's recovery from the method has been measured (the steady state after may follow)."""
        self.phases.enter(Phase.RECOVERED)
        self._recovered_at = time.monotonic()

    def fault_window(self, fault: Fault, dependency: str | None = None, *, read_p95_ms: float | None = None,
                     read_error_rate: float | None = None) -> FaultWindow:
        """Judge how the stack answered while the fault was active (call once it is rolled back)."""
        window = fault_window(self.probe.snapshot(self.settings.hang_s), self.fleet_record(), fault.started,
                              fault.ended, dependency=dependency)
        expectations = window.expectations(self.settings, read_p95_ms=read_p95_ms, read_error_rate=read_error_rate)
        host = self.host_figures(fault.started, fault.ended)
        broken = [e for e in expectations if e.held is False]
        if broken and all(e.name in window.LATENCY for e in broken) and host.beyond(self.settings):
            expectations = self._on_a_stalled_host("during the fault: ", expectations, broken, host)
        self.record.expect(expectations,
                           window.evidence(samples=self.needs.samples_during_fault or self.needs.samples_per_window,
                                           acked=self.needs.acked_during_fault))
        self.record.measure(**window.measurements(), fault_host=host.to_json())
        return window

    def alerts(self, fault: Fault, *, fire: Sequence[str] = (), silent: Sequence[str] = (),
               scrapes: int = 3) -> None:
        """Judge the monitoring: the alerts ``fire`` must be notified during the fault (not before)
        and resolved once the stack recovered, ``silent`` never (call after ``recover``). On a
        stack without monitoring (``stack.monitoring``, ``--monitoring``) they are not judged, and
        results.json says so (``alerts_not_judged``); a scenario whose hypothesis needs them asks
        for a monitored stack (``@pytest.mark.stack(monitoring=True)``)."""
        if (monitoring := _monitoring(self.stack, self.record, fire=list(fire), silent=list(silent))) is None:
            return
        receiver, client = monitoring
        m = self.settings.monitoring
        window = AlertWindow(tuple(fire), tuple(silent), self._started or fault.started, fault.started, fault.ended,
                             self._recovered_at or fault.ended)
        alert_judge.wait_resolved(receiver, window, m)
        expectations, measurements = alert_judge.judge(receiver.notifications(), window, m, client.rule_names())
        self.record.expect(expectations, alert_judge.evidence(client, window.observed_from, window.began, scrapes))
        self.record.measure(**measurements)

    def verdict(self) -> Verdict:
        """The verdict on everything judged so far (call after the with-block: the ledger comes last).
        A fault of the method that never reached its condition makes it error, never pass. When all
        that failed is latency measured on a stalled host, the host's figures are the verdict's:
        ``invalid``, nothing blamed on the stack."""
        self.phases.enter(Phase.JUDGED)
        biting, self._biting = self._biting, []
        self.record.expect([condition_expectation(f.record.kind, f.record.target, f.record.condition) for f in biting])
        failed = [e for e in self.record.expectations if e.held is False and e.kind == "hypothesis"]
        if failed and all(e.name in self._excusable for e in failed):
            for prefix, host in self._stalled:
                self.record.expect(host.expectations(prefix, self.settings))
        verdict = judge(self.record.hypothesis, self.record.expectations, self.record.evidence)
        self.record.conclude(verdict)
        return verdict


def _monitoring(stack: Any, record: ScenarioRecord, **declared: list[str]) -> tuple[Any, alert_judge.Prometheus] | None:
    """The stack's alert receiver and Prometheus; None, said in the results, on a stack without
    monitoring: the alerts ``declared`` are then not judged."""
    receiver, prometheus = stack.alerts, stack.services.get("prometheus")
    if receiver is None or prometheus is None:
        why = "the stack has no monitoring (run with --monitoring, or set stack.monitoring): "
        record.measure(alerts_not_judged=why + ", ".join(f"{k} {v}" for k, v in declared.items()))
        return None
    return receiver, alert_judge.Prometheus(prometheus.address)


class LoadScenario:
    """A load test judged like a chaos scenario: the profile's load on a healthy stack, measured
    against the ops guide's baselines and alert thresholds, the stored baseline, and the ledger.

        scenario.steady()    # the weekly load: the whole run is one window
        scenario.ramp()      # the stress test: the ladder until a step breaks, then bisection to the knee
        scenario.verdict()
    """

    def __init__(self, stack: Stack, settings: Settings, record: ScenarioRecord, load: LoadTest, *,
                 store: BaselineStore | None = None, accept_baseline: bool = False, min_samples: int = 10,
                 run_id: str = "") -> None:
        self.stack = stack
        self.settings = settings
        self.record = record
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

    def steady(self) -> LoadResult:
        """Run the profile to its end and judge the whole run as one window."""
        self.record.note(f"load: the {self.load.profile.name} profile for {self.load.locust.run_s:g} s")
        with self.host.start(), self.load:
            self.load.wait()
        result = self.load.result
        assert result is not None
        judged = load_judge.window(result, self.settings, result.measured_from, result.measured_to,
                                   minimum=self.min_samples)
        self.record.expect(judged.expectations, judged.evidence)
        self.record.measure(load_profile=result.profile.name, **judged.measurements,
                            host_stall_share=self._host_stall(result.measured_from, result.measured_to))
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
        api = judged.measurements[f"step {k + 1}_load"].get("api", {})
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
        self.record.measure(
            load_profile=profile.name, capacity_rps=capacity, capacity_bracket_rps=found.bracket,
            knee_resolution=self.settings.load.knee_resolution,
            first_broken=({"step": first_broken["step"], "rate_rps": first_broken["rate_rps"],
                           "baselines": first_broken["broken"]} if first_broken else None),
            search_ended=found.ended, steps=[{k: v for k, v in s.items() if k != "judged"} for s in steps])
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
        stored, why_not = None, "no stress baseline is stored"
        if baseline is not None and comparable(figures, baseline):
            why_not = f"the stored stress baseline (run {baseline.get('run_id')}) had another traffic mix or step_s"
        elif baseline is not None and not baseline.get("capacity_rps"):
            why_not = f"the stored stress baseline (run {baseline.get('run_id')}) has no capacity"
        elif baseline is not None:
            stored = {"capacity_rps": baseline["capacity_rps"],
                      "capacity_bracket_rps": baseline.get("capacity_bracket_rps"),
                      "source": f"the stored stress baseline (run {baseline.get('run_id')}, {baseline.get('at')})"}
        if under is not None:  # a faulted capacity is never a baseline
            self.record.measure(**under_fault.compare(found.capacity, found.bracket, under, stored, why_not))
            return
        assert self.store is not None
        if stored is not None and found.capacity is not None and not self.accept_baseline:
            ratio = round(found.capacity / stored["capacity_rps"], 3)
            self.record.measure(capacity_vs_baseline={**stored, "ratio": ratio})
        elif baseline is not None and not self.accept_baseline:
            self.record.measure(capacity_not_compared=why_not)
        passed = judge(self.record.hypothesis, self.record.expectations, self.record.evidence).status == "pass"
        self.record.measure(baseline=self.store.record(figures, self.run_id, accept=self.accept_baseline,
                                                       passed=passed))

    def _judge_run(self, result: LoadResult, history: bool = True) -> None:
        self.record.expect([load_judge.db_expectation(result, self.settings)])
        ledger = settle(result.ledger, self.stack.endpoints.database_dsn, timeout_s=self.settings.recovery.target_s,
                        allow_duplicates=self.settings.ledger.allow_duplicates)
        self.record.expect(ledger.expectations(), first=True)
        self.record.measure(**ledger.measurements(), locust=result.locust_stats.get("entries", []),
                            db_statements=[{"query": t.query, "calls": t.calls, "mean_ms": round(t.mean_ms, 3)}
                                           for t in (result.db_times() or [])[:10]])
        if not history or self.store is None:
            return
        figures = load_judge.figures_for_history(result)
        passed = judge(self.record.hypothesis, self.record.expectations, self.record.evidence).status == "pass"
        baseline = self.store.baseline()
        if baseline is not None and not self.accept_baseline:
            load = self.settings.load
            if (why_not := comparable(figures, baseline)) is not None:
                self.record.measure(baseline_not_compared=why_not)
            else:
                self.record.expect(regressions(figures, baseline, Tolerance(load.regression_tolerance,
                                                                             load.regression_floor_ms,
                                                                             load.regression_floor_error_rate)))
        self.record.measure(baseline=self.store.record(figures, self.run_id, accept=self.accept_baseline,
                                                       passed=passed))

    def quiet(self, silent: Sequence[str], began: float) -> None:
        """Under load on a healthy stack, none of ``silent`` may page (since ``began``,
        time.monotonic()); not judged on a stack without monitoring (``alerts_not_judged``)."""
        if (monitoring := _monitoring(self.stack, self.record, silent=list(silent))) is None:
            return
        receiver, prometheus = monitoring
        notifications = receiver.notifications(began)
        self.record.expect(alert_judge.silence(notifications, silent, began, began, "the load's start"),
                           alert_judge.evidence(prometheus, began, time.monotonic(), 3, "under the load"))
        self.record.measure(alert_notifications=[n.to_json() for n in notifications])

    def alerts_follow_users(self, silent: Sequence[str], began: float) -> None:
        """After ``ramp()``: pages agree with what the ramp's users measured. While the steps stayed
        under the alert thresholds none of ``silent`` paged; the first step whose users were past
        one (p95 over the HTTP threshold, errors over the rate) paged (checks.alerts.follow_users)."""
        if (monitoring := _monitoring(self.stack, self.record, follow_users=list(silent))) is None:
            return
        receiver, prometheus = monitoring
        m = self.settings.monitoring
        if self.windows:  # a late page is still a page: wait as long as one may take
            time.sleep(max(0.0, self.windows[-1].end + alert_judge.fire_within_s(m) + m.window_s - time.time()))
        notifications = receiver.notifications(began)
        found, measured = alert_judge.follow_users(notifications, self.windows, self.settings.alerts, m, silent)
        self.record.expect(found, alert_judge.evidence(prometheus, began, time.monotonic(), 3, "under the ramp"))
        self.record.measure(**measured, alert_notifications=[n.to_json() for n in notifications])

    def verdict(self) -> Verdict:
        """A fault the load ran under (--under-fault) that never reached its condition makes it error."""
        self.record.expect([condition_expectation(r.kind, r.target, r.condition) for r in self.record.faults])
        verdict = judge(self.record.hypothesis, self.record.expectations, self.record.evidence)
        self.record.conclude(verdict)
        return verdict

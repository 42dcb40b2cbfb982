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

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from ..checks import alerts as alert_judge
from ..checks.alerts import AlertWindow
from ..checks import (FaultWindow, Observation, Recovery, fault_window, judge_answer, settle, steady_evidence,
                     steady_measurements, steady_state, ingest_of, wait_for_recovery)
from ..checks.dbload import DbLoadWindow
from ..checks.ledger import never_stored
from ..checks.timeline import timeline
from ..checks.steady import no_unanswered, no_wrong_answers, percentiles_only
from ..checks.validity import HostFigures
from ..config import Settings
from .ledger import Allowance, LedgerPolicy
from .phases import Phase, PhaseError, Phases
from ..faults import Fault, FaultInjector
from ..faults.conditions import condition_expectation
from ..host.pressure import PressureSampler
from ..load import LoadSamples, LoadTest
from ..load import judge as load_judge
from ..probes import Fleet, FleetRecord, Fleets, LiveFeed, Probe, Target
from ..report import ScenarioRecord
from ..stack import Stack
from ..verdict import Expectation, Verdict, VerdictReached, judge


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
        if (monitoring := monitoring_of(self.stack, self.record, fire=list(fire), silent=list(silent))) is None:
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


def monitoring_of(stack: Any, record: ScenarioRecord, **declared: list[str]) -> tuple[Any, alert_judge.Prometheus] | None:
    """The stack's alert receiver and Prometheus; None, said in the results, on a stack without
    monitoring: the alerts ``declared`` are then not judged."""
    receiver, prometheus = stack.alerts, stack.services.get("prometheus")
    if receiver is None or prometheus is None:
        why = "the stack has no monitoring (run with --monitoring, or set stack.monitoring): "
        record.measure(alerts_not_judged=why + ", ".join(f"{k} {v}" for k, v in declared.items()))
        return None
    return receiver, alert_judge.Prometheus(prometheus.address)

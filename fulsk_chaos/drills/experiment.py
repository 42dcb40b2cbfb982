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
from dataclasses import replace
from typing import Any, Sequence

from ..checks import alerts as alert_judge
from ..checks import blindspots
from ..checks.alerts import AlertWindow
from ..checks import FaultWindow, Recovery, fault_window, ingest_of, judge_answer, wait_for_recovery
from ..checks.dbload import DbLoadWindow
from ..checks.timeline import timeline
from ..checks.steady import no_unanswered, no_wrong_answers
from ..config import Settings
from ..faults import Fault, FaultInjector
from ..figures import BlindSpotFigures, LoadFigures, TimelineFigures
from ..host.pressure import PressureSampler
from ..load import LoadSamples, LoadTest
from ..load import judge as load_judge
from ..probes import Fleet, FleetRecord, LiveFeed, Probe
from ..report import ScenarioRecord
from ..stack import Stack
from .base import Drill
from .windows import SteadyWindows
from .instruments import Needs
from .phases import Phase, PhaseError

FLUSH_S = 1.5  # until the Locust processes have written a window's samples (they flush every second)


class Experiment(SteadyWindows, Drill):
    def __init__(self, stack: Stack, settings: Settings, record: ScenarioRecord, *, fleet: Fleet, probe: Probe,
                 feed: LiveFeed, faults: FaultInjector, needs: Needs = Needs(), load: LoadTest | None = None) -> None:
        super().__init__(stack, settings, record)
        self.fleet = fleet
        self.probe = probe
        self.feed = feed
        self.faults = faults
        self.needs = needs
        self.load = load  # background load (chaos under load): judged before and after each fault
        self._steady: list[float] = []  # steady windows' starts: the load's "before" and "after" start at them
        self._started: float | None = None
        self.host = PressureSampler()  # the host's own pressure, next to every window's figures

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
        closing = time.monotonic()
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
            self._record_blind_spots(judged, closing)
            if result is not None:
                self._judge_load(result)
            ledger = self.judge_ledger([self.fleet, *([result.ledger] if result is not None else [])])
            if result is not None:  # the background load's own share of the ledger
                load_acked = result.ledger.acked()
                self.record.measure(replace(ledger.figures(), load_acked=len(load_acked),
                                            load_lost=len(load_acked & set(ledger.lost))))

    def _record_timeline(self, judged, fleet: FleetRecord) -> None:
        """The run second by second, with the moments that matter on it (for the report's chart)."""
        assert self._started is not None
        series = timeline(judged, fleet, self.feed.arrivals(), self._started, time.monotonic())
        if self._recovered_at is not None:
            series["recovered_s"] = round(self._recovered_at - self._started, 2)
        self.record.measure(TimelineFigures(series))

    def _record_blind_spots(self, judged, closing: float) -> None:
        """Per fault (or the method, where it injected none), what users and inverters suffered
        beside what paged (checks.blindspots), up to ``closing``: when the observers stopped (what
        came after, the fleet's own stop included, is the harness's doing)."""
        faults = [(f"{f.kind} {f.target}", f.started, f.ended) for f in self.record.faults]
        spans = blindspots.spans(faults, self._method_began, self._recovered_at, closing)
        if not spans:
            return
        bound = alert_judge.fire_within_s(self.settings.monitoring)
        receiver = self.stack.alerts if self.stack.services.get("prometheus") is not None else None
        notifications = receiver.notifications() if receiver is not None else None
        messages = [m for f in self.fleets if hasattr(f, "messages") for m in f.messages()]  # not a load's ledger
        arrivals = self.feed.arrivals()
        rows = []
        for name, a, b in spans:
            found = blindspots.harms(judged, messages, arrivals, a, b, self.settings, observed_until=closing)
            paged = None if notifications is None else blindspots.pages(notifications, a, min(b + bound, closing))
            rows.append(blindspots.classify(name, found, paged, bound).to_json())
        self.record.measure(BlindSpotFigures(rows))

    def _judge_load(self, result) -> None:
        """Chaos under load: the ops guide's baselines before and after each fault, shown during it."""
        to_epoch = time.time() - time.monotonic()
        faults = [(f"{f.kind} {f.target}", f.started + to_epoch, f.ended + to_epoch if f.ended else None)
                  for f in self.record.faults]
        judged = load_judge.around_faults(result, self.settings, faults, [t + to_epoch for t in self._steady],
                                          self._recovered_at + to_epoch if self._recovered_at else None)
        self.record.expect(judged.expectations, judged.evidence)
        self.record.measure(LoadFigures(load_profile=result.profile.name), *judged.figures)

    def _warm_up(self) -> None:
        """Until the live feed is connected and carrying readings, bounded: a stack that never gets
        there is judged on what the first window sees."""
        deadline = time.monotonic() + 3 * self.settings.steady_state.window_s
        while time.monotonic() < deadline:
            if self.feed.arrivals() and self.fleet.acked():
                return
            time.sleep(0.05)

    # --- the method and its measurements ---------------------------------------------------------
    def inject(self, kind: str, target: str, **params: Any) -> Fault:
        self.begin_method(disrupts=True)
        fault = self.faults.inject(kind, target, **params)
        self.record.note(f"fault injected: {kind} {target}")
        self.must_bite(fault.record)
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
        self.record.measure(window.figures(phase))

    def _background_reads(self, start: float, end: float) -> int:
        """API reads the background load had answered between monotonic ``start`` and ``end``."""
        if self.load is None or self.load.spawned_at is None:
            return 0
        time.sleep(FLUSH_S)  # each Locust process writes its samples every second
        to_epoch = time.time() - time.monotonic()
        window = LoadSamples.read(self.load.out_dir).window(start + to_epoch, end + to_epoch)
        return sum(1 for s in window.group("api") if s.ok)

    @property
    def fleets(self) -> list[Fleet]:
        """Every fleet the ledger holds to account: the scenario's own, then those tracked."""
        return [self.fleet, *self.ledger.tracked]

    def fleet_record(self) -> FleetRecord:
        """The fleet's record as answers are judged against it: excused readings are not due."""
        spans = self.ledger.spans
        return self.fleet.record((lambda m: any(a <= m.acked_at <= b for a, b in spans)) if spans else None)

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
        self.record.measure(recovery.figures())
        self.recovered()
        return recovery

    def served_again(self, since: float, deadline: float) -> float | None:
        """When users were served fresh, correct data again (a whole streak begun after ``since``),
        waiting until ``deadline`` (both monotonic) at most: the one wait every drill's recovery
        uses. The recovery is then measured, whatever it found (``None``: never)."""
        recovery = wait_for_recovery(self.probe, self.fleet_record, since, self.settings, deadline=deadline)
        self.recovered()
        return None if recovery.users_s is None else since + recovery.users_s

    def fault_window(self, fault: Fault, dependency: str | None = None, *, read_p95_ms: float | None = None,
                     read_error_rate: float | None = None) -> FaultWindow:
        """Judge how the stack answered while the fault was active (call once it is rolled back)."""
        window = fault_window(self.probe.snapshot(self.settings.hang_s), self.fleet_record(), fault.started,
                              fault.ended, dependency=dependency)
        contract = self.stack.contract
        expectations = window.expectations(
            self.settings, read_p95_ms=read_p95_ms, read_error_rate=read_error_rate,
            health_skipped="" if contract.capabilities.dependency_health else
            f"the {contract.name} backend declares no per-dependency health (capabilities.dependency_health)")
        host = self.host_figures(fault.started, fault.ended)
        broken = [e for e in expectations if e.held is False]
        if broken and all(e.name in window.LATENCY for e in broken) and host.beyond(self.settings):
            expectations = self.on_a_stalled_host("during the fault: ", expectations, broken, host)
        self.record.expect(expectations,
                           window.evidence(samples=self.needs.samples_during_fault or self.needs.samples_per_window,
                                           acked=self.needs.acked_during_fault))
        self.record.measure(window.figures(host=host.to_json()))
        return window

    def alerts(self, fault: Fault, *, fire: Sequence[str] = (), silent: Sequence[str] = (),
               inhibited: dict[str, str] | None = None, scrapes: int = 3) -> None:
        """Judge the monitoring: the alerts ``fire`` must be notified during the fault (not before)
        and resolved once the stack recovered, ``silent`` never (call after ``recover``). On a
        stack without monitoring (``stack.monitoring``, ``--monitoring``) they are not judged, and
        results.json says so (``alerts_not_judged``); a scenario whose hypothesis needs them asks
        for a monitored stack (``@pytest.mark.stack(monitoring=True)``)."""
        if (monitoring := self.monitoring(fire=list(fire), silent=list(silent))) is None:
            return
        receiver, client = monitoring
        m = self.settings.monitoring
        rules = client.rules()
        missing = alert_judge.unexported(rules, fire, client.series_names())  # the backend cannot raise these
        window = AlertWindow(tuple(fire), tuple(silent), self._started or fault.started, fault.started, fault.ended,
                             self._recovered_at or fault.ended, tuple((inhibited or {}).items()))
        alert_judge.wait_resolved(receiver, replace(window, fire=tuple(a for a in fire if a not in missing)), m)
        fired = {target: client.fired(target, window.began, time.monotonic()) for target in (inhibited or {})}
        expectations, figures = alert_judge.judge(receiver.notifications(), window, m, set(rules), fired, missing)
        self.record.expect(expectations, alert_judge.evidence(client, window.observed_from, window.began, scrapes))
        self.record.measure(figures)

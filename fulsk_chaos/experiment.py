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
from dataclasses import dataclass
from typing import Any

from .checks import (FaultWindow, Observation, Recovery, fault_window, judge_answer, settle, steady_evidence,
                     steady_measurements, steady_state, wait_for_recovery)
from .checks.dbload import DbLoadWindow
from .checks.ledger import never_stored
from .checks.steady import no_unanswered, no_wrong_answers
from .config import Settings
from .faults import Fault, FaultInjector
from .probes import Fleet, Fleets, LiveFeed, Probe, Target
from .report import ScenarioRecord
from .stack import Stack
from .verdict import Expectation, Verdict, VerdictReached, judge


@dataclass(frozen=True)
class Needs:
    """The least evidence a verdict rests on; below it the verdict is ``error``, never ``pass``."""
    samples_per_window: int = 10   # probe samples of each target, and API answers, in each window
    acked_per_window: int = 10     # readings the broker acknowledged in each steady window
    judged_per_window: int = 5     # latest-reading answers that could be judged for freshness
    acked_during_fault: int = 10   # readings the broker acknowledged while the fault was active
    samples_during_fault: int | None = None  # API samples while it was active (default: samples_per_window)


HISTORY_S = 30.0  # how far back the probe asks for an inverter's readings, as a dashboard chart does
LISTING_PATH = "/api/inverters"  # its answer, when it is the API path probed, is judged for completeness


def user_targets(settings: Settings, inverter_ids: list[str]) -> list[Target]:
    """What the probe asks for through the frontend: /health, the API, and, for each inverter in
    turn, its latest reading and its recent history."""
    ids = list(inverter_ids)

    def latest(i: int) -> tuple[str, dict[str, Any]]:
        inverter = ids[i % len(ids)]
        return f"/api/inverters/{inverter}/latest", {"inverter_id": inverter}

    def history(i: int) -> tuple[str, dict[str, Any]]:
        inverter, end = ids[i % len(ids)], round(time.time(), 3)
        start = round(end - HISTORY_S, 3)
        return (f"/api/inverters/{inverter}/readings?from={start}&to={end}",
                {"inverter_id": inverter, "from": start, "to": end})
    listing = settings.probe.api_path == LISTING_PATH
    return [Target("health", "/health", json=True),
            Target("api", settings.probe.api_path, json=listing, meta={"listing": True} if listing else {}),
            Target("latest", latest, json=True), Target("history", history, json=True)]


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
                 feed: LiveFeed, faults: FaultInjector, needs: Needs = Needs()) -> None:
        self.stack = stack
        self.settings = settings
        self.record = record
        self.fleet = fleet
        self.probe = probe
        self.feed = feed
        self.faults = faults
        self.needs = needs
        self._method_started = False
        self._started: float | None = None
        self._tracked: list[Fleet] = []
        self._never_stored: list[tuple[str, str]] = []

    # --- the instruments -----------------------------------------------------------------------
    def __enter__(self) -> "Experiment":
        self._started = time.monotonic()
        self.feed.start()
        self.fleet.start()
        self.probe.start()
        self._warm_up()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.probe.stop()
        self.feed.stop()
        self.fleet.stop(settle_s=0 if exc_type else 5.0)
        if exc_type is None:
            # Wrong data is never acceptable, not during a fault nor while recovering from it.
            fleet = self.fleet.record()
            served = (judge_answer(s, fleet) for s in self.probe.snapshot(self.settings.hang_s).window(self._started))
            self.record.expect([no_wrong_answers("at any time: ", [s for s in served if s is not None])])
            dsn = self.stack.endpoints.database_dsn
            ledger = settle(Fleets(self.fleet, *self._tracked), dsn, timeout_s=self.settings.recovery.target_s,
                            allow_duplicates=self.settings.ledger.allow_duplicates)
            self.record.expect(ledger.expectations(), first=True)  # data loss is reported first
            self.record.measure(**ledger.measurements())
            self.record.expect([never_stored(dsn, prefix, what) for prefix, what in self._never_stored])

    def _warm_up(self) -> None:
        """Until the live feed is connected and carrying readings, bounded: a stack that never gets
        there is judged on what the first window sees."""
        deadline = time.monotonic() + 3 * self.settings.steady_state.window_s
        while time.monotonic() < deadline:
            if self.feed.arrivals() and self.fleet.acked():
                return
            time.sleep(0.05)

    # --- hypothesis, method, measurements ------------------------------------------------------
    def observe(self, phase: str) -> Observation:
        """Watch for the steady-state window, then wait until every request of it can be judged."""
        start = time.monotonic()
        time.sleep(self.settings.steady_state.window_s)
        end = time.monotonic()
        self.probe.settle(end, self.settings.hang_s)
        samples = self.probe.snapshot(self.settings.hang_s).window(start, end)
        return Observation(phase, start, end, samples, self.fleet.record(), self.feed.arrivals())

    def steady_state(self, phase: str, *, health: bool = True) -> list[Expectation]:
        """Judge the steady-state hypothesis over one window. Before any fault, a hypothesis that
        does not hold ends the scenario with its verdict: a fault proves nothing about a stack
        that was not steady to begin with. During a fault users may be held to it too, without
        /health (``health=False``), which should then report the faulted dependency."""
        obs = self.observe(phase)
        needs = self.needs
        expectations = steady_state(obs, self.settings, judge_health=health)
        evidence = steady_evidence(obs, samples=needs.samples_per_window, acked=needs.acked_per_window,
                                   judged=needs.judged_per_window)
        self.record.expect(expectations, evidence)
        self.record.measure(**steady_measurements(obs))
        if not self._method_started:
            before = judge(self.record.hypothesis, expectations, evidence)
            if before.status != "pass":
                verdict = Verdict(before.status, f"steady state did not hold before the fault, so none was "
                                                 f"injected: {before.reason}", before.hypothesis,
                                  before.expectations, before.evidence)
                self.record.conclude(verdict)
                raise VerdictReached(verdict)
        return expectations

    def begin_method(self) -> None:
        """The method has begun (faults follow): a steady state that fails from here is a finding."""
        self._method_started = True

    def inject(self, kind: str, target: str, **params: Any) -> Fault:
        self.begin_method()
        return self.faults.inject(kind, target, **params)

    def db_load(self) -> DbLoadWindow:
        """A window over which the database's own statement counts are compared with users' reads."""
        return DbLoadWindow(self.stack.endpoints.database_dsn)

    def judge_db_load(self, window: DbLoadWindow, phase: str = "during") -> None:
        """No stampede: each user read cost the database at most ``max_db_reads_per_read`` statements."""
        self.probe.settle(window.end, self.settings.hang_s)
        samples = self.probe.snapshot(self.settings.hang_s)
        self.record.expect([window.expectation(phase, samples, self.settings.steady_state.max_db_reads_per_read)])
        self.record.measure(**window.measurements(phase))

    def track(self, fleet: Fleet) -> None:
        """Hold another fleet's acknowledged readings to the ledger too (e.g. a flood's)."""
        self._tracked.append(fleet)

    def expect_never_stored(self, prefix: str, what: str) -> None:
        """Nothing under inverter ids starting with ``prefix`` may ever be stored (judged with the ledger)."""
        self._never_stored.append((prefix, what))

    def recover(self, fault: Fault) -> Recovery:
        """Wait until the stack is steady again after the fault's rollback; judge it against the target."""
        recovery = wait_for_recovery(self.probe, self.fleet, self.stack.endpoints.database_dsn, fault.ended,
                                     self.settings)
        recovering = self.probe.snapshot(self.settings.hang_s).window(fault.ended)
        self.record.expect([*recovery.expectations(), no_unanswered("recovering: ", recovering)])
        self.record.measure(**recovery.measurements())
        return recovery

    def fault_window(self, fault: Fault, dependency: str | None = None, *, read_p95_ms: float | None = None,
                     read_error_rate: float | None = None) -> FaultWindow:
        """Judge how the stack answered while the fault was active (call once it is rolled back)."""
        window = fault_window(self.probe.snapshot(self.settings.hang_s), self.fleet.record(), fault.started,
                              fault.ended, dependency=dependency)
        self.record.expect(window.expectations(self.settings, read_p95_ms=read_p95_ms,
                                               read_error_rate=read_error_rate),
                           window.evidence(samples=self.needs.samples_during_fault or self.needs.samples_per_window,
                                           acked=self.needs.acked_during_fault))
        self.record.measure(**window.measurements())
        return window

    def verdict(self) -> Verdict:
        """The verdict on everything judged so far (call after the with-block: the ledger comes last)."""
        verdict = judge(self.record.hypothesis, self.record.expectations, self.record.evidence)
        self.record.conclude(verdict)
        return verdict

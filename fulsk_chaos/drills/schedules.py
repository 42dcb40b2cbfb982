"""Fault schedules: the steps (inject a kind on a target, or heal), the faults the search may
draw (``menu``: from the kinds' own declarations), and the runner that applies them to a stack.
The search over them is drills.schedule_search.

A ``RuleBasedStateMachine`` (drills.schedule_search) injects and heals catalogue faults (those the provider supports)
while the scenario's fleet publishes and its probe watches. After every heal its invariant is
the scenario's: the stack is steady again within the recovery target, and every reading the
broker acknowledged before the heal is stored. Hypothesis shrinks a failing sequence to the
smallest one; real servers are not deterministic, so that sequence is then replayed several
times and reported with how often it failed, and with the commands that replay it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..checks import ingest_of, stored_keys, wait_for_recovery
from ..config import ScheduleProfile, Settings
from ..errors import FulskChaosError, InstrumentError
from ..faults import Fault, FaultInjector
from ..probes import Fleet, Probe
from ..stack import Stack
from .reach import FaultView, Moment, Roles
from .steps import HEAL, ScheduleStep

def menu(injector: FaultInjector, kinds: list[str] | tuple[str, ...] = (),
         only: list[str] | tuple[str, ...] = ()) -> list[ScheduleStep]:
    """Every (fault kind, target) the schedule may draw on this stack, optionally only ``kinds``
    and only on the targets ``only``: what each kind declares (FaultKind.targets, .drawn), nothing
    listed here."""
    stack, steps = injector.stack, []
    for name, kind in injector.catalogue.items():
        if not kind.drawn or (kinds and name not in kinds):
            continue
        steps += [ScheduleStep(name, t) for t in kind.targets(stack)
                  if (not only or t in only) and (kind.on_service is False or injector.supported(name, t))]
    if not steps:
        raise FulskChaosError(f"no fault to search among kinds {list(kinds)} on targets {list(only)}: the kinds are "
                              f"{', '.join(injector.catalogue)}")
    return steps


class ScheduleFailed(AssertionError):
    pass


@dataclass
class Trial:
    """One run of a schedule, step by step: what was done and what broke."""
    steps: list[ScheduleStep] = field(default_factory=list)
    failure: str | None = None
    failed_at: float | None = None  # time.monotonic() the failure was seen
    spoiled: str | None = None  # the harness's instrument failed: no evidence either way


class ScheduleRunner:
    """Applies steps to a stack and checks the invariant after each heal. Given ``watch``, it tells
    it how each step left the stack (a ``Moment``: drills.reach), for coverage and guidance."""

    def __init__(self, stack: Stack, settings: Settings, profile: ScheduleProfile, injector: FaultInjector,
                 fleet: Fleet, probe: Probe, watch: Callable[[Moment], None] | None = None) -> None:
        self.stack, self.settings, self.profile = stack, settings, profile
        self.injector, self.fleet, self.probe = injector, fleet, probe
        self.active: list[Fault] = []
        self.steps_run = 0
        self.watch = watch
        self.schedule: list[ScheduleStep] = []  # the steps of the schedule running, as taken
        self._partial_heal = False
        self._roles: Roles | None = None
        self._trial_started = time.monotonic()
        self._written_off: frozenset = frozenset()

    @property
    def roles(self) -> Roles:
        if self._roles is None:
            self._roles = Roles.of(self.stack)
        return self._roles

    def view(self, step: ScheduleStep) -> FaultView:
        return FaultView.of(self.stack, step.kind, step.target)

    def _views(self) -> tuple[FaultView, ...]:
        return tuple(FaultView.of(self.stack, f.record.kind, f.record.target) for f in self.active if f.active)

    def _tell(self, since: float, healed: FaultView | None = None, backlog: int | None = None) -> None:
        partial, self._partial_heal = self._partial_heal, healed is not None and bool(self.active)
        if self.watch is None:
            return
        answered = sum(s.ok for s in self.probe.snapshot(self.settings.hang_s).target("latest").window(since))
        self.watch(Moment(tuple(self.schedule), self._views(), self.roles, healed, backlog, answered, partial))

    def backlog(self, older_than_s: float = 1.0) -> int | None:
        """Readings the fleet sent over ``older_than_s`` ago that are not stored yet: what waits for
        ingest (None: the database did not say)."""
        cutoff = time.monotonic() - older_than_s
        stored = self._stored(timeout_s=1.0)
        if stored is None:
            return None
        return sum(1 for m in self.fleet.messages() if m.sent_at <= cutoff and m.key not in stored)

    def _stored(self, timeout_s: float) -> set | None:
        """The fleet's readings the database holds (None: it did not say - it may be what is faulted)."""
        try:
            return set(stored_keys(self.stack.endpoints.database_dsn, self.fleet.inverter_ids, timeout_s=timeout_s,
                                   contract=self.fleet.contract))
        except Exception:  # noqa: BLE001
            return None

    def applicable(self, steps: list[ScheduleStep]) -> list[ScheduleStep]:
        """The steps that can act on the stack as the active faults left it (no pause of a
        service another fault stopped: that is a mistake, not a fault)."""
        states: dict[str, str] = {}  # each service's state asked once
        return [s for s in steps if self.injector.applicable(s.kind, s.target, states)]

    def inject(self, step: ScheduleStep) -> None:
        params = self.injector.catalogue[step.kind].search_params
        since = time.monotonic()
        self.schedule.append(step)
        self.active.append(self.injector.inject(step.kind, step.target, **params))
        self.steps_run += 1
        time.sleep(self.profile.fault_s)
        self._tell(since)

    def heal(self) -> None:
        since = time.monotonic()
        fault = self.active.pop()
        healed = FaultView.of(self.stack, fault.record.kind, fault.record.target)
        backlog = self.backlog() if self.watch is not None else None  # what waits as the fault ends
        self.schedule.append(ScheduleStep(HEAL))
        fault.rollback()  # verified: a leftover raises
        self._tell(since, healed, backlog)
        if self.active:
            return  # other faults still active: nothing can be steady yet
        written_off = self._written_off
        recovery = wait_for_recovery(self.probe, lambda: self.fleet.record(lambda m: m.key in written_off),
                                     fault.ended, self.settings,
                                     ingest=ingest_of(self.fleet, self.stack.endpoints.database_dsn, fault.ended,
                                                      after=self._trial_started))
        if recovery.recovery_s is None or recovery.recovery_s > recovery.target_s:
            raise ScheduleFailed(f"not steady within {recovery.target_s:g} s of healing {fault.record.kind} "
                                 f"{fault.record.target}: users {_s(recovery.users_s)}, ingest backlog of "
                                 f"{recovery.backlog} {_s(recovery.ingest_s)}")

    def heal_all(self) -> None:
        while self.active:
            self.heal()

    def bites(self) -> tuple[int, list[str]]:
        """How many of the faults injected so far reached their condition, and those that did not
        (with what was measured). Overlapping faults can mask each other - a latency toxic on an
        edge whose server another fault froze shows no round trip at all - so a fault that did not
        bite is recorded, not judged; the search needs at least one that did."""
        entries = [(r, r.condition) for r in self.injector.journal if r.condition is not None]
        missed = [f"{r.kind}:{r.target} ({(c.get('measured') or {}).get('detail') or '; '.join(c.get('errors', []))})"
                  for r, c in entries if not c["reached"]]
        return sum(1 for _, c in entries if c["reached"]), missed

    def spoil(self, trial: Trial, exc: Exception) -> None:
        """The instrument failed mid-trial (the proxy hung): it is restarted first (undoing toxics
        through a hung proxy would wait on each), the trial says why it is no evidence, and
        ``reset`` follows."""
        trial.spoiled = str(exc)
        self.stack.restart_proxy(str(exc))

    def reset(self) -> None:
        """Between trials: every fault undone (unchecked) and the stack healed."""
        self.injector.rollback_all()
        self.active.clear()
        self.schedule.clear()
        self._partial_heal = False
        self.stack.heal()
        self._trial_started = time.monotonic()
        self._written_off = self._lost()

    def _lost(self) -> frozenset:
        """Readings acknowledged before this trial and not stored: an earlier trial lost them and
        was judged for it (and the ledger judges them at the end). Not written off, they would fail
        every later trial - the shrinker's smaller schedules and the replays - for what one did."""
        stored = self._stored(timeout_s=2.0)
        if stored is None:  # unknown: keep what was written off before
            return self._written_off
        return frozenset(self.fleet.acked(before=self._trial_started) - stored)

    def run(self, steps: list[ScheduleStep]) -> Trial:
        """Replay ``steps`` in order, as the search ran them; whatever is still active at the end
        is healed, newest first, and judged."""
        trial = Trial(list(steps))
        try:
            for step in steps:
                if not step.is_heal:
                    self.inject(step)
                elif self.active:
                    self.heal()
            self.heal_all()
        except InstrumentError as exc:
            self.spoil(trial, exc)
        except (ScheduleFailed, FulskChaosError) as exc:
            trial.failure = str(exc)
        finally:
            self.reset()
        return trial


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"

"""Fault schedules searched by Hypothesis: nobody can list every sequence of faults by hand.

A ``RuleBasedStateMachine`` injects and heals catalogue faults (those the provider supports)
while the scenario's fleet publishes and its probe watches. After every heal its invariant is
the scenario's: the stack is steady again within the recovery target, and every reading the
broker acknowledged before the heal is stored. Hypothesis shrinks a failing sequence to the
smallest one; real servers are not deterministic, so that sequence is then replayed several
times and reported with how often it failed, and with the commands that replay it.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, seed as seed_with, settings as hypothesis_settings, strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, precondition, rule

from .checks import ingest_of, wait_for_recovery
from .config import ScheduleProfile, Settings
from .errors import FulskChaosError
from .faults import Fault, FaultInjector
from .probes import Fleet, Probe
from .stack import Stack

HEAL = "heal"


@dataclass(frozen=True)
class Step:
    """One action of a schedule: inject ``kind`` on ``target``, or heal (``heal``: undo the fault
    injected last). Heals are steps too: overlapping faults fail differently from the same
    faults one after another, and a replay must repeat what the search did."""
    kind: str
    target: str = ""

    def __str__(self) -> str:
        return HEAL if self.is_heal else f"{self.kind}:{self.target}"

    @property
    def is_heal(self) -> bool:
        return self.kind == HEAL

    @classmethod
    def parse(cls, text: str) -> "Step":
        if text.strip() == HEAL:
            return cls(HEAL)
        kind, sep, target = text.strip().partition(":")
        if not sep or not kind or not target:
            raise FulskChaosError(f"a schedule step is KIND:TARGET (e.g. kill:backend) or {HEAL}, got {text!r}")
        return cls(kind, target)


def menu(injector: FaultInjector, kinds: list[str] | tuple[str, ...] = (),
         only: list[str] | tuple[str, ...] = ()) -> list[Step]:
    """Every (fault kind, target) the schedule may draw on this stack, optionally only ``kinds``
    and only on the targets ``only``: what each kind declares (FaultKind.targets, .drawn), nothing
    listed here."""
    stack, steps = injector.stack, []
    for name, kind in injector.catalogue.items():
        if not kind.drawn or (kinds and name not in kinds):
            continue
        steps += [Step(name, t) for t in kind.targets(stack)
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
    steps: list[Step] = field(default_factory=list)
    failure: str | None = None


class Runner:
    """Applies steps to a stack and checks the invariant after each heal."""

    def __init__(self, stack: Stack, settings: Settings, profile: ScheduleProfile, injector: FaultInjector,
                 fleet: Fleet, probe: Probe) -> None:
        self.stack, self.settings, self.profile = stack, settings, profile
        self.injector, self.fleet, self.probe = injector, fleet, probe
        self.active: list[Fault] = []
        self.steps_run = 0

    def applicable(self, steps: list[Step]) -> list[Step]:
        """The steps that can act on the stack as the active faults left it (no pause of a
        service another fault stopped: that is a mistake, not a fault)."""
        states: dict[str, str] = {}  # each service's state asked once
        return [s for s in steps if self.injector.applicable(s.kind, s.target, states)]

    def inject(self, step: Step) -> None:
        params = self.injector.catalogue[step.kind].search_params
        self.active.append(self.injector.inject(step.kind, step.target, **params))
        self.steps_run += 1
        time.sleep(self.profile.fault_s)

    def heal(self) -> None:
        fault = self.active.pop()
        fault.rollback()  # verified: a leftover raises
        if self.active:
            return  # other faults still active: nothing can be steady yet
        recovery = wait_for_recovery(self.probe, self.fleet.record, fault.ended, self.settings,
                                     ingest=ingest_of(self.fleet, self.stack.endpoints.database_dsn, fault.ended))
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

    def reset(self) -> None:
        """Between trials: every fault undone (unchecked) and the stack healed."""
        self.injector.rollback_all()
        self.active.clear()
        self.stack.heal()

    def run(self, steps: list[Step]) -> Trial:
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
        except (ScheduleFailed, FulskChaosError) as exc:
            trial.failure = str(exc)
        finally:
            self.reset()
        return trial


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def machine_for(runner: Runner, steps: list[Step], max_active: int, trials: list[Trial]) -> type:
    """The state machine class for one search (Hypothesis instantiates it once per example)."""

    class FaultSchedule(RuleBasedStateMachine):
        @initialize(step=st.sampled_from(steps))
        def start(self, step: Step) -> None:
            """Every schedule begins with a fault: an empty one proves nothing."""
            runner.reset()
            self.trial = Trial()
            trials.append(self.trial)
            self.trial.steps.append(step)
            runner.inject(step)

        @precondition(lambda self: len(runner.active) < max_active and bool(runner.applicable(steps)))
        @rule(data=st.data())
        def inject(self, data: st.DataObject) -> None:
            step = data.draw(st.sampled_from(runner.applicable(steps)), label="step")
            self.trial.steps.append(step)
            runner.inject(step)

        @precondition(lambda self: bool(runner.active))
        @rule()
        def heal(self) -> None:
            self.trial.steps.append(Step(HEAL))
            try:
                runner.heal()
            except (ScheduleFailed, FulskChaosError) as exc:
                self.trial.failure = str(exc)
                raise

        def teardown(self) -> None:
            try:
                if self.trial.failure is None:
                    runner.heal_all()  # whatever the example left active is healed and judged too
            except (ScheduleFailed, FulskChaosError) as exc:
                self.trial.failure = str(exc)
                raise
            finally:
                runner.reset()

    return FaultSchedule


@dataclass
class SearchResult:
    profile: str
    seed: int
    examples: int
    steps_run: int
    minimal: list[Step] | None = None   # the shrunk failing schedule, if one was found
    failure: str | None = None
    replays: int = 0
    replay_failures: int = 0
    replay_command: str = ""
    search_command: str = ""
    faults_reached: int = 0  # faults that reached their condition (Runner.bites)
    faults_not_reached: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "seed": self.seed, "examples": self.examples, "steps_run": self.steps_run,
                "minimal_failing_schedule": [str(s) for s in self.minimal] if self.minimal else None,
                "failure": self.failure, "replays": self.replays, "replay_failures": self.replay_failures,
                "replay_command": self.replay_command, "search_command": self.search_command,
                "faults_reached_condition": self.faults_reached, "faults_not_reached": self.faults_not_reached}


def search(runner: Runner, profile_name: str, seed: int, command: Callable[[dict[str, str]], str]) -> SearchResult:
    """Search for a failing schedule; shrink it; confirm it by replaying; say how to replay it."""
    profile = runner.profile
    steps = menu(runner.injector, profile.kinds, profile.targets)
    trials: list[Trial] = []
    machine = machine_for(runner, steps, profile.max_active, trials)
    result = SearchResult(profile_name, seed, 0, 0, search_command=command({"--schedule-seed": str(seed)}))
    settings = hypothesis_settings(
        max_examples=profile.max_examples, stateful_step_count=profile.max_steps, deadline=None, database=None,
        derandomize=False, suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
    try:
        seed_with(seed)(get_state_machine_test(machine, settings=settings))()
    except (ScheduleFailed, FulskChaosError, Flaky) as exc:
        failing = [t for t in trials if t.failure]
        minimal = min(failing, key=lambda t: len(t.steps)) if failing else None
        result.minimal = minimal.steps if minimal else None
        result.failure = minimal.failure if minimal else str(exc).splitlines()[0]
    result.examples = len(trials)
    result.steps_run = runner.steps_run
    result.faults_reached, result.faults_not_reached = runner.bites()
    if result.minimal:
        result.replay_command = command({"--schedule-replay": ",".join(str(s) for s in result.minimal)})
        for _ in range(profile.replays):
            result.replays += 1
            result.replay_failures += runner.run(result.minimal).failure is not None
    return result


def format_command(base: list[str], options: dict[str, str]) -> str:
    return " ".join(shlex.quote(a) for a in [*base, *(x for kv in options.items() for x in kv)])

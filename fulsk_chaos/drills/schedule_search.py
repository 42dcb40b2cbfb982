"""The fault-schedule search, as an experiment's method (``run``): Hypothesis' stateful testing
over the schedule runner (drills.schedules), seeded, shrinking a failure to the smallest
schedule, replaying it, and printing the commands that replay it and search again.

    with experiment:
        experiment.steady_state("before")
        schedule_search.run(experiment, options)   # each heal waits for the recovery
        experiment.steady_state("after")
    experiment.verdict()
"""
from __future__ import annotations

import itertools
import random
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, seed as seed_with, settings as hypothesis_settings, strategies as st
from hypothesis import reject, target as hypothesis_target
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, precondition, rule

from ..config import ScheduleProfile
from ..errors import FulskChaosError, InstrumentError
from ..figures import ScheduleFigures
from ..verdict import Evidence, none_of
from . import corpus as corpus_module
from .experiment import Experiment
from .guide import Exploration, Reached
from .reach import ReachCatalogue
from .states import catalogue as reach_catalogue
from .schedules import HEAL, ScheduleFailed, ScheduleRunner, ScheduleStep, Trial, menu
from .search_result import SearchResult, coverage_lines, found

PERCENT = 100


def machine_for(runner: ScheduleRunner, steps: list[ScheduleStep], max_active: int, trials: list[Trial],
                exploration: Exploration, deadline: float | None = None) -> type:
    """The state machine class for one search (Hypothesis instantiates it once per example).

    One rule acts: it heals or injects. Unguided, a heal and an injection are as likely (as two
    rules were); guided, the exploration narrows the choice (drills.guide) and Hypothesis draws
    within it. Every example ends by giving Hypothesis its best score per reachable state."""

    def options() -> list[ScheduleStep]:
        return runner.applicable(steps) if len(runner.active) < max_active else []

    order = [*steps, ScheduleStep(HEAL)]

    def pick(data: st.DataObject, among: list[ScheduleStep]) -> ScheduleStep:
        """One of ``among``: the first at or after a drawn place on the whole menu. The draw's shape
        never changes (which options there are depends on the stack and on what the search
        reached, and Hypothesis refuses a replayed example whose draws changed shape), and a step
        keeps its identity when the shrinker deletes the steps before it."""
        place, allowed = data.draw(st.integers(0, len(order) - 1), label="step"), set(among)
        return next(order[(place + k) % len(order)] for k in range(len(order)) if order[(place + k) % len(order)] in allowed)

    class FaultSchedule(RuleBasedStateMachine):
        trial: Trial | None = None

        @initialize(data=st.data())
        def start(self, data: st.DataObject) -> None:
            """Every schedule begins with a fault: an empty one proves nothing."""
            runner.reset()
            guided = data.draw(st.integers(0, PERCENT - 1), label="steer") < exploration.guidance * PERCENT
            exploration.begin(runner.roles, guided=guided)
            self.trial = Trial()
            trials.append(self.trial)
            self._inject(pick(data, exploration.preferred(steps, runner.view)))

        def _inject(self, step: ScheduleStep) -> None:
            assert self.trial is not None
            self.trial.steps.append(step)
            try:
                runner.inject(step)
            except InstrumentError as exc:
                self._spoiled(exc)

        def _spoiled(self, exc: InstrumentError) -> None:
            """No evidence either way: the instrument is restarted, and Hypothesis drops the
            example (it neither fails nor counts toward the schedules that passed)."""
            assert self.trial is not None
            runner.spoil(self.trial, exc)
            reject()

        @precondition(lambda self: bool(runner.active) or bool(options()))
        @rule(data=st.data())
        def act(self, data: st.DataObject) -> None:
            injections = options()
            heal = data.draw(st.booleans(), label="heal")  # unguided: a heal as likely as an injection
            if exploration.guided:
                choice = pick(data, exploration.preferred(
                    injections + ([ScheduleStep(HEAL)] if runner.active else []), runner.view))
            else:
                chosen = pick(data, injections or steps)  # drawn either way: the draws keep their shape
                choice = ScheduleStep(HEAL) if runner.active and (heal or not injections) else chosen
            if not choice.is_heal:
                self._inject(choice)
                return
            assert self.trial is not None
            self.trial.steps.append(choice)
            try:
                runner.heal()
            except InstrumentError as exc:
                self._spoiled(exc)
            except (ScheduleFailed, FulskChaosError) as exc:
                self.trial.failure, self.trial.failed_at = str(exc), time.monotonic()
                raise

        def teardown(self) -> None:
            if self.trial is None:
                return  # rejected before it began
            try:
                if self.trial.failure is None and self.trial.spoiled is None:
                    runner.heal_all()  # whatever the example left active is healed and judged too
            except InstrumentError as exc:
                runner.spoil(self.trial, exc)
            except (ScheduleFailed, FulskChaosError) as exc:
                self.trial.failure, self.trial.failed_at = str(exc), time.monotonic()
                raise
            finally:
                runner.reset()
                for name, score in exploration.scores().items():
                    hypothesis_target(score, label=name)

    return FaultSchedule


def search(runner: ScheduleRunner, profile_name: str, seed: int, command: Callable[[dict[str, str]], str], *,
           reach: ReachCatalogue | None = None, budget_s: float | None = None,
           steps: list[ScheduleStep] | None = None,
           on_reached: Callable[[Reached, int], None] | None = None) -> SearchResult:
    """Search for a failing schedule, steered toward the reachable states not reached yet (as
    much as the profile's ``guidance`` says), within ``budget_s`` if given, among ``steps`` (default:
    the profile's menu of the stack's catalogue); shrink a failure,
    replay it to measure how often it reproduces; say how to replay it."""
    profile = runner.profile
    steps = list(steps if steps is not None else menu(runner.injector, profile.kinds, profile.targets))
    # The first schedule Hypothesis tries is its simplest: the menu's first steps. Ordered by the
    # seed, that schedule differs from one seed to the next, as every other does.
    random.Random(seed).shuffle(steps)
    trials: list[Trial] = []
    exploration = Exploration(reach if reach is not None else reach_catalogue(), profile.guidance, offset=seed,
                              on_reached=on_reached)
    runner.watch = exploration.observe
    t0 = time.monotonic()
    deadline = None if budget_s is None else t0 + budget_s
    machine = machine_for(runner, steps, profile.max_active, trials, exploration, deadline)
    result = SearchResult(profile_name, seed, 0, 0, search_command=command({"--schedule-seed": str(seed)}),
                          budget_s=budget_s)
    settings = hypothesis_settings(
        max_examples=profile.max_examples, stateful_step_count=profile.max_steps, deadline=None, database=None,
        derandomize=False, suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, *([Phase.shrink] if profile.shrink else [])])
    try:
        # With a budget, rounds of max_examples (seed, seed + 1, ...) until it is spent or one
        # fails (the round under way ends first); the exploration goes on from round to round.
        for round_ in itertools.count():
            try:
                seed_with(seed + round_)(get_state_machine_test(machine, settings=settings))()
            except Flaky:
                if any(t.failure for t in trials):
                    raise
                # Hypothesis replayed an example whose draws the stack (or what the search had
                # reached meanwhile) changed: the round ends, nothing failed; the next one starts
                result.flaky_rounds += 1
            if deadline is None or time.monotonic() >= deadline:
                break
    except (ScheduleFailed, FulskChaosError, Flaky) as exc:
        failing = [t for t in trials if t.failure]
        minimal = min(failing, key=lambda t: len(t.steps)) if failing else None
        result.minimal = minimal.steps if minimal else None
        result.failure = minimal.failure if minimal else str(exc).splitlines()[0]
        if failing:
            result.found_after = trials.index(failing[0]) + 1
            result.found_at_s = (failing[0].failed_at or time.monotonic()) - t0
    finally:
        runner.watch = None
    result.examples = len(trials)
    result.spoiled = sum(1 for t in trials if t.spoiled)
    result.steps_run = runner.steps_run
    result.faults_reached, result.faults_not_reached = runner.bites()
    result.coverage = exploration.to_json()
    if result.minimal:
        result.replay_command = command({"--schedule-replay": ",".join(str(s) for s in result.minimal)})
        for _ in range(profile.replays):
            replayed = runner.run(result.minimal)
            if replayed.spoiled:  # no evidence: "k of n" counts the replays that gave some
                continue
            result.replays += 1
            result.replay_failures += replayed.failure is not None
    result.elapsed_s = time.monotonic() - t0
    return result


def format_command(base: list[str], options: dict[str, str]) -> str:
    return " ".join(shlex.quote(a) for a in [*base, *(x for kv in options.items() for x in kv)])


@dataclass(frozen=True)
class ScheduleOptions:
    """What the run asks of the search: its profile, its seed, a schedule to replay instead (the
    steps, or a corpus file), the command line a replay is printed with, its time budget, where
    the corpus goes, and the run's origin a corpus entry records (provider, backend)."""
    profile_name: str
    profile: ScheduleProfile
    seed: int
    replay: str | None
    command: list[str]
    budget_s: float | None = None
    corpus_dir: Path | None = None
    origin: dict[str, Any] = field(default_factory=dict)

    def replay_steps(self) -> list[ScheduleStep]:
        assert self.replay
        if self.replay.endswith(".json"):
            return [ScheduleStep.parse(s) for s in corpus_module.read(Path(self.replay)).steps]
        return [ScheduleStep.parse(s) for s in self.replay.split(",")]


def run(experiment: Experiment, options: ScheduleOptions) -> SearchResult | Trial:
    """The method: search (or replay) fault schedules, each heal waiting for the stack's recovery;
    judged into the experiment (a failing schedule that reproduces, the steps run, the faults
    that bit), with the coverage of the reachable states and the corpus it found."""
    experiment.begin_method(disrupts=True)
    reach = reach_catalogue(experiment.settings.reach)
    runner = ScheduleRunner(experiment.stack, experiment.settings, options.profile, experiment.faults,
                            experiment.fleet, experiment.probe)
    record = experiment.record
    if options.replay:
        steps = options.replay_steps()
        exploration = Exploration(reach)
        exploration.begin(runner.roles, guided=False)
        runner.watch = exploration.observe
        trial = runner.run(steps)
        if trial.spoiled:  # the instrument failed: no evidence either way
            raise InstrumentError(f"the replay proves nothing: {trial.spoiled}")
        bit, missed = runner.bites()
        record.measure(ScheduleFigures({"replayed": [str(s) for s in steps], "failure": trial.failure,
                                        "faults_reached_condition": bit, "faults_not_reached": missed},
                                       coverage=exploration.to_json()))
        record.expect([none_of("replayed schedule failed", int(trial.failure is not None),
                               evidence={"steps": len(steps)}, detail=trial.failure or "")],
                      [Evidence("schedule steps run", runner.steps_run, 1),
                       Evidence("schedule faults that reached their condition", bit, 1)])
        experiment.recovered()  # after each heal the runner waited for it: a schedule that never recovered failed
        return trial
    result = search(runner, options.profile_name, options.seed, lambda extra: format_command(options.command, extra),
                    reach=reach, budget_s=options.budget_s,
                    on_reached=lambda state, n: record.progress.phase(
                        f"schedule search: {n} of {len(reach)} states reached ({state.name}, schedule {state.example}, "
                        f"{state.at_s:.0f} s)"))
    origin = {"seed": result.seed, "profile": result.profile, "commit": corpus_module.project_commit(), **options.origin}
    kept = found(result, origin)
    written = [e.write(options.corpus_dir) for e in kept] if options.corpus_dir is not None else []
    record.measure(ScheduleFigures(result.to_json(), coverage=result.coverage, corpus=[e.to_json() for e in kept]))
    print(coverage_lines(result, written))
    detail = ""
    if result.minimal:
        detail = (f"smallest failing schedule: {', '.join(map(str, result.minimal))} "
                  f"(reproduces {result.reproduced}): {result.failure}; replay: {result.replay_command}")
        print(f"\nfault schedule failed (reproduces {result.reproduced}); replay it with:\n  {result.replay_command}\n"
              f"search again with:\n  {result.search_command}")
    counted = result.minimal is not None and (not result.nondeterministic or options.profile.count_nondeterministic)
    if result.nondeterministic and not counted:
        detail = "nondeterministic, not counted ([schedules.NAME] count_nondeterministic): " + detail
    record.expect([none_of("failing fault schedules", int(counted),
                           evidence={"examples": result.examples, "seed": result.seed,
                                     "reproduced": result.reproduced or None}, detail=detail)],
                  [Evidence("schedule steps run", result.steps_run, 1),
                   Evidence("schedule faults that reached their condition", result.faults_reached, 1)])
    experiment.recovered()
    return result

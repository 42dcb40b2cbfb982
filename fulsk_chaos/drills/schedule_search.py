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

import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, seed as seed_with, settings as hypothesis_settings, strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, precondition, rule

from ..config import ScheduleProfile
from ..errors import FulskChaosError
from ..figures import ScheduleFigures
from ..verdict import Evidence, none_of
from .experiment import Experiment
from .schedules import HEAL, ScheduleFailed, ScheduleRunner, ScheduleStep, Trial, menu


def machine_for(runner: ScheduleRunner, steps: list[ScheduleStep], max_active: int, trials: list[Trial]) -> type:
    """The state machine class for one search (Hypothesis instantiates it once per example)."""

    class FaultSchedule(RuleBasedStateMachine):
        @initialize(step=st.sampled_from(steps))
        def start(self, step: ScheduleStep) -> None:
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
            self.trial.steps.append(ScheduleStep(HEAL))
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
    minimal: list[ScheduleStep] | None = None   # the shrunk failing schedule, if one was found
    failure: str | None = None
    replays: int = 0
    replay_failures: int = 0
    replay_command: str = ""
    search_command: str = ""
    faults_reached: int = 0  # faults that reached their condition (ScheduleRunner.bites)
    faults_not_reached: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "seed": self.seed, "examples": self.examples, "steps_run": self.steps_run,
                "minimal_failing_schedule": [str(s) for s in self.minimal] if self.minimal else None,
                "failure": self.failure, "replays": self.replays, "replay_failures": self.replay_failures,
                "replay_command": self.replay_command, "search_command": self.search_command,
                "faults_reached_condition": self.faults_reached, "faults_not_reached": self.faults_not_reached}


def search(runner: ScheduleRunner, profile_name: str, seed: int, command: Callable[[dict[str, str]], str]) -> SearchResult:
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


@dataclass(frozen=True)
class ScheduleOptions:
    """What the run asks of the search: its profile, its seed, a schedule to replay instead, and
    the command line a replay is printed with."""
    profile_name: str
    profile: ScheduleProfile
    seed: int
    replay: str | None
    command: list[str]


def run(experiment: Experiment, options: ScheduleOptions) -> SearchResult | Trial:
    """The method: search (or replay) fault schedules, each heal waiting for the stack's recovery;
    judged into the experiment (a failing schedule, the steps run, the faults that bit)."""
    experiment.begin_method(disrupts=True)
    runner = ScheduleRunner(experiment.stack, experiment.settings, options.profile, experiment.faults,
                            experiment.fleet, experiment.probe)
    record = experiment.record
    if options.replay:
        steps = [ScheduleStep.parse(s) for s in options.replay.split(",")]
        trial = runner.run(steps)
        bit, missed = runner.bites()
        record.measure(ScheduleFigures({"replayed": [str(s) for s in steps], "failure": trial.failure,
                                        "faults_reached_condition": bit, "faults_not_reached": missed}))
        record.expect([none_of("replayed schedule failed", int(trial.failure is not None),
                               evidence={"steps": len(steps)}, detail=trial.failure or "")],
                      [Evidence("schedule steps run", runner.steps_run, 1),
                       Evidence("schedule faults that reached their condition", bit, 1)])
        experiment.recovered()  # after each heal the runner waited for it: a schedule that never recovered failed
        return trial
    result = search(runner, options.profile_name, options.seed, lambda extra: format_command(options.command, extra))
    record.measure(ScheduleFigures(result.to_json()))
    detail = ""
    if result.minimal:
        detail = (f"smallest failing schedule: {', '.join(map(str, result.minimal))} "
                  f"(failed {result.replay_failures} of {result.replays} replays): {result.failure}; "
                  f"replay: {result.replay_command}")
        print(f"\nfault schedule failed; replay it with:\n  {result.replay_command}\n"
              f"search again with:\n  {result.search_command}")
    record.expect([none_of("failing fault schedules", int(result.minimal is not None),
                           evidence={"examples": result.examples, "seed": result.seed}, detail=detail)],
                  [Evidence("schedule steps run", result.steps_run, 1),
                   Evidence("schedule faults that reached their condition", result.faults_reached, 1)])
    experiment.recovered()
    return result

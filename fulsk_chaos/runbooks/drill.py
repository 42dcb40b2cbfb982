"""Runbook drills: the runbook's trigger created on the stack while the fleet writes and users
read, its steps run as documented, and the recovery judged with numbers.

    with experiment:
        experiment.steady_state("before")
        run = RunbookDrill(experiment).run(runbook, case)   # trigger, steps, time to recover
        experiment.steady_state("after")
    experiment.verdict()                                     # ledger: nothing acknowledged lost

The time to recover runs from the trigger to the later of: the runbook's last step, and users
served fresh, correct data again for a whole streak. Steps that fail, and drift the runbook file
does not correct, fail the verdict; drift it corrects is reported with what the guide should say.
"""
from __future__ import annotations

import contextlib
import os
import time
from importlib import import_module
from typing import Any, Callable, ContextManager, Iterator

from ..figures import RecoveryFigures, RunbookFigures
from ..drills.experiment import Experiment
from ..verdict import Expectation, at_most, none_of
from .model import Runbook, Trigger
from .runner import Runner, RunbookRun

Condition = Callable[["RunbookDrill", Trigger], ContextManager[dict[str, str]]]
Check = Callable[["RunbookDrill", RunbookRun, Trigger], list[Expectation]]
CONDITIONS: dict[str, Condition] = {}
CHECKS: dict[str, Check] = {}


def condition(name: str) -> Callable[[Condition], Condition]:
    def register(fn: Condition) -> Condition:
        CONDITIONS[name] = fn
        return fn
    return register


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn
    return register


TRIGGER_BITES_S = 10.0  # a trigger fault reaches its condition within this, or the runbook starts anyway


def hypothesis(runbook: Runbook, trigger: Trigger) -> str:
    return (f"The ops guide's '{runbook.title}' runbook, run step by step as documented when "
            f"{runbook.when[0].lower() + runbook.when[1:]} ({trigger.name}), brings the stack back within "
            f"{runbook.target_s:g} s: users are served fresh, correct data again, nothing acknowledged is lost or "
            f"stored twice; every documented command exists and has its effect, or the runbook file carries "
            f"its correction.")


def steps_judged(run: RunbookRun) -> list[Expectation]:
    """A run's steps: none failed with nothing to fall back on, no drift the runbook file does not correct."""
    failed, unknown = run.failed_steps, [s for s in run.drift if not s.known_drift]
    return [none_of("runbook steps that failed", len(failed), evidence={"steps": len(run.steps)},
                    detail="; ".join(f"{s.step.name}: {s.attempts[-1].failure}" for s in failed)),
            none_of("drift from the guide that the runbook file does not correct", len(unknown),
                    detail="; ".join(f"{s.step.name}: {s.drift}" for s in unknown))]


def run_figures(run: RunbookRun, trigger: Trigger, onset: float, users_at: float | None,
                **more: Any) -> RunbookFigures:
    runbook = run.runbook
    return RunbookFigures(
        runbook=runbook.name, runbook_title=runbook.title, case=trigger.case, provider=run.provider,
        runbook_s=(run.ended or onset) - onset, users_back_s=None if users_at is None else users_at - onset,
        drift=[{"step": s.step.name, "documented": s.attempts[0].documented, "why": s.drift,
                "corrected": s.known_drift, "guide_should_say": s.step.corrected.note if s.step.corrected else None}
               for s in run.drift], findings=run.findings, **more)


class RunbookDrill:
    def __init__(self, experiment: Experiment, log: Callable[[str], None] = lambda line: None,
                 load_dir: os.PathLike | None = None) -> None:
        self.experiment = experiment
        self.load_dir = load_dir  # where a load the trigger runs writes its files (the high-load condition)
        self.load: Any = None  # that load (a LoadTest), and its window before the first step (time.time())
        self.load_before: tuple[float, float] | None = None
        self.stack = experiment.stack
        self.settings = experiment.settings
        self.log = log
        self.trigger_evidence: list[Expectation] = []  # that the trigger took effect: a validity condition
        self.env: dict[str, str] = {}  # what the trigger gave the runbook's commands (e.g. BACKUP_DIR)
        self.intruder: Any = None  # the intrusion condition's (an intrusion.Intruder)
        self.runbook: Runbook | None = None

    def run(self, runbook: Runbook, case: str) -> RunbookRun:
        trigger = runbook.trigger(case)
        runbook = runbook.for_case(case)
        self.runbook = runbook
        exp = self.experiment
        exp.begin_method(disrupts=True)  # an incident: the recovery is measured (_users_back)
        with self._trigger(trigger) as env:
            self.env = env
            onset = time.monotonic()
            run = Runner.for_stack(self.stack, env, self.log).run(runbook, t0=onset)
            users_at = self._users_back(onset, run)
            checked = [e for name in runbook.checks for e in CHECKS[name](self, run, trigger)]
        recovered_s = None if users_at is None else max(users_at, run.ended or onset) - onset
        expectations = [
            *self.trigger_evidence,
            *steps_judged(run),
            at_most(f"time to recover ({runbook.title})", recovered_s if recovered_s is not None else float("inf"),
                    runbook.target_s, "s", detail="users were never served fresh data again" if users_at is None
                    else f"runbook {'completed' if run.completed else 'stopped at ' + str(run.aborted_at)} "
                         f"after {run.ended - onset:.1f} s; users served again after {users_at - onset:.1f} s"),
            *checked,
        ]
        exp.record.expect(expectations)
        exp.record.timeline = [
            {"event": "trigger", "at_s": 0.0, "what": trigger.name, "case": trigger.case},
            *({"event": "step", **s} for s in run.timeline(onset)),
            {"event": "recovered", "at_s": round(recovered_s, 3) if recovered_s is not None else None}]
        exp.record.measure(RecoveryFigures(recovered_s, runbook.target_s), run_figures(
            run, trigger, onset, users_at, recovery_margin_s=None if recovered_s is None else runbook.target_s - recovered_s))
        self.log(run.describe())
        return run

    @contextlib.contextmanager
    def _trigger(self, trigger: Trigger) -> Iterator[dict[str, str]]:
        if trigger.fault:
            with self.experiment.inject(trigger.fault, trigger.target or "", **trigger.params) as fault:
                # The runbook answers an incident: it starts once the fault has bitten (a hang it
                # "fixes" before anything hung tests nothing; the verdict says so if it never bites).
                fault.until_reached(TRIGGER_BITES_S)
                yield {}
            return
        with CONDITIONS[trigger.condition or ""](self, trigger) as env:
            yield env

    def _users_back(self, onset: float, run: RunbookRun) -> float | None:
        """When users were served fresh, correct data again (a whole streak) after the trigger."""
        s = self.settings
        return self.experiment.served_again(
            onset, max(run.ended or onset, onset + run.runbook.target_s) + s.steady_state.streak_s + s.hang_s)

    def valid_if(self, name: str, ok: bool, measured: Any, detail: str = "") -> None:
        """A condition of the drill itself (the trigger took effect): if it does not hold the verdict
        is invalid, not a finding about the runbook."""
        self.trigger_evidence.append(Expectation(name, 1 if ok else 0, "==", 1, detail=detail or str(measured),
                                                 kind="validity"))


for _module in ("incidents", "intrusion"):  # they register their conditions and checks
    import_module(f"{__package__}.{_module}")

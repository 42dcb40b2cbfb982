"""Incident replay: the on-call chain measured link by link. For an alert rule that links a
runbook (its ``runbook_url`` annotation), the runbook's trigger case that must page it (``pages:``)
is created while the fleet writes and users read; when the page reaches a receiver, the runbook
the page links is run as documented (no human step: a manual one is drift); then users must be
served fresh, correct data again and the alert must resolve.

    with experiment:
        experiment.steady_state("before")
        IncidentReplay(experiment).run(link)   # fault -> page -> runbook -> users back -> resolved
        experiment.steady_state("after")
    experiment.verdict()

Each link is timed against the target of the alert's severity (``incident.targets``): detect
(fault to page), diagnose (page to the runbook's ``role: diagnose`` step passing), recover (fault
to users served again) and resolve (fault to the resolved notification). A runbook whose fix
does not fix fails on the last two, naming its ``role: fix`` steps and what came of them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..checks.alerts import fire_within_s, resolve_within_s, unexported
from ..config import IncidentTarget
from ..figures import IncidentFigures
from ..services.prometheus import AlertRule
from ..verdict import at_most, skipped
from .drill import RunbookDrill, run_figures, steps_judged
from .model import Runbook, RunbookError
from .runner import Runner, RunbookRun

QUIET_S = 30.0  # an alert still active from before is waited out this long, else the replay is invalid


@dataclass(frozen=True)
class Link:
    """An alert rule and where its page leads: the runbook as the link fills it in, and the trigger
    case that must page it; or why it cannot be replayed."""
    rule: AlertRule
    runbook: Runbook | None = None
    case: str | None = None
    why_not: str = ""

    @property
    def replayable(self) -> bool:
        return self.runbook is not None and self.case is not None


def links(rules: Iterable[AlertRule], root: Path) -> list[Link]:
    """Each rule's link: its runbook file (``runbook_url``, relative to ``root``) and the first of
    the runbook's trigger cases that lists the rule under ``pages``."""
    from . import load  # the package's reader checks every name a runbook file uses
    found = []
    for rule in rules:
        if not rule.runbook_url:
            found.append(Link(rule, why_not="no runbook_url annotation"))
            continue
        path = Path(rule.runbook_path) if Path(rule.runbook_path).is_absolute() else root / rule.runbook_path
        if not path.is_file():
            found.append(Link(rule, why_not=f"runbook_url {rule.runbook_url}: no such file ({path})"))
            continue
        try:
            runbook = load(str(path))
        except RunbookError as exc:
            found.append(Link(rule, why_not=f"runbook_url {rule.runbook_url}: {exc}"))
            continue
        case = next((t.case for t in runbook.triggers if rule.alert in t.pages), None)
        if case is None:
            found.append(Link(rule, runbook, why_not=f"no trigger case of {runbook.name} pages it "
                                                     f"(add the alert to a case's 'pages:')"))
            continue
        unknown = sorted(set(rule.runbook_params) - set(runbook.params))
        if unknown:
            found.append(Link(rule, runbook, why_not=f"runbook_url {rule.runbook_url}: {unknown[0]!r} is none of "
                                                     f"{runbook.name}'s params ({', '.join(runbook.params)})"))
            continue
        found.append(Link(rule, runbook.for_case(case, **rule.runbook_params), case))
    return found


def unlinked(found: Sequence[Link], runbooks: Iterable[Runbook]) -> list[str]:
    """Runbooks no alert links to: nobody is paged toward them."""
    linked = {link.runbook.path.resolve() for link in found if link.runbook is not None and link.runbook.path}
    return sorted(r.name for r in runbooks if r.path is None or r.path.resolve() not in linked)


def hypothesis(link: Link) -> str:
    assert link.runbook is not None and link.case is not None
    trigger = link.runbook.trigger(link.case)
    return (f"When {trigger.name} happens ({link.case}), {link.rule.alert} pages at severity "
            f"{link.rule.severity or '(none)'}; its runbook_url leads to '{link.runbook.title}', whose steps, run as "
            f"documented, name the cause and bring users back (fresh, correct data; nothing acknowledged lost "
            f"or stored twice), and the alert resolves: each within the target of its severity.")


class IncidentReplay(RunbookDrill):
    """A runbook drill that starts from the page, not from the fault."""

    def replay(self, link: Link) -> RunbookRun | None:
        """The incident of ``link``; None when nothing paged (no engineer would have run the runbook)."""
        if not link.replayable:
            raise RunbookError(f"{link.rule.alert}: cannot be replayed: {link.why_not}")
        assert link.runbook is not None and link.case is not None
        exp, rule, runbook = self.experiment, link.rule, link.runbook
        trigger = runbook.trigger(link.case)
        target = self.settings.incident.target(rule.severity)
        monitoring = exp.monitoring(fire=[rule.alert])
        if monitoring is None:
            self.valid_if("a monitored stack (--monitoring): its pages start the incident", False, "no monitoring")
            exp.record.expect(self.trigger_evidence)
            return None
        receiver, prometheus = monitoring
        if missing := unexported(prometheus.rules(), [rule.alert], prometheus.series_names()).get(rule.alert):
            exp.record.expect([skipped(f"the incident of {rule.alert}", f"its rule reads {', '.join(missing)}, which "
                                       f"the {self.stack.contract.name} backend does not export: it cannot page")])
            return None
        deadline = time.monotonic() + QUIET_S
        while prometheus.active(rule.alert) and time.monotonic() < deadline:
            time.sleep(0.5)  # an alert still firing from before would send no new page
        self.valid_if(f"{rule.alert} inactive before the fault", not prometheus.active(rule.alert), "still active",
                      f"still pending or firing {QUIET_S:g} s after the steady state")
        self.runbook = runbook
        exp.begin_method(disrupts=True)
        with self._trigger(trigger) as env:
            self.env = env
            onset = exp.record.faults[-1].started if trigger.fault and exp.record.faults else time.monotonic()
            # seen late is measured late: the wait runs past the target, up to twice it
            page = receiver.wait_for(rule.alert, "firing", onset, onset + 2 * max(target.detect_s, fire_within_s(
                self.settings.monitoring)))
            run = None
            if page is not None:
                self.log(f"{rule.alert} paged after {page.received - onset:.1f} s: running {runbook.name}")
                run = Runner.for_stack(self.stack, env, self.log).run(runbook, t0=page.received)
            ended = run.ended if run and run.ended else time.monotonic()
            users_at = exp.served_again(onset, max(ended, onset + target.recover_s)
                                        + self.settings.steady_state.streak_s + self.settings.hang_s)
            resolved = None if page is None else receiver.wait_for(
                rule.alert, "resolved", page.received,
                max(onset + target.resolve_s, (users_at or ended) + resolve_within_s(self.settings.monitoring)))
        self._judge(link, trigger, target, onset, page, run, users_at, resolved)
        return run

    def _judge(self, link: Link, trigger, target: IncidentTarget, onset: float, page, run: RunbookRun | None,
               users_at: float | None, resolved) -> None:
        exp, rule = self.experiment, link.rule
        assert link.runbook is not None
        detect = None if page is None else page.received - onset
        diagnosed = None
        if run is not None:
            step = next((s for s in run.steps if s.step.role == "diagnose"), None)
            if step is not None and step.outcome in ("passed", "found") and step.ended is not None:
                diagnosed = step.ended - page.received
        recover = None if users_at is None else users_at - onset
        resolve = None if resolved is None else resolved.received - onset
        fixes = [] if run is None else [s for s in run.steps if s.step.role == "fix"]
        fixed = "; ".join(f"{s.step.name} {s.outcome}" for s in fixes) or "the runbook marks no step role: fix"
        never = "never paged: nobody would have run the runbook"
        tag = f"{rule.alert}, {rule.severity}"
        expectations = [
            *self.trigger_evidence,
            at_most(f"time to detect ({tag}): the fault to the page", _or_inf(detect), target.detect_s, "s",
                    detail=never if page is None else f"paged on {', '.join(sorted(self._channels(page)))}"),
            at_most(f"time to diagnose ({tag}): the page to the step that names the cause", _or_inf(diagnosed),
                    target.diagnose_s, "s", detail=never if run is None else self._diagnosis(run)),
            at_most(f"time to recover ({tag}): the fault to users served fresh, correct data again",
                    _or_inf(recover), target.recover_s, "s",
                    detail=f"users not recovered after the runbook's fix ({fixed})" if users_at is None
                    else f"users served again {recover:.1f} s after the fault; fix: {fixed}"),
            at_most(f"time to resolve ({tag}): the fault to the alert resolved", _or_inf(resolve), target.resolve_s,
                    "s", detail=never if page is None else
                    f"alert not resolved after the runbook's fix ({fixed})" if resolved is None
                    else f"resolved {resolve:.1f} s after the fault; fix: {fixed}"),
        ]
        if run is not None:
            expectations += steps_judged(run)
        exp.record.expect(expectations)
        in_time = all(v is not None and v <= t for v, t in ((detect, target.detect_s), (diagnosed, target.diagnose_s),
                                                             (recover, target.recover_s), (resolve, target.resolve_s)))
        exp.record.measure(IncidentFigures(
            incident_alert=rule.alert, incident_severity=rule.severity, incident_runbook=link.runbook.name,
            incident_case=trigger.case,
            detect_s=_round(detect), diagnose_s=_round(diagnosed), recover_s=_round(recover), resolve_s=_round(resolve),
            incident_targets={"detect_s": target.detect_s, "diagnose_s": target.diagnose_s, "recover_s": target.recover_s,
                     "resolve_s": target.resolve_s},
            paged_channels=sorted(self._channels(page)) if page else [],
            fix_steps=[{"step": s.step.name, "outcome": s.outcome} for s in fixes], incident_in_time=in_time))
        if run is not None:
            exp.record.measure(run_figures(run, trigger, onset, users_at))
        events = [{"event": "step", **s} for s in (run.timeline(onset) if run else [])]
        for marker in ({"event": "fault", "at_s": 0.0, "what": trigger.name, "case": trigger.case},
                       {"event": "paged", "at_s": _round(detect), "what": rule.alert},
                       {"event": "recovered", "at_s": _round(recover)},
                       {"event": "resolved", "at_s": _round(resolve), "what": rule.alert}):
            at = math.inf if marker["at_s"] is None else marker["at_s"]  # what never happened comes last
            events.insert(next((i for i, e in enumerate(events) if e["at_s"] is not None and e["at_s"] > at),
                               len(events)), marker)
        exp.record.timeline = events
        if run is not None:
            self.log(run.describe())

    def _channels(self, page) -> set[str]:
        """Every receiver the alert's first firing reached (a notification per channel, each route
        sending after its own group wait)."""
        receiver, until = self.stack.alerts, page.received + self.settings.monitoring.group_wait_s + 1.0
        return {n.channel for n in receiver.notifications(page.received)
                if n.alert == page.alert and n.status == "firing" and n.received <= until} if receiver else set()

    @staticmethod
    def _diagnosis(run: RunbookRun) -> str:
        step = next((s for s in run.steps if s.step.role == "diagnose"), None)
        if step is None:
            return "no step of the runbook diagnoses (role: diagnose)"
        return f"{step.step.name}: {step.outcome}" + (f" ({step.attempts[-1].failure})"
                                                       if step.attempts and step.attempts[-1].failure else "")


def _or_inf(value: float | None) -> float:
    return float("inf") if value is None else value


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)



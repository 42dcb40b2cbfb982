"""A runbook as operators write it: a YAML file next to the ops guide, read strictly.

Every field is known or the file is refused with one line naming the file, the field and what
to do, before anything runs: a typo in a runbook must not turn into a step silently skipped on
the night it is needed.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..contract import Capabilities
from ..errors import FulskChaosError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


class RunbookError(FulskChaosError, ValueError):
    """A runbook cannot be found or read; the message names the file and the field."""


@dataclass(frozen=True)
class Command:
    """A command as the guide writes it, with its mapping to the local stack (when it differs)."""
    guide: str
    local: str | None = None

    def for_provider(self, provider: str) -> str:
        return self.local if provider == "local" and self.local is not None else self.guide


@dataclass(frozen=True)
class Correction:
    """Where the guide's command is wrong for the stack: what works, and what the guide should say."""
    command: Command
    note: str


@dataclass(frozen=True)
class Condition:
    """``only_if: STEP failed|passed``: a fallback runs only when the step it backs up failed."""
    step: str
    outcome: str

    def holds(self, outcomes: dict[str, str]) -> bool:
        return outcomes.get(self.step) == self.outcome


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    command: Command
    timeout_s: float = 60.0
    verify: Command | None = None    # polled until it exits 0, within the timeout: the step's effect
    expect_output: str | None = None  # a regex the step's output must match
    finds: dict[str, str] = field(default_factory=dict)  # name -> regex with one group, read from the output
    corrected: Correction | None = None
    only_if: Condition | None = None
    may_fail: bool = False           # a check whose failure is a finding (it names the cause), not drift
    on_failure: str = "stop"         # stop | continue (the following steps are its fallback)
    in_guide: bool = True            # False: a step the guide lacks, added here (with a note)
    note: str = ""
    # diagnose: once it passed, the on-call engineer knows the cause (an incident's time to
    # diagnose ends there); fix: it is what brings the stack back (named when the alert stays)
    role: str = ""


@dataclass(frozen=True)
class Trigger:
    """What puts the stack in the state the runbook is for: a fault of the catalogue on a service
    or edge, or a named condition (see ``fulsk_chaos.runbooks.triggers``)."""
    case: str
    fault: str | None = None
    condition: str | None = None
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pages: tuple[str, ...] = ()  # the alerts it must page: an incident replay of each starts here
    runbook_params: dict[str, str] = field(default_factory=dict)  # the guide's placeholders, for this case

    @property
    def name(self) -> str:
        return f"{self.fault or self.condition}" + (f" {self.target}" if self.target else "")


@dataclass(frozen=True)
class Runbook:
    name: str            # the file's stem: what `nox -s runbook -- NAME` takes
    title: str           # the ops guide's heading
    when: str
    who: str
    target_s: float      # trigger to users served fresh, correct data again
    triggers: tuple[Trigger, ...]  # each a case the runbook is for (a scenario of its own)
    steps: tuple[Step, ...]
    params: dict[str, str] = field(default_factory=dict)  # the guide's placeholders -> values
    checks: tuple[str, ...] = ()     # what the scenario judges beyond the steady state
    rpo_s: float | None = None       # acknowledged readings the runbook may lose: at most this span
    # a stack of its own, with these stack settings ({}: the defaults); None: the shared stack
    stack: dict[str, Any] | None = None
    # what the runbook needs of the backend (its contract's capabilities): one that lacks it skips the drill
    needs: tuple[str, ...] = ()
    path: Path | None = None

    def for_case(self, case: str, **params: str) -> "Runbook":
        """The runbook as run for ``case``: the guide's placeholders as that case (then ``params``) fill them in."""
        return dataclasses.replace(self, params={**self.params, **self.trigger(case).runbook_params, **params})

    def trigger(self, case: str) -> Trigger:
        for trigger in self.triggers:
            if trigger.case == case:
                return trigger
        raise RunbookError(f"{self.name}: no trigger case {case!r} (cases: {', '.join(t.case for t in self.triggers)})")


# --- reading ---------------------------------------------------------------------------------
def _capabilities(where: str, value: Any) -> tuple[str, ...]:
    known = {f.name for f in dataclasses.fields(Capabilities)}
    if not isinstance(value, list) or any(v not in known for v in value):
        raise RunbookError(f"{where}: expected a list of backend capabilities ({', '.join(sorted(known))}), got {value!r}")
    return tuple(value)


RUNBOOK_FIELDS = {"runbook": True, "when": True, "who": True, "target_s": True, "trigger": True, "steps": True,
                  "params": False, "checks": False, "rpo_s": False, "stack": False, "needs": False}
STACK_FIELDS = {"standby": False}  # the stack settings a runbook may ask for
STEP_FIELDS = {"name": True, "does": True, "command": True, "local": False, "timeout_s": False, "verify": False,
               "verify_local": False, "expect_output": False, "finds": False, "corrected": False, "only_if": False,
               "may_fail": False, "on_failure": False, "in_guide": False, "note": False, "role": False}
ROLES = ("diagnose", "fix")
CORRECTED_FIELDS = {"command": True, "local": False, "note": True}
TRIGGER_FIELDS = {"case": False, "fault": False, "condition": False, "target": False, "params": False,
                  "pages": False, "runbook_params": False}


def _fields(where: str, data: Any, known: dict[str, bool]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RunbookError(f"{where}: expected a mapping of {', '.join(known)}, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise RunbookError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(known)})")
    missing = [k for k, required in known.items() if required and k not in data]
    if missing:
        raise RunbookError(f"{where}: missing field {missing[0]!r}")
    return data


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RunbookError(f"{where}: expected text, got {value!r}")
    return value.strip()


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise RunbookError(f"{where}: expected a number of seconds > 0, got {value!r}")
    return float(value)


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RunbookError(f"{where}: expected true or false, got {value!r}")
    return value


def _regex(where: str, value: Any, groups: int | None = None) -> str:
    text = _text(where, value)
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise RunbookError(f"{where}: not a regular expression ({exc})") from None
    if groups is not None and compiled.groups != groups:
        raise RunbookError(f"{where}: the regex must have exactly {groups} group (it has {compiled.groups})")
    return text


def _step(where: str, data: Any, earlier: dict[str, Step]) -> Step:
    d = _fields(where, data, STEP_FIELDS)
    name = _text(f"{where}.name", d["name"])
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise RunbookError(f"{where}.name: {name!r}: use lower-case words joined by '-'")
    if name in earlier:
        raise RunbookError(f"{where}.name: {name!r} is already the name of an earlier step")
    corrected = None
    if "corrected" in d:
        c = _fields(f"{where}.corrected", d["corrected"], CORRECTED_FIELDS)
        corrected = Correction(Command(_text(f"{where}.corrected.command", c["command"]),
                                       _text(f"{where}.corrected.local", c["local"]) if "local" in c else None),
                               _text(f"{where}.corrected.note", c["note"]))
    only_if = None
    if "only_if" in d:
        m = re.fullmatch(r"\s*([a-z0-9-]+)\s+(failed|passed)\s*", str(d["only_if"]))
        if not m:
            raise RunbookError(f"{where}.only_if: {d['only_if']!r}: write 'STEP failed' or 'STEP passed'")
        if m.group(1) not in earlier:
            raise RunbookError(f"{where}.only_if: no earlier step named {m.group(1)!r}")
        only_if = Condition(m.group(1), m.group(2))
    on_failure = d.get("on_failure", "stop")
    if on_failure not in ("stop", "continue"):
        raise RunbookError(f"{where}.on_failure: {on_failure!r}: one of stop, continue")
    finds = d.get("finds", {})
    if not isinstance(finds, dict):
        raise RunbookError(f"{where}.finds: expected a mapping of name: regex with one group")
    in_guide = _flag(f"{where}.in_guide", d["in_guide"]) if "in_guide" in d else True
    note = _text(f"{where}.note", d["note"]) if "note" in d else ""
    if not in_guide and not note:
        raise RunbookError(f"{where}: a step the guide lacks (in_guide: false) needs a note saying why it is added")
    role = str(d.get("role", ""))
    if role and role not in ROLES:
        raise RunbookError(f"{where}.role: {role!r}: one of {', '.join(ROLES)}")
    verify = None
    if "verify" in d:
        verify = Command(_text(f"{where}.verify", d["verify"]),
                         _text(f"{where}.verify_local", d["verify_local"]) if "verify_local" in d else None)
    elif "verify_local" in d:
        raise RunbookError(f"{where}.verify_local: only with verify")
    return Step(
        name=name, does=_text(f"{where}.does", d["does"]),
        command=Command(_text(f"{where}.command", d["command"]),
                        _text(f"{where}.local", d["local"]) if "local" in d else None),
        timeout_s=_seconds(f"{where}.timeout_s", d["timeout_s"]) if "timeout_s" in d else 60.0,
        verify=verify,
        expect_output=_regex(f"{where}.expect_output", d["expect_output"]) if "expect_output" in d else None,
        finds={_text(f"{where}.finds", k): _regex(f"{where}.finds.{k}", v, groups=1) for k, v in finds.items()},
        corrected=corrected, only_if=only_if,
        may_fail=_flag(f"{where}.may_fail", d["may_fail"]) if "may_fail" in d else False,
        on_failure=on_failure, in_guide=in_guide, note=note, role=role)


def _trigger(where: str, data: Any, faults: frozenset[str], conditions: frozenset[str]) -> Trigger:
    t = _fields(where, data, TRIGGER_FIELDS)
    if ("fault" in t) == ("condition" in t):
        raise RunbookError(f"{where}: give either 'fault' (a fault of the catalogue) or 'condition'")
    if "fault" in t and faults and t["fault"] not in faults:
        raise RunbookError(f"{where}.fault: unknown fault {t['fault']!r} (known: {', '.join(sorted(faults))})")
    if "condition" in t and conditions and t["condition"] not in conditions:
        raise RunbookError(f"{where}.condition: unknown condition {t['condition']!r} "
                           f"(known: {', '.join(sorted(conditions))})")
    params = t.get("params", {})
    if not isinstance(params, dict):
        raise RunbookError(f"{where}.params: expected a mapping")
    target = _text(f"{where}.target", t["target"]) if "target" in t else None
    kind = t.get("fault") or t.get("condition")
    case = _text(f"{where}.case", t["case"]) if "case" in t else "-".join(filter(None, [kind, target]))
    pages = t.get("pages", [])
    if not isinstance(pages, list) or not all(isinstance(p, str) and p for p in pages):
        raise RunbookError(f"{where}.pages: expected a list of alert names (the rules' 'alert:')")
    runbook_params = t.get("runbook_params", {})
    if not isinstance(runbook_params, dict):
        raise RunbookError(f"{where}.runbook_params: expected a mapping of the guide's placeholders to values")
    return Trigger(case=case, fault=t.get("fault"), condition=t.get("condition"), target=target, params=dict(params),
                   pages=tuple(pages), runbook_params={str(k): str(v) for k, v in runbook_params.items()})


def parse(data: Any, name: str, path: Path | None = None, *, placeholders: frozenset[str] = frozenset(),
          faults: frozenset[str] = frozenset(), conditions: frozenset[str] = frozenset(),
          checks: frozenset[str] = frozenset()) -> Runbook:
    """``placeholders``, ``faults``, ``conditions``, ``checks``: the names the runner knows (empty:
    not checked)."""
    where = str(path or name)
    d = _fields(where, data, RUNBOOK_FIELDS)
    raw_triggers = d["trigger"] if isinstance(d["trigger"], list) else [d["trigger"]]
    if not raw_triggers:
        raise RunbookError(f"{where}: trigger: expected a trigger, or a list of trigger cases")
    triggers = [_trigger(f"{where}: trigger" + (f"[{i}]" if isinstance(d["trigger"], list) else ""), t,
                         faults, conditions) for i, t in enumerate(raw_triggers)]
    cases = [t.case for t in triggers]
    if len(set(cases)) != len(cases):
        raise RunbookError(f"{where}: trigger: two cases share a name ({', '.join(cases)}): give each a 'case'")
    raw_steps = d["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RunbookError(f"{where}: steps: expected a list of at least one step")
    steps: dict[str, Step] = {}
    for i, raw in enumerate(raw_steps):
        step = _step(f"{where}: steps[{i}]", raw, steps)
        steps[step.name] = step
    guide_params = d.get("params", {})
    if not isinstance(guide_params, dict):
        raise RunbookError(f"{where}: params: expected a mapping of the guide's placeholders to values")
    wanted = tuple(d.get("checks", ()))
    if checks:
        for check in wanted:
            if check not in checks:
                raise RunbookError(f"{where}: checks: unknown check {check!r} (known: {', '.join(sorted(checks))})")
    stack = _fields(f"{where}: stack", d["stack"] or {}, STACK_FIELDS) if "stack" in d else None
    for key, value in (stack or {}).items():
        _flag(f"{where}: stack.{key}", value)
    runbook = Runbook(name=name, title=_text(f"{where}: runbook", d["runbook"]), when=_text(f"{where}: when", d["when"]),
                      who=_text(f"{where}: who", d["who"]), target_s=_seconds(f"{where}: target_s", d["target_s"]),
                      triggers=tuple(triggers), steps=tuple(steps.values()),
                      params={str(k): str(v) for k, v in guide_params.items()}, checks=wanted,
                      rpo_s=_seconds(f"{where}: rpo_s", d["rpo_s"]) if "rpo_s" in d else None, stack=stack,
                      needs=_capabilities(f"{where}: needs", d.get("needs", [])), path=path)
    for t in runbook.triggers:
        if unknown := sorted(set(t.runbook_params) - set(runbook.params)):
            raise RunbookError(f"{where}: trigger {t.case}: runbook_params: {unknown[0]!r} is none of the runbook's "
                               f"params ({', '.join(runbook.params) or 'none'})")
    if placeholders:
        _check_placeholders(runbook, placeholders)
    return runbook


def _commands(step: Step) -> list[tuple[str, str]]:
    found = [("command", step.command.guide), ("local", step.command.local)]
    if step.verify:
        found += [("verify", step.verify.guide), ("verify_local", step.verify.local)]
    if step.corrected:
        found += [("corrected.command", step.corrected.command.guide), ("corrected.local", step.corrected.command.local)]
    found += [("expect_output", step.expect_output)]
    return [(k, v) for k, v in found if v]


def _check_placeholders(runbook: Runbook, known: frozenset[str]) -> None:
    """Every {{name}} is an address the runner fills in, or a finding of an earlier step."""
    found: set[str] = set()
    for i, step in enumerate(runbook.steps):
        for where, text in _commands(step):
            for name in PLACEHOLDER.findall(text):
                if name not in known and name.removeprefix("found.") not in found:
                    raise RunbookError(f"{runbook.path or runbook.name}: steps[{i}].{where}: unknown placeholder "
                                       f"{{{{{name}}}}} (known: {', '.join(sorted(known))}, or found.NAME of an "
                                       f"earlier step's finds)")
        found |= set(step.finds)


def read(path: Path, **known: frozenset[str]) -> Runbook:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RunbookError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise RunbookError(f"{path}:{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse(data, path.stem, path, **known)

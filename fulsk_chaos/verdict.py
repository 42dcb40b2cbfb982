"""Verdicts as data: named expectations judged on measured values, and the evidence behind them.

A scenario states its hypothesis, declares the least evidence it needs, and judges expectations;
``judge`` turns them into a verdict that cannot be ``pass`` without evidence:

- ``fail``: an expectation did not hold on what was measured (a finding about the stack);
- ``error``: nothing failed, but something could not be measured or there was too little
  evidence to judge, or a fault never reached the condition it exists to create (an expectation
  of ``kind="condition"``), or the stack or the framework broke: the hypothesis was not judged;
- ``invalid``: the measurement itself cannot be trusted (a load generator that saturated its own
  CPU measured itself, not the stack): whatever else was found, nothing is blamed on the stack;
- ``pass``: every expectation held, on at least the evidence declared.

A failure measured on real data outranks missing evidence elsewhere: a lost reading is reported
as lost even if another window was short of samples.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

Status = Literal["pass", "fail", "error", "invalid", "interrupted", "skipped"]

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_WORDS = {"<=": "at most", "<": "under", ">=": "at least", ">": "over", "==": "exactly"}


def _fmt(value: float | int | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unmeasured"
    if isinstance(value, float) and math.isinf(value):
        return "never (not within the wait)" if value > 0 else "-inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    elif isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit else text


@dataclass(frozen=True)
class Expectation:
    """A named check: what was measured, the threshold it is held to, and the evidence behind it."""
    name: str
    measured: float | int | None
    op: str
    threshold: float | int
    unit: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)  # the counts the measurement rests on
    detail: str = ""  # what was found, e.g. the first lost readings
    # "validity": a condition of the measurement itself (e.g. the load generator was not saturated);
    # one that does not hold makes the verdict invalid rather than blaming the stack.
    # "condition": a fault reached the condition it exists to create; one that did not (or could
    # not be measured) makes the verdict error: a fault that did not bite tested nothing.
    # "contract": the backend's answers could be read as its contract says; one that does not hold
    # makes the verdict error, whatever else failed (a misread answer looks like a wrong one).
    kind: str = "hypothesis"
    # Why it was not judged: the backend lacks what it needs (a capability its contract does not
    # declare). A skipped expectation neither passes nor fails; the verdict and summary count it.
    skipped: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"expectation {self.name!r}: unknown comparison {self.op!r}")

    @property
    def held(self) -> bool | None:
        """True or False as judged; None when there was nothing to judge (no measurement)."""
        if self.measured is None or (isinstance(self.measured, float) and math.isnan(self.measured)):
            return None
        return bool(_OPS[self.op](self.measured, self.threshold))

    def describe(self) -> str:
        if self.skipped:
            return f"{self.name}: SKIPPED ({self.skipped})"
        state = {True: "ok", False: "VIOLATED", None: "NOT MEASURED"}[self.held]
        text = (f"{self.name} = {_fmt(self.measured, self.unit)} "
                f"(must be {_WORDS[self.op]} {_fmt(self.threshold, self.unit)}) {state}")
        return f"{text}: {self.detail}" if self.detail and self.held is not True else text

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "measured": self.measured, "op": self.op, "threshold": self.threshold,
                "unit": self.unit, "held": self.held, "evidence": dict(self.evidence), "detail": self.detail,
                **({"kind": self.kind} if self.kind != "hypothesis" else {}),
                **({"skipped": self.skipped} if self.skipped else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Expectation":
        return cls(data["name"], data["measured"], data["op"], data["threshold"], data.get("unit", ""),
                   data.get("evidence") or {}, data.get("detail", ""), data.get("kind", "hypothesis"),
                   data.get("skipped", ""))


def at_most(name: str, measured: float | int | None, limit: float | int, unit: str = "", **kw: Any) -> Expectation:
    return Expectation(name, measured, "<=", limit, unit, **kw)


def below(name: str, measured: float | int | None, limit: float | int, unit: str = "", **kw: Any) -> Expectation:
    return Expectation(name, measured, "<", limit, unit, **kw)


def at_least(name: str, measured: float | int | None, floor: float | int, unit: str = "", **kw: Any) -> Expectation:
    return Expectation(name, measured, ">=", floor, unit, **kw)


def skipped(name: str, reason: str) -> Expectation:
    """An expectation the backend cannot be held to, and why (e.g. "backend declares no per-dependency health")."""
    return Expectation(name, None, "==", 0, skipped=reason)


def none_of(name: str, count: int | None, **kw: Any) -> Expectation:
    """A count of bad things that must be zero (lost readings, hung requests, wrong answers)."""
    return Expectation(name, count, "==", 0, **kw)


@dataclass(frozen=True)
class Evidence:
    """How much of something a verdict rests on, against the least the scenario declared it needs."""
    name: str
    count: int
    minimum: int

    @property
    def enough(self) -> bool:
        return self.count >= self.minimum

    def describe(self) -> str:
        return f"{self.name}: {self.count} (needs at least {self.minimum})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "minimum": self.minimum, "enough": self.enough}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Evidence":
        return cls(data["name"], data["count"], data["minimum"])


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str | None
    hypothesis: str = ""
    expectations: tuple[Expectation, ...] = ()
    evidence: tuple[Evidence, ...] = ()

    @property
    def failed(self) -> list[Expectation]:
        return [e for e in self.expectations if e.held is False]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.status, "reason": self.reason,
                "expectations": [e.to_json() for e in self.expectations],
                "evidence": [e.to_json() for e in self.evidence]}


def judge(hypothesis: str, expectations: Sequence[Expectation], evidence: Sequence[Evidence] = ()) -> Verdict:
    judged, evidence = tuple(expectations), tuple(evidence)
    expectations = tuple(e for e in judged if not e.skipped)
    if judged and not expectations:  # every one needs what the backend lacks: nothing was tested
        reasons = sorted({e.skipped for e in judged})
        return Verdict("skipped", "; ".join(reasons), hypothesis, judged, evidence)
    verdict = _judge(hypothesis, expectations, evidence)
    return dataclasses.replace(verdict, expectations=judged)


def _judge(hypothesis: str, expectations: tuple[Expectation, ...], evidence: tuple[Evidence, ...]) -> Verdict:
    unfit = [e for e in expectations if e.kind == "contract" and e.held is False]
    if unfit:  # the answers were misread: what they seem to say of the stack is not evidence
        reason = ("the backend's contract does not describe its answers, nothing is blamed on the stack "
                  "(fulsk-chaos contract check says what to change): " + "; ".join(e.describe() for e in unfit))
        return Verdict("error", reason, hypothesis, expectations, evidence)
    invalid = [e for e in expectations if e.kind == "validity" and e.held is False]
    if invalid:
        reason = "the measurement is invalid, nothing is blamed on the stack: " + "; ".join(e.describe() for e in invalid)
        return Verdict("invalid", reason, hypothesis, expectations, evidence)
    unreached = [e for e in expectations if e.kind == "condition" and e.held is not True]
    failed = [e for e in expectations if e.held is False and e.kind != "condition"]
    unmeasured = [e for e in expectations if e.held is None and e.kind != "condition"]
    short = [e for e in evidence if not e.enough]
    bite = ("the fault did not reach its condition ("
            + "; ".join(f"{e.evidence.get('fault', e.name)}: {e.detail}" for e in unreached) + ")")
    if failed:
        reason = "; ".join(e.describe() for e in failed)
        if unreached:
            reason += "; also " + bite
        if short:
            reason += "; also not enough evidence (" + "; ".join(e.describe() for e in short) + ")"
        return Verdict("fail", reason, hypothesis, expectations, evidence)
    if unreached:  # a fault that did not bite is no evidence: nothing was tested
        reason = bite + ("; also not enough evidence (" + "; ".join(e.describe() for e in short) + ")" if short else "")
        return Verdict("error", reason, hypothesis, expectations, evidence)
    if short or unmeasured:
        parts = [e.describe() for e in short] + [f"{e.name} could not be measured" for e in unmeasured]
        return Verdict("error", "not enough evidence (" + "; ".join(parts) + ")", hypothesis, expectations, evidence)
    if not expectations:
        return Verdict("error", "no expectation was judged", hypothesis, expectations, evidence)
    return Verdict("pass", None, hypothesis, expectations, evidence)


class VerdictReached(Exception):
    """Ends a scenario early with its verdict (e.g. no steady state before the fault: the method
    is not run). The framework records the verdict object; nothing is read from this message."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"{verdict.status}: {verdict.reason}")
        self.verdict = verdict

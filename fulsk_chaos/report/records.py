"""What a run found, in a form people and machines can read (Chaos Toolkit's journal).

A scenario's record holds its hypothesis, the expectations it judged, the evidence they rest
on, its faults and measurements, and its verdict. Until a verdict is reached the record reads
``interrupted``: written ahead, so a run that dies (Ctrl-C, SIGKILL) says so on disk.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..faults import FaultRecord
from ..figures import SCHEMA, F, Figures, Measured
from ..verdict import Evidence, Expectation, Verdict
from .progress import Progress, quiet

NOT_CONCLUDED = "the run ended before this scenario reached its verdict"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, floats are rounded."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


@dataclass
class ScenarioRecord:
    name: str
    nodeid: str
    hypothesis: str = ""
    verdict: Verdict | None = None
    expectations: list[Expectation] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    figures: Measured = field(default_factory=Measured)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # what happened when (a runbook's steps)
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    progress: Progress = field(default_factory=quiet, repr=False, compare=False)  # where the run is, live

    def note(self, phase: str) -> None:
        """A new phase of the scenario, for the run's progress line."""
        self.progress.phase(f"{self.name}: {phase}")

    def measure(self, *figures: Figures) -> None:
        """Figures measured (fulsk_chaos.figures): a family measured again keeps what the new
        measurement did not set."""
        for f in figures:
            self.figures.add(f)

    def figure(self, family: type[F], phase: str = "") -> F | None:
        return self.figures.get(family, phase)

    @property
    def measurements(self) -> dict[str, Any]:
        """The figures as results.json carries them (flat keys)."""
        return self.figures.to_json()

    def expect(self, expectations: list[Expectation], evidence: list[Evidence] = (), *, first: bool = False) -> None:
        """Add judged expectations (replacing any of the same name: the latest judgement counts);
        ``first``: they lead the list, and so the verdict's reason (data loss before slowness)."""
        names = {e.name for e in expectations}
        kept = [e for e in self.expectations if e.name not in names]
        self.expectations = [*expectations, *kept] if first else [*kept, *expectations]
        names = {e.name for e in evidence}
        self.evidence = [e for e in self.evidence if e.name not in names] + list(evidence)

    def conclude(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.finished_at = now_iso()

    @property
    def status(self) -> str:
        return self.verdict.status if self.verdict else "interrupted"

    @property
    def reason(self) -> str | None:
        return self.verdict.reason if self.verdict else NOT_CONCLUDED

    @property
    def judged(self) -> tuple[list[Expectation], list[Evidence]]:
        """The verdict's own expectations and evidence when it has them; else what was judged so far."""
        verdict = self.verdict
        return (list(verdict.expectations) if verdict and verdict.expectations else self.expectations,
                list(verdict.evidence) if verdict and verdict.evidence else self.evidence)

    def to_json(self) -> dict[str, Any]:
        expectations, evidence = self.judged
        return clean({
            "name": self.name, "nodeid": self.nodeid, "hypothesis": self.hypothesis,
            "verdict": self.status, "reason": self.reason,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "expectations": [e.to_json() for e in expectations], "evidence": [e.to_json() for e in evidence],
            "faults": [f.to_json() for f in self.faults], "measurements": self.measurements,
            **({"timeline": self.timeline} if self.timeline else {})})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScenarioRecord":
        """A record read back from its JSON (a scenario judged in another process: a pytest-xdist worker)."""
        expectations = [Expectation.from_json(e) for e in data.get("expectations") or []]
        evidence = [Evidence.from_json(e) for e in data.get("evidence") or []]
        verdict = None if data["verdict"] == "interrupted" else Verdict(
            data["verdict"], data.get("reason"), data.get("hypothesis", ""), tuple(expectations), tuple(evidence))
        return cls(data["name"], data["nodeid"], data.get("hypothesis", ""), verdict, expectations, evidence,
                   [FaultRecord.from_json(f) for f in data.get("faults") or []],
                   Measured.read(data.get("measurements") or {}),
                   data.get("timeline") or [], data.get("started_at") or now_iso(), data.get("finished_at"))


@dataclass
class RunRecord:
    run_id: str
    provider: str
    report_dir: Path
    config: dict[str, Any]
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    interrupted: bool = False
    error: str | None = None   # the run itself failed (e.g. the stack did not start)
    stack: dict[str, Any] = field(default_factory=dict)
    scenarios: list[ScenarioRecord] = field(default_factory=list)
    worker: str | None = None  # a pytest-xdist worker's id: it judges into the controller's run (same dir)
    monitoring: dict[str, Any] | None = None  # the run's runbook coverage (checks.blindspots.coverage)

    @property
    def dir(self) -> Path:
        return self.report_dir / self.run_id

    def own(self, name: str) -> str:
        """A file or directory name of this process's own in the run's directory: workers share it."""
        return f"{name}-{self.worker}" if self.worker else name

    @property
    def verdict(self) -> str:
        """interrupted > fail > error > invalid > pass > skipped: a finding outranks a failure to measure."""
        statuses = {s.status for s in self.scenarios}
        if self.finished_at is None or self.interrupted or "interrupted" in statuses:
            return "interrupted"
        for status in ("fail", "error", "invalid"):
            if status in statuses:
                return status
        if self.error:
            return "error"
        return "pass" if "pass" in statuses else "skipped"

    def to_json(self) -> dict[str, Any]:
        return clean({
            "schema": SCHEMA, "run_id": self.run_id, "provider": self.provider, "started_at": self.started_at,
            "finished_at": self.finished_at, "verdict": self.verdict, "error": self.error, "stack": self.stack,
            "scenarios": [s.to_json() for s in self.scenarios], "monitoring": self.monitoring, "config": self.config})

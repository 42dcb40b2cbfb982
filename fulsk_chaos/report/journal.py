"""What a run found, in a form people and machines can read (Chaos Toolkit's journal)."""
from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..faults import FaultRecord

# The measurements every scenario reports, whether it got to measure them or not (then null).
REQUIRED_MEASUREMENTS = ("recovery_s", "recovery_target_s", "acked", "lost", "unexpected", "duplicates",
                         "error_rate", "p95_ms", "p99_ms")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class ScenarioResult:
    name: str
    nodeid: str
    verdict: str = "pass"
    failure: str | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def measure(self, **values: Any) -> None:
        self.measurements.update(values)

    def fail(self, reason: str) -> None:
        self.verdict = "fail"
        self.failure = self.failure or reason

    def to_json(self) -> dict[str, Any]:
        measurements = {k: None for k in REQUIRED_MEASUREMENTS}
        measurements.update(self.measurements)
        return _clean({"name": self.name, "nodeid": self.nodeid, "verdict": self.verdict, "failure": self.failure,
                       "started_at": self.started_at, "faults": [f.to_json() for f in self.faults],
                       "measurements": measurements})


@dataclass
class RunJournal:
    run_id: str
    provider: str
    report_dir: Path
    config: dict[str, Any]
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    stack: dict[str, Any] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return self.report_dir / self.run_id

    def to_json(self) -> dict[str, Any]:
        return _clean({
            "run_id": self.run_id, "provider": self.provider, "started_at": self.started_at,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stack": self.stack, "verdict": self.verdict,
            "scenarios": [s.to_json() for s in self.scenarios], "config": self.config})

    @property
    def verdict(self) -> str:
        return "fail" if any(s.verdict != "pass" for s in self.scenarios) else "pass"

    def write(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "results.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    def summary(self) -> list[str]:
        lines = []
        for s in self.scenarios:
            m = s.measurements
            parts = [f"{s.verdict.upper():4}  {s.name}"]
            if m.get("recovery_s") is not None:
                parts.append(f"recovery {m['recovery_s']:.1f} s (target {m.get('recovery_target_s', 0):g} s)")
            if m.get("acked") is not None:
                parts.append(f"lost {m.get('lost')} of {m['acked']} acked")
            if m.get("p99_ms") is not None:
                parts.append(f"p99 {m['p99_ms']:.0f} ms during fault")
            lines.append("  ".join(parts))
            if s.failure:
                lines.append(f"      {s.failure.splitlines()[0][:300]}")
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in self.stack.items() if isinstance(v, float))
        images = [f"{n}={s['image']}" for n, s in self.stack.get("services", {}).items() if s.get("image")]
        if images:
            lines.append("images: " + " ".join(images))
        lines.append(f"provider {self.provider}" + (f"; stack {timing}" if timing else ""))
        return lines

"""Baseline history: each run's figures are kept, and a run is compared with the accepted baseline.

Files, per profile and provider (figures on Docker and on local processes are not comparable),
and per backend other than the reference (``-<backend>`` at the end of the name):
``BASELINE_DIR/<profile>-<provider>.json`` is the accepted baseline (written by the first run, and
by ``--update-baseline``); ``BASELINE_DIR/<profile>-<provider>.history.jsonl`` gets every run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..verdict import Expectation, at_most

MIN_SAMPLES = 20  # a p95 of fewer requests than this is not compared


@dataclass(frozen=True)
class Tolerance:
    fraction: float = 0.2       # worse by more than 20 % ...
    floor_ms: float = 5.0       # ... and by more than 5 ms
    floor_error_rate: float = 0.01

    def limit_ms(self, baseline: float) -> float:
        return max(baseline * (1 + self.fraction), baseline + self.floor_ms)

    def limit_rate(self, baseline: float) -> float:
        return max(baseline * (1 + self.fraction), baseline + self.floor_error_rate)


class BaselineStore:
    def __init__(self, directory: Path, profile: str, provider: str, backend: str = "reference") -> None:
        self.directory = Path(directory)
        # another backend's figures are not this one's baseline: each backend has its own
        self.key = f"{profile}-{provider}" + (f"-{backend}" if backend != "reference" else "")

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.json"

    @property
    def history_path(self) -> Path:
        return self.directory / f"{self.key}.history.jsonl"

    def baseline(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return json.loads(self.path.read_text())

    def record(self, figures: dict[str, Any], run_id: str, accept: bool, passed: bool = True) -> str:
        """Append the run to the history; make it the baseline if asked or if there is none, provided
        it passed (a failed or invalid run is never a baseline). Returns what was done."""
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = {"run_id": run_id, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
        with open(self.history_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        baseline = self.baseline()
        if (accept or baseline is None) and not passed:
            return f"not accepted as the baseline ({self.path}): the run did not pass"
        if accept or baseline is None:
            self.path.write_text(json.dumps(entry, indent=1))
            return f"{'created' if baseline is None else 'updated'} baseline {self.path}"
        return f"compared with baseline {self.path} (run {baseline.get('run_id')})"


def comparable(current: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """Why two runs' figures cannot be compared (another traffic mix), or None."""
    if current.get("fingerprint") != baseline.get("fingerprint"):
        return (f"the baseline (run {baseline.get('run_id')}) was taken with another traffic mix than profile "
                f"{current.get('profile')} now has: accept this run with --update-baseline")
    return None


def regressions(current: dict[str, Any], baseline: dict[str, Any], tolerance: Tolerance) -> list[Expectation]:
    """One expectation per request name and per group present in both runs with enough samples: its
    p95 and its error rate may not be worse than the baseline's beyond the tolerance."""
    found: list[Expectation] = []
    for section in ("groups", "requests"):
        now, before = current.get(section, {}), baseline.get(section, {})
        for name in sorted(set(now) & set(before)):
            a, b = now[name], before[name]
            if min(a.get("count", 0), b.get("count", 0)) < MIN_SAMPLES:
                continue
            evidence = {"baseline_run": baseline.get("run_id"), "samples": a["count"], "baseline_samples": b["count"]}
            if a.get("p95_ms") is not None and b.get("p95_ms") is not None:
                found.append(at_most(f"{name}: p95 against the baseline", a["p95_ms"],
                                     round(tolerance.limit_ms(b["p95_ms"]), 2), "ms", evidence=evidence,
                                     detail=f"baseline p95 {b['p95_ms']} ms"))
            if a.get("error_rate") is not None and b.get("error_rate") is not None:
                found.append(at_most(f"{name}: error rate against the baseline", a["error_rate"],
                                     round(tolerance.limit_rate(b["error_rate"]), 5), evidence=evidence,
                                     detail=f"baseline error rate {b['error_rate']}"))
    return found


def stored_capacity(baseline: dict[str, Any] | None, figures: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The stored stress baseline's capacity, to compare this search's ``figures`` with, or why
    there is none to use."""
    if baseline is None:
        return None, "no stress baseline is stored"
    if comparable(figures, baseline):
        return None, f"the stored stress baseline (run {baseline.get('run_id')}) had another traffic mix or step_s"
    if not baseline.get("capacity_rps"):
        return None, f"the stored stress baseline (run {baseline.get('run_id')}) has no capacity"
    return {"capacity_rps": baseline["capacity_rps"], "capacity_bracket_rps": baseline.get("capacity_bracket_rps"),
            "source": f"the stored stress baseline (run {baseline.get('run_id')}, {baseline.get('at')})"}, ""


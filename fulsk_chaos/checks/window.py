"""The fault window, measured: how the stack answered while a fault was active.

Every fault scenario asks the same questions of that window - did users get answers in time,
did any request hang, did /health tell the truth about the faulted dependency - so they are
measured once, here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..figures import FaultWindowFigures
from ..probes import FleetRecord, Samples
from ..probes.http import READS
from ..verdict import Evidence, Expectation, at_least, at_most, below, skipped
from .steady import no_unanswered
from .users import answered_ok


READ_P95 = "during: read p95 (list, latest, history)"


@dataclass(frozen=True)
class FaultWindow:
    # what a stalled host can break (see checks.validity)
    LATENCY = ("during: api p99", READ_P95)
    start: float
    end: float
    samples: Samples          # every probe sample started while the fault was active, hangs included
    acked: int                # readings the broker acknowledged meanwhile
    dependency: str | None    # what /health should report down, if anything

    @property
    def api(self) -> Samples:
        return self.samples.target("api")

    @property
    def reported_down(self) -> Samples:
        if self.dependency is None:
            return Samples([])
        return self.samples.target("health").where(lambda s: s.reports_down(self.dependency))

    @property
    def health_detect_s(self) -> float | None:
        first = min((s.started for s in self.reported_down), default=None)
        return None if first is None else first - self.start

    @property
    def reads(self) -> Samples:
        return self.samples.target(*READS)

    def expectations(self, settings: Settings, *, read_p95_ms: float | None = None,
                     read_error_rate: float | None = None, health_skipped: str = "") -> list[Expectation]:
        """Always: answers in time (p99 under the alert threshold, nothing hanging). Where the
        scenario holds users to more while the fault lasts (a slow dependency is not a down one):
        the p95 and error rate of every read users make."""
        api, reads = self.api, self.reads
        checks = [
            below("during: api p99", api.quantile_ms(0.99), settings.alerts.http_response_ms, "ms",
                  evidence={"samples": len(api)}),
            no_unanswered("during: ", self.samples),
        ]
        if read_p95_ms is not None:
            checks.append(at_most(READ_P95, reads.quantile_ms(0.95), read_p95_ms,
                                  "ms", evidence={"samples": len(reads)}))
        if read_error_rate is not None:
            checks.append(at_most("during: read error rate (list, latest, history)",
                                  reads.error_rate(answered_ok), read_error_rate, evidence={"samples": len(reads)}))
        if self.dependency is not None and health_skipped:
            checks.append(skipped(f"during: /health reported {self.dependency} down", health_skipped))
        elif self.dependency is not None:
            health = self.samples.target("health")
            checks.append(at_least(f"during: /health reported {self.dependency} down", len(self.reported_down), 1,
                                   evidence={"health_samples": len(health), "detect_s": self.health_detect_s}))
        return checks

    def evidence(self, *, samples: int, acked: int) -> list[Evidence]:
        return [Evidence("during: API samples", len(self.api), samples),
                Evidence("during: readings acknowledged by the broker", self.acked, acked)]

    def figures(self, host: dict[str, Any] | None = None) -> FaultWindowFigures:
        api = self.api
        return FaultWindowFigures(
            error_rate=api.error_rate(), p95_ms=api.quantile_ms(0.95), p99_ms=api.quantile_ms(0.99),
            read_p95_ms=self.reads.quantile_ms(0.95), read_error_rate=self.reads.error_rate(answered_ok),
            max_ms=api.max_ms(), unanswered=self.samples.unanswered(), fault_samples=len(self.samples),
            health_detect_s=self.health_detect_s, health_reported_down=len(self.reported_down),
            acked_during_fault=self.acked, fault_host=host)


def fault_window(snapshot: Samples, fleet: FleetRecord, start: float, end: float, *,
                 dependency: str | None = None) -> FaultWindow:
    return FaultWindow(start, end, snapshot.window(start, end), len(fleet.acked_between(start, end)), dependency)

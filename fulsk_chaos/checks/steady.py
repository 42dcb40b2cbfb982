"""The steady-state hypothesis, as numbers: what 'the stack is fine' means, from the ops guide."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..probes.http import Samples


@dataclass(frozen=True)
class Check:
    name: str
    measured: float
    limit: float
    unit: str = ""

    @property
    def ok(self) -> bool:
        return not math.isnan(self.measured) and self.measured <= self.limit

    def __str__(self) -> str:
        return f"{self.name} = {self.measured:.3g}{self.unit} (limit {self.limit:g}{self.unit}) " + (
            "ok" if self.ok else "VIOLATED")


def steady_state(samples: Samples, config: Config) -> list[Check]:
    """API p95 within the response-time baseline, API and health errors within the alert rate."""
    api, health = samples.target("api"), samples.target("health")
    return [
        Check("api p95", api.quantile_ms(0.95), config.baselines.api_response_ms, " ms"),
        Check("api error rate", api.error_rate(), config.alerts.error_rate),
        Check("health not ok", health.error_rate(), config.alerts.error_rate),
    ]


def assert_holds(checks: list[Check], when: str) -> None:
    failed = [c for c in checks if not c.ok]
    assert not failed, f"steady-state hypothesis does not hold {when}: " + "; ".join(map(str, failed))

"""Whether a window measured the stack, or the host and the harness around it.

Two things can decide a latency figure besides the stack: the host (two cores shared by the
stack, the observers, the faults' own clients and whatever else runs: Linux's pressure stall
information says how much of the window something waited) and the observers themselves (how late
they sent a due request, stamped an arrival, published a reading). Both are recorded for every
window; they excuse nothing on their own. A window that broke a latency expectation while either
was beyond its bound is measured once more, and one that stays so is ``invalid`` with the figures:
a stack slow on a quiet host still fails.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config import Settings
from ..probes.http import quantile
from ..verdict import Expectation, at_most


@dataclass(frozen=True)
class HostFigures:
    """One window's host pressure (PSI "some" share per resource; empty without PSI) and the
    observers' scheduling lag (seconds, every tick and every due sample of the window)."""
    stall: dict[str, float] = field(default_factory=dict)
    lags_s: Sequence[float] = ()

    @property
    def lag_p99_ms(self) -> float | None:
        return round(quantile(list(self.lags_s), 0.99) * 1000, 1) if self.lags_s else None

    def limits(self, settings: Settings) -> dict[str, tuple[float | None, float, str]]:
        v = settings.validity
        return {"host CPU stall": (self.stall.get("cpu"), v.max_cpu_stall, "share of the window"),
                "host I/O stall": (self.stall.get("io"), v.max_io_stall, "share of the window"),
                "host memory stall": (self.stall.get("memory"), v.max_memory_stall, "share of the window"),
                "observers' scheduling lag p99": (self.lag_p99_ms, v.max_observer_lag_ms, "ms")}

    def beyond(self, settings: Settings) -> list[str]:
        """What was beyond its bound: the reasons the window may have measured the host or us."""
        return [f"{name} {measured:g} > {limit:g}" for name, (measured, limit, _) in self.limits(settings).items()
                if measured is not None and measured > limit]

    def expectations(self, prefix: str, settings: Settings) -> list[Expectation]:
        """Validity expectations: the verdict is ``invalid`` if one of them does not hold."""
        return [at_most(prefix + name, measured, limit, "" if unit != "ms" else "ms", kind="validity",
                        evidence={"lag_samples": len(self.lags_s)} if unit == "ms" else {"unit": unit})
                for name, (measured, limit, unit) in self.limits(settings).items() if measured is not None]

    def to_json(self) -> dict[str, Any]:
        lags = list(self.lags_s)
        return {"stall_share": dict(self.stall),
                "observer_lag_ms": {"p50": round(quantile(lags, 0.5) * 1000, 1), "p99": self.lag_p99_ms,
                                    "max": round(max(lags) * 1000, 1), "samples": len(lags)} if lags else None}

"""Every request of a load run as a sample, and the figures of any window of it.

Locust's own statistics cover a whole run; chaos under load and the stress ramp need the same
figures for windows of it (before, during and after a fault; one step), so each Locust process
writes its request events and they are computed here, exactly (no histogram buckets).
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

# The locustfile's request names that the baselines read.
PAGE_LOAD = "dashboard page load"
# The ok column of a request the open model held back (too many in flight): a failure, never answered.
UNSENT = "u"
READING_DELAY = "reading publish to arrival"


@dataclass(frozen=True)
class LoadSample:
    start: float      # time.time() the request was due (open model) or sent
    type: str         # GET, PAGE, WS, MQTT
    name: str
    ms: float
    ok: bool
    sent: bool = True  # False: held back by the generator (a failure the stack never saw)

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000

    @property
    def http(self) -> bool:
        return self.type in ("GET", "POST", "PUT", "DELETE", "HEAD")


PAGE_PREFIX = "page "  # the name of a dashboard page's own request (its files, its health check)


def _static(name: str) -> bool:
    return name.startswith(PAGE_PREFIX)


# The groups the ops guide's figures are about: (what, which samples).
GROUPS: dict[str, Callable[[LoadSample], bool]] = {
    "page load": lambda s: s.type == "PAGE",
    "api": lambda s: s.http and not _static(s.name),  # the reads users make, whatever the backend's paths
    "http": lambda s: s.http,
    "websocket": lambda s: s.type == "WS",
    "mqtt publish": lambda s: s.type == "MQTT",
}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (None when there are none)."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


@dataclass(frozen=True)
class Figures:
    count: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    throughput_rps: float

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.count if self.count else None

    @classmethod
    def of(cls, samples: list[LoadSample], duration_s: float) -> "Figures":
        # Latency of answered requests; a failure counts in the error rate (a fast 503 is no success).
        times = sorted(s.ms for s in samples if s.ok)
        return cls(len(samples), sum(1 for s in samples if not s.ok), percentile(times, 50), percentile(times, 95),
                   percentile(times, 99), times[-1] if times else None,
                   len(samples) / duration_s if duration_s > 0 else 0.0)

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)
        return {"count": self.count, "failures": self.failures,
                "error_rate": None if self.error_rate is None else round(self.error_rate, 5),
                "p50_ms": r(self.p50_ms), "p95_ms": r(self.p95_ms), "p99_ms": r(self.p99_ms), "max_ms": r(self.max_ms),
                "throughput_rps": round(self.throughput_rps, 2)}


class LoadSamples:
    def __init__(self, samples: Iterable[LoadSample]) -> None:
        self.samples = sorted(samples, key=lambda s: s.start)

    @classmethod
    def read(cls, directory: Path) -> "LoadSamples":
        samples = []
        for path in sorted(Path(directory).glob("samples-*.csv")):
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if len(row) == 5:
                        samples.append(LoadSample(float(row[0]), row[1], row[2], float(row[3]), row[4] == "1",
                                                  row[4] != UNSENT))
        return cls(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def window(self, start: float | None = None, end: float | None = None, *, finished: bool = False) -> "LoadSamples":
        """The requests due (or sent) within ``start``..``end`` (time.time()); with ``finished``,
        only those also answered by ``end``: a steady window before a fault must not be judged on
        requests the fault caught in flight (a reading published just before a kill and delivered
        after the recovery is the fault's, not the steady state's)."""
        return LoadSamples(s for s in self.samples
                           if (start is None or s.start >= start) and (end is None or s.start < end)
                           and not (finished and end is not None and s.end > end))

    def group(self, name: str) -> list[LoadSample]:
        return [s for s in self.samples if GROUPS[name](s)]

    def figures(self, duration_s: float) -> dict[str, Figures]:
        """Per group (page load, api, http, websocket, mqtt publish), those with samples."""
        result = {}
        for name in GROUPS:
            members = self.group(name)
            if members:
                result[name] = Figures.of(members, duration_s)
        return result

    def by_name(self, duration_s: float) -> dict[str, Figures]:
        """Per request name (``TYPE name``): what a regression in one endpoint shows in."""
        named: dict[str, list[LoadSample]] = defaultdict(list)
        for s in self.samples:
            named[f"{s.type} {s.name}"].append(s)
        return {name: Figures.of(members, duration_s) for name, members in sorted(named.items())}

"""What users and inverters experienced, second by second, for the report's timeline chart:
API latency (p50, p95) and error rate, readings acknowledged by the broker and delivered on the
live feed (and the feed's delay p95), and how stale the answers were. Kept in results.json, so
a report can be drawn again from it alone."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from ..probes import FleetRecord, Sample
from ..probes.fleet import Key
from ..probes.http import quantile
from ..wait import epoch_of
from .users import Served, answered_ok


def timeline(judged: Sequence[tuple[Sample, Served | None]], fleet: FleetRecord, arrivals: dict[Key, float],
             start: float, end: float, bucket_s: float = 1.0) -> dict[str, Any]:
    """Per bucket of ``bucket_s`` from ``start`` to ``end`` (time.monotonic()), from the probe's
    samples each with its judged answer (``judge_answer``); ``t0`` is ``start`` as epoch seconds,
    ``t`` each bucket's start in seconds from it."""
    n = max(1, math.ceil((end - start) / bucket_s))

    def bucket(at: float) -> int | None:
        i = int((at - start) // bucket_s)
        return i if 0 <= i < n else None
    api: list[list[float]] = [[] for _ in range(n)]
    reads, failed = Counter(), Counter()
    stale: list[list[float]] = [[] for _ in range(n)]
    for s, served in judged:
        i = bucket(s.started)
        if i is None:
            continue
        if s.target == "api" and s.answered:
            api[i].append(s.latency_s * 1000)
        if s.target in ("api", "latest", "history"):
            reads[i] += 1
            failed[i] += not answered_ok(s)
        if served is not None and served.staleness_s is not None:
            stale[i].append(served.staleness_s)
    acked = Counter(bucket(m.acked_at) for m in fleet.by_key.values() if m.acked_at is not None)
    delivered = Counter(bucket(at) for at in arrivals.values())
    live: list[list[float]] = [[] for _ in range(n)]  # feed delays, by when the reading was sent
    for key, at in arrivals.items():
        m = fleet.by_key.get(key)
        if m is not None and (i := bucket(m.sent_at)) is not None:
            live[i].append((at - m.sent_at) * 1000)

    def r(value: float, digits: int = 1) -> float | None:
        return None if value is None or math.isnan(value) else round(value, digits)
    return {
        "t0": round(epoch_of(start), 3), "bucket_s": bucket_s,
        "t": [round(i * bucket_s, 3) for i in range(n)],
        "api_p50_ms": [r(quantile(v, 0.5)) if v else None for v in api],
        "api_p95_ms": [r(quantile(v, 0.95)) if v else None for v in api],
        "error_rate": [r(failed[i] / reads[i], 3) if reads[i] else None for i in range(n)],
        "acked_per_s": [acked[i] / bucket_s for i in range(n)],
        "delivered_per_s": [delivered[i] / bucket_s for i in range(n)],
        "live_delay_p95_ms": [r(quantile(v, 0.95)) if v else None for v in live],
        "staleness_p95_s": [r(quantile(v, 0.95), 2) if v else None for v in stale],
    }

"""The read path as users see it: /health and one API endpoint, sampled on a fixed cadence.

Requests are issued on schedule from a pool, so one hung request never delays the next sample:
a hang shows up as a slow or unanswered sample, not as a gap in the record.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import requests


@dataclass(frozen=True)
class Sample:
    target: str          # "health" or "api"
    started: float       # time.monotonic()
    latency_s: float
    status: int | None   # None: no HTTP answer (connection refused, reset, or timed out)
    error: str | None = None
    health: dict | None = None  # the parsed /health body, when there was one

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        if self.target == "health":
            return self.status == 200 and (self.health or {}).get("status") == "ok"
        return self.status is not None and 200 <= self.status < 300

    def dependency(self, name: str) -> str | None:
        """A dependency's status as /health reported it ('ok', 'down', ...), None if unknown."""
        return ((self.health or {}).get("dependencies") or {}).get(name, {}).get("status")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))]


class Samples:
    """An ordered, immutable selection of samples with the statistics verdicts are made of."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._samples = sorted(samples, key=lambda s: s.started)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def where(self, predicate: Callable[[Sample], bool]) -> "Samples":
        return Samples(s for s in self._samples if predicate(s))

    def target(self, name: str) -> "Samples":
        return self.where(lambda s: s.target == name)

    def window(self, start: float, end: float | None = None) -> "Samples":
        return self.where(lambda s: s.started >= start and (end is None or s.started <= end))

    def latencies_ms(self) -> list[float]:
        return [s.latency_s * 1000 for s in self._samples]

    def quantile_ms(self, q: float) -> float:
        return _quantile(self.latencies_ms(), q)

    def max_ms(self) -> float:
        return max(self.latencies_ms(), default=float("nan"))

    def error_rate(self) -> float:
        return sum(not s.ok for s in self._samples) / len(self._samples) if self._samples else float("nan")

    def unanswered(self) -> int:
        return sum(not s.answered for s in self._samples)

    def first_streak(self, after: float, streak_s: float, healthy: Callable[[Sample], bool] = lambda s: s.ok
                     ) -> float | None:
        """Start of the first run of healthy samples, begun at or after ``after``, lasting ``streak_s``."""
        streak_start: float | None = None
        for sample in self._samples:
            if sample.started < after:
                continue
            if not healthy(sample):
                streak_start = None
                continue
            if streak_start is None:
                streak_start = sample.started
            if sample.started - streak_start >= streak_s:
                return streak_start
        return None


class Probe:
    """Samples ``/health`` and ``api_path`` every ``interval_s``; stops by itself after ``max_duration_s``."""

    def __init__(self, base_url: str, *, api_path: str = "/api/inverters", interval_s: float = 0.1,
                 timeout_s: float = 5.0, max_duration_s: float = 1800.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.targets = {"health": "/health", "api": api_path}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        # Enough workers that requests hanging for the whole timeout never starve the schedule.
        workers = 2 * len(self.targets) * (int(timeout_s / interval_s) + 1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._thread: threading.Thread | None = None

    def start(self) -> "Probe":
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        started = next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.max_duration_s:
            for target in self.targets:
                self._pool.submit(self._sample, target)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _sample(self, target: str) -> None:
        start = time.monotonic()
        status, error, health = None, None, None
        try:
            response = self._session().get(self.base_url + self.targets[target], timeout=self.timeout_s)
            status = response.status_code
            if target == "health" and "json" in response.headers.get("content-type", ""):
                health = response.json()
        except (requests.RequestException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        sample = Sample(target, start, time.monotonic() - start, status, error, health)
        with self._lock:
            self._samples.append(sample)

    @property
    def samples(self) -> Samples:
        with self._lock:
            return Samples(list(self._samples))

    def observe(self, seconds: float) -> Samples:
        """Wait ``seconds`` and return the samples started in that span (and answered by its end)."""
        start = time.monotonic()
        time.sleep(seconds)
        return self.samples.window(start)

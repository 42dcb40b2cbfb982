"""The read path as users see it: HTTP targets (health, the API, an inverter's latest reading)
sampled on a fixed cadence through the frontend.

Requests are issued on schedule from a pool, so one hung request never delays the next sample:
a hang shows up as an unanswered sample, not as a gap in the record. Requests still in flight
are part of every snapshot once they are older than the hang threshold, so a hang is judged
whenever it happens, not only if it ends before someone looks.
"""
from __future__ import annotations

import itertools
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import requests


@dataclass(frozen=True)
class Target:
    """What a probe asks for: a fixed path, or one computed per request (``path(i)`` returns the
    i-th request's path and what it asked for, e.g. which inverter)."""
    name: str
    path: str | Callable[[int], tuple[str, dict[str, Any]]]
    json: bool = False  # keep the parsed body for the checks
    meta: Mapping[str, Any] = field(default_factory=dict)  # what a fixed path asks for

    def request(self, i: int) -> tuple[str, dict[str, Any]]:
        return (self.path, dict(self.meta)) if isinstance(self.path, str) else self.path(i)


@dataclass(frozen=True)
class Sample:
    target: str
    started: float       # time.monotonic()
    latency_s: float     # for a pending sample: its age when the snapshot was taken
    status: int | None   # None: no HTTP answer (refused, reset, timed out, or still pending)
    error: str | None = None
    body: Any = None     # the parsed JSON body, for targets that keep it
    meta: Mapping[str, Any] = field(default_factory=dict)  # what the request asked for
    pending: bool = False  # still unanswered when the snapshot was taken (and older than the hang threshold)
    refused: bool = False  # no HTTP answer, but told at once (connection refused or reset): an error, not a hang

    @property
    def answered(self) -> bool:
        """Told something in time: an HTTP status, or a refused or reset connection (a fast error).
        Unanswered is a hang: a timeout, or a request still in flight past the threshold."""
        return self.status is not None or self.refused

    @property
    def ok(self) -> bool:
        if self.target == "health":
            return self.status == 200 and isinstance(self.body, dict) and self.body.get("status") == "ok"
        return self.status is not None and 200 <= self.status < 300

    @property
    def health(self) -> dict | None:
        return self.body if self.target == "health" and isinstance(self.body, dict) else None

    def dependency(self, name: str) -> str | None:
        """A dependency's status as /health reported it ('ok', 'down', ...), None if unknown."""
        return ((self.health or {}).get("dependencies") or {}).get(name, {}).get("status")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))]


class Samples:
    """An ordered, immutable selection of samples with the statistics verdicts are made of.

    ``horizon``: samples started at or after it may still be missing (requests in flight, not yet
    old enough to call hung); anything that needs an unbroken record stops there.
    """

    def __init__(self, samples: Iterable[Sample], horizon: float = float("inf")) -> None:
        self._samples = sorted(samples, key=lambda s: s.started)
        self.horizon = horizon

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def where(self, predicate: Callable[[Sample], bool]) -> "Samples":
        return Samples((s for s in self._samples if predicate(s)), self.horizon)

    def target(self, *names: str) -> "Samples":
        return self.where(lambda s: s.target in names)

    def window(self, start: float, end: float | None = None) -> "Samples":
        return self.where(lambda s: s.started >= start and (end is None or s.started <= end))

    def latencies_ms(self) -> list[float]:
        return [s.latency_s * 1000 for s in self._samples]

    def quantile_ms(self, q: float) -> float:
        return quantile(self.latencies_ms(), q)

    def max_ms(self) -> float:
        return max(self.latencies_ms(), default=float("nan"))

    def error_rate(self, ok: Callable[[Sample], bool] = lambda s: s.ok) -> float:
        return sum(not ok(s) for s in self._samples) / len(self._samples) if self._samples else float("nan")

    def unanswered(self) -> int:
        return sum(not s.answered for s in self._samples)

    def first_streak(self, after: float, streak_s: float, healthy: Callable[[Sample], bool] = lambda s: s.ok
                     ) -> float | None:
        """Start of the first run of healthy samples, begun at or after ``after``, lasting ``streak_s``
        and complete before the horizon (a request still in flight may yet break it)."""
        streak_start: float | None = None
        for sample in self._samples:
            if sample.started < after:
                continue
            if sample.started >= self.horizon:
                return None
            if not healthy(sample):
                streak_start = None
                continue
            if streak_start is None:
                streak_start = sample.started
            if sample.started - streak_start >= streak_s:
                return streak_start
        return None


class Probe:
    """Samples each target every ``interval_s``; stops by itself after ``max_duration_s``."""

    def __init__(self, base_url: str, targets: Iterable[Target], *, interval_s: float = 0.1,
                 timeout_s: float = 2.0, max_duration_s: float = 1800.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.targets = {t.name: t for t in targets}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        self._samples: list[Sample] = []
        self._inflight: dict[int, tuple[Target, float, dict[str, Any]]] = {}
        self._tokens = itertools.count()
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
        self._pool.shutdown(wait=True)  # every request is bounded by the timeout

    def _run(self) -> None:
        started = next_at = time.monotonic()
        i = 0
        while not self._stop.is_set() and time.monotonic() - started < self.max_duration_s:
            for target in self.targets.values():
                self._pool.submit(self._sample, target, i)
            i += 1
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _sample(self, target: Target, i: int) -> None:
        path, meta = target.request(i)
        token = next(self._tokens)
        start = time.monotonic()
        with self._lock:
            self._inflight[token] = (target, start, meta)
        status, error, body, refused = None, None, None, False
        try:
            response = self._session().get(self.base_url + path, timeout=self.timeout_s)
            status = response.status_code
            if target.json and "json" in response.headers.get("content-type", ""):
                body = response.json()
        except (requests.RequestException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            refused = isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)
        sample = Sample(target.name, start, time.monotonic() - start, status, error, body, meta, refused=refused)
        with self._lock:
            del self._inflight[token]
            self._samples.append(sample)

    def snapshot(self, hang_s: float) -> Samples:
        """Every answered sample, plus each request still in flight for ``hang_s`` or more (a hang,
        unanswered); requests in flight for less are not judged yet and set the horizon."""
        now = time.monotonic()
        with self._lock:
            samples = list(self._samples)
            inflight = list(self._inflight.values())
        horizon = float("inf")
        for target, started, meta in inflight:
            if now - started >= hang_s:
                samples.append(Sample(target.name, started, now - started, None,
                                      f"no answer after {now - started:.1f} s", meta=meta, pending=True))
            else:
                horizon = min(horizon, started)
        return Samples(samples, horizon)

    def settle(self, until: float, hang_s: float, poll_s: float = 0.02) -> None:
        """Wait until every request started by ``until`` is answered or old enough to be a hang."""
        while True:
            now = time.monotonic()
            with self._lock:
                waiting = [s for _, s, _ in self._inflight.values() if s <= until and now - s < hang_s]
            if not waiting:
                return
            time.sleep(poll_s)

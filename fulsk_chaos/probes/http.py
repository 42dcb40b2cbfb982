"""The read path as users see it: HTTP targets (health, the API, an inverter's latest reading)
sampled on a fixed cadence through the frontend, by an observer process of its own.

Requests are issued on schedule, each in a task of its own, so one hung request never delays
the next sample: a hang shows up as an unanswered sample, not as a gap in the record. Requests
still in flight are part of every snapshot once the observer has seen them unanswered for the
hang threshold, so a hang is judged whenever it happens, not only if it ends before someone looks.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..contract import Health, at, from_epoch
from .observer import Emitter, Observed, ObserverError, Stopping


HEALTH = asdict(Health())  # the reference backend's health answer
READS = ("api", "latest", "history", "generation")  # the probe's targets that are reads users make


@dataclass(frozen=True)
class Target:
    """What a probe asks for. ``path`` may name ``{inverter}`` (the i-th request asks for
    ``inverters[i % n]``) and ``{from}``/``{to}`` (the last ``span_s`` seconds, epoch); what was
    asked goes into each sample's meta (``inverter_id``, ``from``, ``to``) with ``meta``."""
    name: str
    path: str
    json: bool = False  # keep the parsed body for the checks
    meta: Mapping[str, Any] = field(default_factory=dict)
    inverters: tuple[str, ...] = ()
    span_s: float | None = None
    time_format: str = "epoch_s"  # how {from} and {to} are written (the backend contract's: epoch_s, epoch_ms, iso8601)

    def request(self, i: int, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """The i-th request's path, and what it asked for (``now``: epoch seconds)."""
        meta, fields = dict(self.meta), {}
        if self.inverters:
            fields["inverter"] = meta["inverter_id"] = self.inverters[i % len(self.inverters)]
        if self.span_s is not None:
            end = round(time.time() if now is None else now, 3)
            meta["from"], meta["to"] = round(end - self.span_s, 3), end
            fields["from"], fields["to"] = from_epoch(meta["from"], self.time_format), from_epoch(end, self.time_format)
        return (self.path.format(**fields) if fields else self.path), meta

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "meta": dict(self.meta), "inverters": list(self.inverters)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Target":
        return cls(**{**data, "inverters": tuple(data.get("inverters") or ())})


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
    lag_s: float = 0.0     # how late the observer sent it after it was due: its own scheduling, not the stack's

    @property
    def answered(self) -> bool:
        """Told something in time: an HTTP status, or a refused or reset connection (a fast error).
        Unanswered is a hang: a timeout, or a request still in flight past the threshold."""
        return self.status is not None or self.refused

    @property
    def ok(self) -> bool:
        if self.target == "health":  # healthy as the backend's contract says (the target's meta carries it)
            spec = self.meta.get("health") or HEALTH
            try:
                return self.status == 200 and at(self.body, spec["status"]) in spec["healthy"]
            except (KeyError, TypeError, IndexError):
                return False
        return self.status is not None and 200 <= self.status < 300

    @property
    def health(self) -> dict | None:
        return self.body if self.target == "health" and isinstance(self.body, dict) else None

    def dependency(self, name: str) -> str | None:
        """A dependency's status as the health answer reported it ('ok', 'down', ...), None if unknown."""
        spec = self.meta.get("health") or HEALTH
        if self.health is None or not spec["dependencies"]:
            return None
        try:
            named = (spec.get("names") or {}).get(name, name)  # the backend's own name for the service
            return str(at(at(self.health, spec["dependencies"])[named], spec["dependency_status"]))
        except (KeyError, TypeError, IndexError):
            return None

    def reports_down(self, name: str) -> bool:
        """The health answer said the dependency ``name`` is down (in the contract's words)."""
        return self.dependency(name) in (self.meta.get("health") or HEALTH)["down"]


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


class Probe(Observed):
    """Samples each target every ``interval_s`` from an observer process of its own; stops by
    itself after ``max_duration_s``. Here: the samples as they stream in."""

    KIND = "probe"

    def __init__(self, base_url: str, targets: Iterable[Target], *, interval_s: float = 0.1,
                 timeout_s: float = 2.0, max_duration_s: float = 1800.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.targets = {t.name: t for t in targets}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        self._samples: list[Sample] = []
        self._inflight: dict[int, tuple[str, float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _spec(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "targets": [t.to_json() for t in self.targets.values()],
                "interval_s": self.interval_s, "timeout_s": self.timeout_s}

    def stop(self) -> None:
        """Stop sampling; every request in flight is answered or timed out first."""
        if self.observer is not None:
            self.observer.stop(self.timeout_s + 10)

    def _event(self, event: dict[str, Any]) -> None:
        if event["e"] == "start":
            with self._lock:
                self._inflight[event["k"]] = (event["n"], event["t"], event.get("m") or {})
        elif event["e"] == "sample":
            sample = Sample(event["n"], event["t"], event["l"], event.get("s"), event.get("x"), event.get("b"),
                            event.get("m") or {}, refused=event.get("r", False), lag_s=event.get("lag", 0.0))
            with self._lock:
                self._inflight.pop(event["k"], None)
                self._samples.append(sample)

    def snapshot(self, hang_s: float) -> Samples:
        """Every answered sample, plus each request the observer has seen unanswered for ``hang_s``
        or more (a hang); requests in flight for less are not judged yet and set the horizon, as
        does the observer's last tick (what it sent after that has not reached us yet)."""
        observer = self.observer
        if observer is not None:
            observer.check()
        seen_at = observer.horizon if observer is not None else time.monotonic()
        with self._lock:
            samples = list(self._samples)
            inflight = list(self._inflight.values())
        horizon = seen_at
        for name, started, meta in inflight:
            if seen_at - started >= hang_s:
                samples.append(Sample(name, started, seen_at - started, None,
                                      f"no answer after {seen_at - started:.1f} s", meta=meta, pending=True))
            else:
                horizon = min(horizon, started)
        return Samples(samples, horizon)

    def settle(self, until: float, hang_s: float) -> None:
        """Wait until every request started by ``until`` is here, and answered or old enough to be a hang."""
        def settled(observer: Any) -> bool:
            with self._lock:
                waiting = [s for _, s, _ in self._inflight.values() if s <= until and observer.horizon - s < hang_s]
            return observer.horizon >= until and not waiting
        self._poll(settled, max(until, time.monotonic()) + hang_s + 10.0, 0.02, lambda observer:
                   f"the probe observer has not ticked since {time.monotonic() - observer.horizon:.1f} s ago")

    def asked_since(self, since: float, timeout_s: float | None = None) -> None:
        """Wait until every target has been asked at least once at or after ``since``: a fault over
        in less than the probe's interval (a graceful restart, tens of ms) is then still sampled."""
        def asked() -> set[str]:
            with self._lock:
                found = {n for n, s, _ in self._inflight.values() if s >= since}
                for sample in reversed(self._samples):  # in the order answered: none started before since - timeout after
                    if sample.started < since - self.timeout_s:
                        break
                    if sample.started >= since:
                        found.add(sample.target)
            return found
        self._poll(lambda _: asked() >= set(self.targets),
                   time.monotonic() + (timeout_s if timeout_s is not None else 3 * self.interval_s + 10.0), 0.01,
                   lambda _: f"the probe asked only {sorted(asked())} of {sorted(self.targets)} since the fault began")

    def _poll(self, done: Callable[[Any], bool], deadline: float, poll_s: float, why: Callable[[Any], str]) -> None:
        """The observer's progress, polled until ``done`` (or the observer stopped); past
        ``deadline`` it is an ObserverError saying ``why`` with the observer's last words."""
        while (observer := self.observer) is not None and observer.running:
            observer.check()
            if done(observer):
                return
            if time.monotonic() > deadline:
                raise ObserverError(f"{why(observer)}: {observer.stderr_tail()}")
            time.sleep(poll_s)

    def lags_s(self, start: float, end: float) -> list[float]:
        """The observer's scheduling lag over ``start``..``end``: its ticks', and each sample's."""
        lags = super().lags_s(start, end)
        with self._lock:
            return lags + [s.lag_s for s in self._samples if start <= s.started <= end]


# --- in the observer process -------------------------------------------------------------------
def observe(args: dict[str, Any], emitter: Emitter, stopping: Stopping) -> None:
    import asyncio
    asyncio.run(_observe(args, emitter, stopping))


async def _observe(args: dict[str, Any], emitter: Emitter, stopping: Stopping) -> None:
    import asyncio
    import aiohttp
    from .observer import async_ticker
    targets = [Target.from_json(t) for t in args["targets"]]
    base, interval, timeout = args["base_url"], float(args["interval_s"]), float(args["timeout_s"])
    tasks: set[asyncio.Task] = set()
    tokens = iter(range(1 << 62))
    ticking = asyncio.ensure_future(async_ticker(emitter, stopping))
    # one connection pool, unbounded: a request hanging for the whole timeout never queues another
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        due, i = time.monotonic(), 0
        while not stopping.is_set():
            for target in targets:
                task = asyncio.ensure_future(_sample(session, base, target, i, next(tokens), due, emitter))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks)  # each is bounded by the timeout
    ticking.cancel()


async def _sample(session: Any, base: str, target: Target, i: int, token: int, due: float, emitter: Emitter) -> None:
    import asyncio
    import json
    import aiohttp
    path, meta = target.request(i)
    started = emitter.emit({"e": "start", "k": token, "n": target.name, "m": meta}, stamp="t")
    status, error, body, refused = None, None, None, False
    try:
        async with session.get(base + path) as response:
            data = await response.read()  # an answer cut short is no answer, whatever its status line said
            status = response.status
            if target.json and "json" in response.headers.get("content-type", ""):
                body = json.loads(data)  # a whole answer that is not JSON is the server's, and judged
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
        # told at once (refused, reset, closed): an error, not a hang; a timeout is a hang
        refused = isinstance(exc, aiohttp.ClientError) and not isinstance(exc, asyncio.TimeoutError)
    emitter.emit({"e": "sample", "k": token, "n": target.name, "t": started, "l": round(time.monotonic() - started, 6),
                  "s": status, "x": error, "b": body, "m": meta, "r": refused, "lag": round(max(0.0, started - due), 4)})

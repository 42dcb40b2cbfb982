"""CPU and memory of each service and of the load generator, sampled from the host's /proc.

A service is its main process and every descendant (PostgreSQL's backends, nginx's workers, a
container's processes: with host networking on this host, a container's processes are ours to
see). CPU is in cores (1.0 = one core busy); the alert thresholds are judged as a share of the
machine, as a host's CPU alert sees it.

CPU *demand* adds the time a process was runnable but waiting for a core (the scheduler's
run-queue delay, /proc/PID/task/*/schedstat): on a machine the generator shares with the stack, a
generator starved of CPU is as saturated as one that used a whole core, and only demand shows it.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from ..host.procs import service_processes


@dataclass(frozen=True)
class Usage:
    t: float          # time.time() at the end of the interval
    cores: float      # CPU over the interval, in cores
    rss_bytes: int
    demand: float = 0.0  # cores used plus cores waited for (run-queue delay)


@dataclass(frozen=True)
class UsageSummary:
    cpu_mean_cores: float
    cpu_max_cores: float
    rss_max_bytes: int
    samples: int
    demand_mean_cores: float = 0.0

    @property
    def cpu_mean_percent(self) -> float:
        """Mean CPU as a share of the machine (what a host's CPU alert reads)."""
        return 100 * self.cpu_mean_cores / (os.cpu_count() or 1)

    @property
    def memory_max_percent(self) -> float:
        return 100 * self.rss_max_bytes / psutil.virtual_memory().total

    def to_json(self) -> dict[str, Any]:
        return {"cpu_mean_cores": round(self.cpu_mean_cores, 3), "cpu_max_cores": round(self.cpu_max_cores, 3),
                "cpu_demand_mean_cores": round(self.demand_mean_cores, 3),
                "cpu_mean_percent_of_machine": round(self.cpu_mean_percent, 1),
                "rss_max_mb": round(self.rss_max_bytes / 2 ** 20, 1),
                "memory_max_percent": round(self.memory_max_percent, 2), "samples": self.samples}


def _waited_s(pid: int) -> float:
    """Seconds the process's threads spent runnable, waiting for a core."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task.name}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return total / 1e9


def _tree_usage(pid: int) -> tuple[float, int, float]:
    """CPU seconds so far, RSS and seconds waited for CPU of a process tree (processes that vanish
    meanwhile are skipped)."""
    cpu, rss, waited = 0.0, 0, 0.0
    for p in service_processes(pid):
        try:
            proc = psutil.Process(p)
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
            waited += _waited_s(p)
        except psutil.Error:
            continue
    return cpu, rss, waited


class ResourceSampler:
    """Samples named process trees every ``interval_s`` in a thread until stopped.

    ``groups`` maps a name to a function giving its main pid now (a service restarted by a fault
    has a new one); a name whose pid is None is skipped for that interval.
    """

    def __init__(self, groups: dict[str, Callable[[], int | None]], interval_s: float = 1.0) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self.series: dict[str, list[Usage]] = {name: [] for name in groups}
        self._last: dict[str, tuple[float, float, int | None, float]] = {}  # name -> (wall, cpu s, pid, waited s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "ResourceSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ResourceSampler":
        self._sample()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def add(self, name: str, pid: Callable[[], int | None]) -> None:
        with self._lock:
            self.groups[name] = pid
            self.series.setdefault(name, [])

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            groups = dict(self.groups)
        for name, pid_of in groups.items():
            try:
                pid = pid_of()
            except Exception:  # noqa: BLE001 - a service being restarted has no pid for a moment
                pid = None
            if pid is None:
                self._last.pop(name, None)
                continue
            now = time.time()
            cpu, rss, waited = _tree_usage(pid)
            last = self._last.get(name)
            self._last[name] = (now, cpu, pid, waited)
            if last is not None and last[2] == pid and now > last[0]:
                used = max(0.0, cpu - last[1]) / (now - last[0])
                with self._lock:
                    self.series[name].append(Usage(now, used, rss, used + max(0.0, waited - last[3]) / (now - last[0])))

    def summary(self, name: str, start: float | None = None, end: float | None = None) -> UsageSummary | None:
        half = self.interval_s / 2  # a sample covers the interval before it: counted where most of it lies
        with self._lock:
            usage = [u for u in self.series.get(name, [])
                     if (start is None or u.t >= start + half) and (end is None or u.t <= end + half)]
        if not usage:
            return None
        return UsageSummary(sum(u.cores for u in usage) / len(usage), max(u.cores for u in usage),
                            max(u.rss_bytes for u in usage), len(usage), sum(u.demand for u in usage) / len(usage))

    def summaries(self, start: float | None = None, end: float | None = None) -> dict[str, UsageSummary]:
        return {name: s for name in list(self.series) if (s := self.summary(name, start, end)) is not None}

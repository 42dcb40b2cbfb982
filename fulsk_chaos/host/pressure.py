"""The host's own pressure, from Linux's pressure stall information (/proc/pressure/cpu, io,
memory): for any window, the share of it during which some task waited for a CPU, for I/O or for
memory. A latency measured while the host itself was stalled may have measured the host (two
cores shared by the stack, the observers and whatever else runs), not the stack.

    sampler = PressureSampler().start()
    ...
    sampler.shares(start, end)   # {"cpu": 0.04, "io": 0.0, "memory": 0.0}: "some" stall share
    sampler.stop()
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

RESOURCES = ("cpu", "io", "memory")
PSI = Path("/proc/pressure")


@dataclass(frozen=True)
class Reading:
    at: float                    # time.monotonic()
    totals: dict[str, int]       # resource -> "some" total stall, microseconds since boot
    avg10: dict[str, float]      # resource -> "some" avg10, percent


def read(root: Path = PSI) -> Reading | None:
    """One reading of every resource's "some" line; None where the kernel has no PSI."""
    totals, avg10 = {}, {}
    for resource in RESOURCES:
        try:
            line = (root / resource).read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        totals[resource], avg10[resource] = int(fields["total"]), float(fields["avg10"])
    return Reading(time.monotonic(), totals, avg10)


class PressureSampler:
    """Reads PSI every ``interval_s`` on a thread of its own (a few µs each), bounded by
    ``max_duration_s``; answers for any window it covered."""

    def __init__(self, interval_s: float = 0.25, max_duration_s: float = 3600.0, root: Path = PSI) -> None:
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.root = root
        self._readings: list[Reading] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return read(self.root) is not None

    def start(self) -> "PressureSampler":
        if not self.available:
            return self  # no PSI: every window says so (shares() is empty)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="host-pressure", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        reading = read(self.root)
        if reading is not None:
            with self._lock:
                self._readings.append(reading)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval_s) and time.monotonic() - started < self.max_duration_s:
            self._sample()

    def __enter__(self) -> "PressureSampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sample()

    def _around(self, t: float) -> Reading | None:
        """The reading nearest ``t``, taking a fresh one if ``t`` is past the last."""
        with self._lock:
            last = self._readings[-1] if self._readings else None
        if last is not None and t > last.at and not self._stop.is_set():
            self._sample()
        with self._lock:
            if not self._readings:
                return None
            i = bisect_left([r.at for r in self._readings], t)
            near = [r for r in self._readings[max(0, i - 1):i + 1]]
        return min(near, key=lambda r: abs(r.at - t))

    def shares(self, start: float, end: float) -> dict[str, float]:
        """Per resource, the share of ``start``..``end`` some task was stalled on it; empty
        without PSI or readings around the window."""
        a, b = self._around(start), self._around(end)
        if a is None or b is None or b.at - a.at <= 0:
            return {}
        span_us = (b.at - a.at) * 1e6
        return {r: round(min(1.0, (b.totals[r] - a.totals[r]) / span_us), 4) for r in RESOURCES}

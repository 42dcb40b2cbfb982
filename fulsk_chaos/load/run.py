"""A load test against a running stack: Locust in its own processes, and everything measured
around it - the stack's CPU and memory, the generator's own CPU, the database's statement times.

    with LoadTest(stack, profile, out_dir, workers=2) as load:   # returns once every user runs
        load.wait()                                               # or: inject faults meanwhile
    result = load.result                                          # judged with load.judge
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks.dbload import StatementTime, query_times, read_statement_stats
from ..lifecycle import StartStop
from .ledger import LoadLedger
from .profile import LoadProfile
from .resources import ResourceSampler
from .runner import LoadTarget, LocustRun
from .samples import LoadSamples


@dataclass
class LoadResult:
    profile: LoadProfile
    out_dir: Path
    samples: LoadSamples
    measured_from: float            # time.time(): every user started, warm-up over
    measured_to: float              # the test stopped
    resources: ResourceSampler
    db_before: dict[int, tuple[str, int, float]] | None
    db_after: dict[int, tuple[str, int, float]] | None
    locust_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ledger(self) -> LoadLedger:
        return LoadLedger(self.out_dir)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.measured_to - self.measured_from)

    def db_times(self) -> list[StatementTime] | None:
        if self.db_before is None or self.db_after is None:
            return None
        return query_times(self.db_before, self.db_after)


class LoadTest(StartStop):
    def __init__(self, stack: Any, profile: LoadProfile, out_dir: Path, *, workers: int = 1,
                 run_s: float | None = None, sample_interval_s: float = 1.0, target: LoadTarget | None = None) -> None:
        self.stack = stack
        self.profile = profile
        self.out_dir = Path(out_dir)
        self.locust = LocustRun(profile, target or LoadTarget.of(stack), self.out_dir, workers=workers, run_s=run_s)
        self.sampler = ResourceSampler({name: (lambda s=service: s.pid) for name, service in stack.services.items()},
                                       interval_s=sample_interval_s)
        self.spawned_at: float | None = None
        self.result: LoadResult | None = None
        self._db_before: dict[int, tuple[str, int, float]] | None = None

    @property
    def measured_from(self) -> float:
        assert self.spawned_at is not None, "the load has not started"
        return self.spawned_at + self.profile.warmup_s

    def start(self) -> "LoadTest":
        self.sampler.start()
        self.locust.start()
        for role, pid in self.locust.pids.items():
            self.sampler.add(f"generator {role}", lambda p=pid: p)
        self.spawned_at = self.locust.wait_spawned()
        # the warm-up is not judged, and the database's statement times start after it too
        time.sleep(max(0.0, self.measured_from - time.time()))
        self._db_before = read_statement_stats(self.stack.endpoints.database_dsn)
        return self

    def wait(self) -> None:
        """Until the profile's run is over."""
        self.locust.wait()

    def stop(self) -> LoadResult | None:
        if self.result is not None:
            return self.result
        running = self.locust.running
        stopped_at = time.time()
        db_after = read_statement_stats(self.stack.endpoints.database_dsn) if self._db_before is not None else None
        self.locust.stop()
        self.sampler.stop()
        if self.spawned_at is None:
            return None
        end = stopped_at if running else (self.locust.event_time("test_stop") or stopped_at)
        self.result = LoadResult(self.profile, self.out_dir, LoadSamples.read(self.out_dir), self.measured_from, end,
                                 self.sampler, self._db_before, db_after, self.locust.locust_stats())
        return self.result

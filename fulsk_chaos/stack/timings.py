"""Where a stack's start and teardown time goes: each service's phases, and the stack's own steps.

Recorded on every start and stop (``Stack.timings``), so that a slower start is traced to what
made it slower, and ``nox -s bench`` prints each service's share.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator


@contextmanager
def timed(record: dict[str, float], key: str) -> Iterator[None]:
    """Set ``record[key]`` to the seconds the block took (also when it raises)."""
    start = time.monotonic()
    try:
        yield
    finally:
        record[key] = time.monotonic() - start


@dataclass
class Timings:
    """Seconds. A service's phases: prepare (configuration, initdb), spawn (the process or container),
    healthy (until its own check passes), after_start, ready (until it serves users, dependencies
    included), stop, remove. Services of one start group overlap, so their shares add up to more
    than the whole. The stack's own steps before the clock starts (the reaper, the provider's
    engine check and image builds) are in ``start`` but not in ``start_to_healthy_s``."""
    start_to_healthy_s: float | None = None
    teardown_s: float | None = None
    start: dict[str, float] = field(default_factory=dict)  # the stack's own steps while starting
    teardown: dict[str, float] = field(default_factory=dict)  # ... and while tearing down
    services: dict[str, dict[str, float]] = field(default_factory=dict)  # service -> phase -> seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

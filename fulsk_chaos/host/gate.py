"""A gate between processes on this host: many may pass together, or one alone.

Parallel drills' workers each run a stack of their own; a scenario that judges latency or loads
the host on purpose must run with no other scenario beside it. Every scenario holds the gate
shared; such a scenario holds it alone, and once it waits, nobody new passes before it (a
turnstile: readers cannot starve it).
"""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def hold(self, alone: bool = False) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".turnstile"), "a") as turnstile, open(self.path, "a") as gate:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            try:
                fcntl.flock(gate, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            finally:
                if not alone:  # one that passes alone keeps the turnstile shut until it is done
                    fcntl.flock(turnstile, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
                fcntl.flock(turnstile, fcntl.LOCK_UN)

    def remove(self) -> None:
        for path in (self.path, self.path.with_suffix(".turnstile")):
            path.unlink(missing_ok=True)

"""Where a long run is: one line per phase (stack starting, steady state, fault injected,
waiting for recovery, load step k/K, restore). On a terminal the line is rewritten in place as
the phase advances; in a CI log each phase is printed once and its advances at most every
``every_s``, so the log says where a run was without drowning in counters."""
from __future__ import annotations

import time
from typing import Callable


class Progress:
    def __init__(self, write: Callable[[str], None], *, live: bool = False, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write    # writes text as is (no newline added)
        self.live = live
        self.every_s = every_s
        self.clock = clock
        self._phase = ""
        self._printed_at = float("-inf")
        self._open = False    # a live line not yet ended

    def phase(self, text: str) -> None:
        """A new phase: always shown."""
        self._phase = text
        self._show(text, force=True)

    def step(self, text: str) -> None:
        """The current phase advanced (a counter): live, shown at once; in a log, now and then."""
        self._show(f"{self._phase}: {text}" if self._phase else text, force=False)

    def end(self) -> None:
        """End a live line (before other output)."""
        if self._open:
            self.write("\n")
            self._open = False

    def _show(self, line: str, force: bool) -> None:
        now = self.clock()
        if self.live:
            self.write(f"\r\x1b[2K▸ {line}")
            self._open = True
        elif force or now - self._printed_at >= self.every_s:
            self.write(f"fulsk-chaos ▸ {line}\n")
            self._printed_at = now


def quiet() -> Progress:
    return Progress(lambda text: None)

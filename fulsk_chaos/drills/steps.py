"""A schedule's steps: what the schedule runner (drills.schedules) applies, the reachable states
(drills.reach) see, and a replay (``--schedule-replay``) reads."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FulskChaosError

HEAL = "heal"


@dataclass(frozen=True)
class ScheduleStep:
    """One action of a schedule: inject ``kind`` on ``target``, or heal (``heal``: undo the fault
    injected last). Heals are steps too: overlapping faults fail differently from the same
    faults one after another, and a replay must repeat what the search did."""
    kind: str
    target: str = ""

    def __str__(self) -> str:
        return HEAL if self.is_heal else f"{self.kind}:{self.target}"

    @property
    def is_heal(self) -> bool:
        return self.kind == HEAL

    @classmethod
    def parse(cls, text: str) -> "ScheduleStep":
        if text.strip() == HEAL:
            return cls(HEAL)
        kind, sep, target = text.strip().partition(":")
        if not sep or not kind or not target:
            raise FulskChaosError(f"a schedule step is KIND:TARGET (e.g. kill:backend) or {HEAL}, got {text!r}")
        return cls(kind, target)

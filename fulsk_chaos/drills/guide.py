"""Coverage of the reachable states (drills.reach) over one search, and the guidance that steers
the search toward the states it has not reached yet.

Two levers, as the field's best use them: each schedule's best score per state goes to
Hypothesis' ``target()`` (its targeted phase climbs toward higher scores), and a guided schedule
picks its next step among those that move toward its focus - one unreached state per schedule -
and, of those, toward the most other unreached states (each state's hint says which steps do);
where no state's hint approves any step, among the steps never taken from the faults now active
(unexplored neighbours), else among all. The focus goes to each unreached state in turn (from an offset the
seed gives), not by a draw: Hypothesis draws its simplest choice first, which would favour
whichever state is declared first. The choice within each is Hypothesis' draw, so a seed still decides
it; what the stack did before decides which choices there are, so a guided search is
reproducible only as far as the stack is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .reach import FaultView, Moment, ReachCatalogue, Roles
from .schedules import ScheduleStep


@dataclass
class Reached:
    """One state's coverage: the best score any schedule got, and the first schedule that reached it."""
    name: str
    description: str
    best: float = 0.0
    schedule: list[str] | None = None   # the first schedule that reached it, up to the step that did
    example: int | None = None          # which schedule of the search (1-based)
    at_s: float | None = None           # seconds into the search

    @property
    def reached(self) -> bool:
        return self.best >= 1.0

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "reached": self.reached, "best": round(self.best, 3),
                "first_schedule": self.schedule, "first_example": self.example,
                "first_at_s": None if self.at_s is None else round(self.at_s, 1)}


def empty_moment(roles: Roles) -> Moment:
    return Moment((), (), roles)


@dataclass
class Exploration:
    """What a search reached, and where it goes next. One per search: nothing is shared."""
    catalogue: ReachCatalogue
    guidance: float = 0.0          # the share of schedules that are steered (0: none, 1: all)
    offset: int = 0                # where the turns of focus start (the seed: each search starts elsewhere)
    clock: Callable[[], float] = time.monotonic
    on_reached: Callable[[Reached, int], None] | None = None  # told of each state as it is first reached
    reached: dict[str, Reached] = field(init=False)
    timeline: list[tuple[float, int]] = field(init=False, default_factory=list)  # (s, states reached)
    examples: int = field(init=False, default=0)
    guided_examples: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.reached = {i.name: Reached(i.name, i.description) for i in self.catalogue}
        self._t0 = self.clock()
        self._tried: set[tuple[frozenset[tuple[str, str]], str]] = set()
        self._best: dict[str, float] = {}
        self._last: Moment | None = None
        self.guided, self.focus = False, None

    # --- one schedule ------------------------------------------------------------------------
    def begin(self, roles: Roles, *, guided: bool) -> None:
        """A schedule begins; a guided one focuses on an unreached state, each in turn."""
        self.examples += 1
        self.guided_examples += guided
        unreached = self.unreached()
        focus = unreached[(self.offset + self.guided_examples) % len(unreached)] if guided and unreached else None
        self.guided, self.focus = guided, focus
        self._best = {}
        self._last = empty_moment(roles)

    def unreached(self) -> list[str]:
        """The states not reached yet that a guided schedule can aim at (those with a hint)."""
        return [i.name for i in self.catalogue if not self.reached[i.name].reached and i.hint is not None]

    def observe(self, moment: Moment) -> None:
        before = self._last
        if before is not None and moment.schedule:
            self._tried.add((_state(before), str(moment.schedule[-1])))
        self._last = moment
        now = self.clock() - self._t0
        for item in self.catalogue:
            score = item.measure(moment)
            self._best[item.name] = max(score, self._best.get(item.name, 0.0))
            entry = self.reached[item.name]
            if score >= 1.0 and not entry.reached:
                entry.schedule, entry.example, entry.at_s = [str(s) for s in moment.schedule], self.examples, now
                entry.best = score
                self.timeline.append((round(now, 1), self.covered))
                if self.on_reached is not None:
                    self.on_reached(entry, self.covered)
            entry.best = max(entry.best, score)

    def scores(self) -> dict[str, float]:
        """This schedule's best score per state, for ``hypothesis.target``."""
        return dict(self._best)

    # --- the next step -----------------------------------------------------------------------
    def preferred(self, options: list[ScheduleStep], view: Callable[[ScheduleStep], FaultView]) -> list[ScheduleStep]:
        """The options a guided schedule chooses among (all of them for an unguided one): those its
        focus approves, and of those the ones most unreached states approve; with no approval at
        all, the steps never taken from the faults now active."""
        moment = self._last
        if not self.guided or moment is None:
            return options
        hints = {name: self.catalogue.items[name].hint for name in self.unreached()}
        if hints:
            def rank(option: ScheduleStep) -> tuple[bool, int]:
                nxt = None if option.is_heal else view(option)
                votes = {name for name, hint in hints.items() if hint is not None and hint(moment, nxt)}
                return self.focus in votes, len(votes)
            ranks = {o: rank(o) for o in options}
            best = max(ranks.values(), default=(False, 0))
            if best != (False, 0):
                return [o for o in options if ranks[o] == best]
        state = _state(moment)
        novel = [o for o in options if (state, str(o)) not in self._tried]
        return novel or options

    # --- the report --------------------------------------------------------------------------
    @property
    def covered(self) -> int:
        return sum(r.reached for r in self.reached.values())

    def to_json(self) -> dict[str, Any]:
        return {"reached": self.covered, "declared": len(self.reached), "guidance": self.guidance,
                "schedules": self.examples, "guided_schedules": self.guided_examples,
                "transitions_tried": len(self._tried),
                "states": {name: r.to_json() for name, r in self.reached.items()},
                "timeline": [list(p) for p in self.timeline]}


def _state(moment: Moment) -> frozenset[tuple[str, str]]:
    """The abstract state a step is taken from: which faults are active, in no order."""
    return frozenset((f.kind, f.target) for f in moment.active)

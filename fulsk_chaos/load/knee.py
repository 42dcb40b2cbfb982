"""The stress test's search for the knee, not a bracket: the profile's ladder of API arrival rates
(doubling) until a step breaks a baseline, then bisection between the highest rate that held and
the lowest that broke until (broken - held) / held <= ``load.knee_resolution``. A ladder of
doublings alone leaves the knee somewhere in a factor of two, and a capacity known to +-50 %
cannot track a regression of 20 %.

``Search`` is the decision alone, a pure function of the steps judged so far (testable with a fake
judge). Because it is pure, the rate that follows a step *if it holds* is known before the step is
judged, so ``run`` plans it ahead (``steering``): steps follow each other without a gap, as the
ladder's did. A step that breaks is followed by a rest at the ladder's first rate until the stack
answers it within its baseline again (the broken step's backlog drained), then the bisection goes
on; a bisection step after a broken one is therefore never measured on its backlog.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .samples import LoadSamples, percentile
from .steering import LEAD_S, Steering

HELD, BROKEN, INVALID, SHORT = "held", "broken", "invalid", "short"
OUTCOMES = (HELD, BROKEN, INVALID, SHORT)
RAMP, BISECT = "ramp", "bisect"
FLUSH_S = 1.5  # until the Locust processes have written a window's samples (they flush every second)


@dataclass(frozen=True)
class Next:
    rate: float
    phase: str  # ramp (the profile's ladder) or bisect


@dataclass(frozen=True)
class Search:
    """Where the search stands after the steps ``judged`` ((rate, phase, outcome), in order)."""
    ladder: tuple[float, ...]
    resolution: float
    judged: tuple[tuple[float, str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.ladder or any(b <= a for a, b in zip(self.ladder, self.ladder[1:])) or self.ladder[0] <= 0:
            raise ValueError(f"a stress ladder is rising positive rates, got {list(self.ladder)}")
        if not 0 < self.resolution <= 1:
            raise ValueError(f"knee_resolution is a fraction in (0, 1], got {self.resolution!r}")

    def then(self, outcome: str) -> "Search":
        """The search once the next step was judged ``outcome``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"a step's outcome is one of {', '.join(OUTCOMES)}, got {outcome!r}")
        step = self.next
        if step is None:
            raise ValueError(f"the search has ended ({self.ended}): there is no next step to judge")
        return Search(self.ladder, self.resolution, (*self.judged, (step.rate, step.phase, outcome)))

    @property
    def held(self) -> float:
        """The highest rate that met every baseline (0: none)."""
        return max((r for r, _, o in self.judged if o == HELD), default=0.0)

    @property
    def broken(self) -> float | None:
        """The lowest rate that broke a baseline (None: none did)."""
        return min((r for r, _, o in self.judged if o == BROKEN), default=None)

    @property
    def bracket(self) -> tuple[float, float | None]:
        """[held, broken]: the knee lies between them (broken None: above the ladder, or not found)."""
        return self.held, self.broken

    @property
    def capacity(self) -> float | None:
        """The highest rate that held; 0 when the first step broke; None when nothing could be judged."""
        if self.held:
            return self.held
        return 0.0 if self.judged and self.judged[0][2] == BROKEN else None

    @property
    def ended(self) -> str | None:
        """Why the search is over, or None while it goes on."""
        if not self.judged:
            return None
        rate, _, outcome = self.judged[-1]
        if outcome == INVALID:
            return (f"the generator saturated at {rate:g} req/s: its figures measured the generator, so the "
                    f"search ended with the bracket so far")
        if outcome == SHORT:
            return f"too little evidence at {rate:g} req/s: the search ended with the bracket so far"
        held, broken = self.bracket
        if broken is None:
            if len(self.judged) == len(self.ladder):
                return f"every step of the ladder held: the knee is above {self.ladder[-1]:g} req/s"
            return None
        if not held:
            return f"the first step ({broken:g} req/s) broke: the stack did not carry the load it must"
        if (broken - held) / held <= self.resolution + 1e-9:
            return f"resolved: the knee is between {held:g} and {broken:g} req/s (within {self.resolution:.0%})"
        if _midpoint(held, broken) in (held, broken):
            return f"the rates {held:g} and {broken:g} req/s cannot be told apart any finer"
        return None

    @property
    def next(self) -> Next | None:
        """The step to run next (None: the search has ended)."""
        if self.ended is not None:
            return None
        held, broken = self.bracket
        if broken is None:
            return Next(self.ladder[len(self.judged)], RAMP)
        return Next(_midpoint(held, broken), BISECT)

    @property
    def ahead(self) -> Next | None:
        """The step that follows the next one if it holds: what the generator is told in advance."""
        return self.then(HELD).next if self.next is not None else None


def _midpoint(held: float, broken: float) -> float:
    """The geometric mean, rounded to whole requests per second (tenths below 10): a knee is a
    ratio, and halving the ratio halves a factor of two to within 10 % in three steps."""
    mid = math.sqrt(held * broken)
    return float(round(mid)) if mid >= 10 else round(mid, 1)


def max_bisections(ladder: tuple[float, ...] | list[float], resolution: float) -> int:
    """The most bisection steps a search over ``ladder`` can take (the widest gap between two of
    its rates, halved in log until within ``resolution``; one more for the rounding)."""
    widest = max([b / a for a, b in zip(ladder, ladder[1:])], default=1.0)
    if widest - 1 <= resolution:
        return 1
    return math.ceil(math.log2(math.log(widest) / math.log(1 + resolution))) + 1


def cooldown_max_s(timeout_s: float) -> float:
    """How long a rest after a broken step may take: every request of that step has been
    answered or has timed out by then."""
    return timeout_s + 5.0


def run_bound_s(profile: Any, resolution: float) -> float:
    """A bound on a whole search with ``profile`` (Locust's own --run-time): spawning, warm-up,
    the ladder, and the most bisection steps, each after a rest."""
    api = profile.api
    spawn = sum(profile.users.values()) / profile.spawn_rate
    per_bisection = api.step_s + cooldown_max_s(profile.timeout_s) + FLUSH_S + 2 * LEAD_S + 5.0
    ladder = len(api.steps) * api.step_s
    return spawn + profile.warmup_s + ladder + max_bisections(api.steps, resolution) * per_bisection + 30.0


def answers_within(samples: LoadSamples, start: float, end: float, rate: float, api_p95_ms: float,
                   error_rate: float) -> bool:
    """Whether the API answered the requests due in [start, end) at ``rate`` - all of them, none
    still queued (the open model knows how many were due) - within the p95 and the error rate."""
    api = samples.window(start, end).group("api")
    due = rate * (end - start)
    if len(api) < 0.9 * due - 2:
        return False
    failures = sum(not s.ok for s in api)
    p95 = percentile(sorted(s.ms for s in api if s.ok), 95)
    return failures <= error_rate * len(api) and p95 is not None and p95 <= api_p95_ms


@dataclass
class Knee:
    """A finished search: every step as judged (``phase`` ramp or bisect), and why it ended."""
    search: Search
    steps: list[dict[str, Any]] = field(default_factory=list)
    ended: str = ""

    @property
    def capacity(self) -> float | None:
        return self.search.capacity

    @property
    def bracket(self) -> list[float | None]:
        return list(self.search.bracket)


@dataclass
class Clock:
    """time.time() and sleep, replaceable in tests of the driver."""
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def until(self, t: float) -> None:
        self.sleep(max(0.0, t - self.now()))


JudgeStep = Callable[[int, Next, float, float], tuple[str, dict[str, Any]]]


def run(search: Search, steering: Steering, first_start: float, step_s: float, judge: JudgeStep, *,
        recovered: Callable[[float, float], bool], cooldown_max: float, each_step: Callable[[], Any] | None = None,
        note: Callable[[str], None] = lambda _: None, clock: Clock | None = None) -> Knee:
    """Run the search against the running generator. ``judge(k, step, start, end)`` judges step k's
    window (time.time() bounds) into an outcome and its record; ``recovered(start, end)`` says
    whether the stack answered the ladder's first rate within its baseline in that window;
    ``each_step`` (a per-step fault) runs as each step's judged window begins (a step planned
    ahead is confirmed once the one before was judged: it is then judged from that moment). ``first_start``: when the generator began the ladder's first rate."""
    clock = clock or Clock()
    settle = min(1.0, step_s / 5)  # the change of rate settles
    floor = search.ladder[0]
    knee = Knee(search)
    step, start, rested = search.next, first_start, None
    k = 0
    while step is not None:
        ahead = search.ahead
        steering.plan((start, step.rate), (start + step_s, ahead.rate if ahead else floor))
        note(f"load step {k + 1} ({step.phase}): {step.rate:g} req/s")
        window_start = start + settle
        if each_step is not None:  # at the judged window's start, or now if that has passed
            clock.until(window_start)
            each_step()
            window_start = max(window_start, clock.now())
        end = start + step_s
        clock.until(end + FLUSH_S)
        outcome, record = judge(k, step, window_start, end)
        knee.steps.append({**record, "phase": step.phase, **({"rested_s": rested} if rested is not None else {})})
        search = knee.search = search.then(outcome)
        step, rested, k = search.next, None, k + 1
        if step is None or outcome == HELD:
            start = end  # the step planned ahead has run since this one ended
            continue
        # broken: rest at the first rate until its requests are answered within the baseline again
        rest_from = clock.now() + LEAD_S
        steering.plan((rest_from, floor))
        note(f"step {k} broke: resting at {floor:g} req/s until the stack answers it within its baseline")
        rested = _rest(rest_from, recovered, cooldown_max, clock)
        if rested is None:
            knee.ended = (f"the stack did not answer {floor:g} req/s within its baseline {cooldown_max:g} s after "
                          f"the broken step at {search.judged[-1][0]:g} req/s: the search ended with the bracket "
                          f"so far")
            return knee
        start = clock.now() + LEAD_S
    knee.ended = search.ended or ""
    return knee


def _rest(since: float, recovered: Callable[[float, float], bool], bound_s: float, clock: Clock) -> float | None:
    """Seconds from ``since`` until a one-second window was answered within the baseline; None
    past ``bound_s``."""
    window = since
    while window + 1.0 <= since + bound_s:
        clock.until(window + 1.0 + FLUSH_S)
        if recovered(window, window + 1.0):
            return round(window + 1.0 - since, 2)
        window = max(window + 1.0, clock.now() - FLUSH_S - 1.0)  # the newest complete window
    return None

"""The stress search's control channel: the framework chooses each step's API arrival rate after
judging the step before, and the running Locust generator follows.

The framework writes its plan - (from, rate) changes, epoch seconds - to a file in the run's
directory; the Locust master polls it and relays it to every worker over Locust's own message
channel (so workers on other machines get it too); each worker's open-model users read the rate
at each request's due time. Changes are planned ahead of when they apply (``LEAD_S``), so every
worker switches at the same moment whatever the relay's delay, and a step's window starts exactly
where the plan says. Until a plan arrives the profile's own ladder (``api.steps``) runs, so a
stepped profile run by hand still ramps.

One Locust run per step was the other way: its start (processes, every user spawned, warm-up)
costs seconds per step and restarts the dashboards, viewers and inverters the steps share.
"""
from __future__ import annotations

import bisect
import json
import os
from pathlib import Path
from typing import Callable, Sequence

CONTROL_FILE = "rates.json"  # in the run's directory (FULSK_LOAD_OUT)
MESSAGE = "fulsk_rates"      # the Locust message the master relays the plan in
LEAD_S = 0.5                 # a change is planned this far ahead: the relay takes a poll (0.1 s) and a hop
POLL_S = 0.1


class Steering:
    """The framework's side: the plan so far, written whole at every change (a reader never sees
    half of it)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / CONTROL_FILE
        self.changes: list[tuple[float, float]] = []

    def plan(self, *changes: tuple[float, float]) -> None:
        """From the first of ``changes`` on, follow them instead of whatever was planned."""
        if not changes:
            return
        first = changes[0][0]
        self.changes = [c for c in self.changes if c[0] < first] + [(round(at, 4), rate) for at, rate in changes]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.changes))
        os.replace(tmp, self.path)


def read_plan(out_dir: Path) -> str | None:
    """The plan's text as written (None before the first); the master relays each new version."""
    try:
        return (Path(out_dir) / CONTROL_FILE).read_text()
    except FileNotFoundError:
        return None


class RateSchedule:
    """A worker's side: the API arrival rate (all users together) at a request's due time."""

    def __init__(self, ladder: Callable[[float], float]) -> None:
        self.ladder = ladder  # the profile's own ramp, by seconds since the arrivals began
        self.changes: list[tuple[float, float]] = []

    def steer(self, changes: Sequence[Sequence[float]]) -> None:
        self.changes = sorted((float(at), float(rate)) for at, rate in changes)

    def rate(self, due: float, began: float) -> float:
        changes = self.changes
        if not changes or due < changes[0][0]:
            return self.ladder(due - began)
        return changes[bisect.bisect_right(changes, (due, float("inf"))) - 1][1]

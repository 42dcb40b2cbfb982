"""Recovery, measured: from a dependency being back to the stack being in steady state again, as
its users see it (health, API and fresh, correct readings, unbroken for a streak) and as its
inverters need it (every reading acknowledged before the dependency came back is stored)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..config import Settings
from ..figures import RecoveryFigures
from ..probes import Fleet, FleetRecord, Probe, Sample
from ..verdict import Expectation, at_most
from .ledger import stored_keys
from .users import answered_ok, judge_answer


@dataclass(frozen=True)
class Recovery:
    target_s: float
    users_s: float | None    # until health, API and fresh answers stay healthy for the streak
    ingest_s: float | None   # until every reading acknowledged before the return is stored
    backlog: int             # readings acknowledged before the return, that had to be stored

    @property
    def recovery_s(self) -> float | None:
        if self.users_s is None or self.ingest_s is None:
            return None
        return max(self.users_s, self.ingest_s)

    def expectations(self) -> list[Expectation]:
        detail = f"users: {_s(self.users_s)}, ingest backlog of {self.backlog}: {_s(self.ingest_s)}"
        # Never recovering within the wait is a measured failure (longer than the target), not a missing one.
        measured = self.recovery_s if self.recovery_s is not None else float("inf")
        return [at_most("recovery (back in steady state after the dependency returned)", measured, self.target_s,
                        "s", evidence={"backlog": self.backlog}, detail=detail)]

    def figures(self) -> RecoveryFigures:
        return RecoveryFigures(recovery_s=self.recovery_s, recovery_target_s=self.target_s,
                               api_recovery_s=self.users_s, ingest_recovery_s=self.ingest_s)


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


@dataclass(frozen=True)
class Ingest:
    """What the broker acknowledged before ``since``: stored yet? (``caught_up``)."""
    fleet: Fleet
    dsn: str
    backlog: frozenset

    def caught_up(self) -> bool:
        try:
            return self.backlog <= set(stored_keys(self.dsn, self.fleet.inverter_ids, contract=self.fleet.contract))
        except Exception:  # noqa: BLE001 - the database may still refuse us: not recovered yet
            return False


def ingest_of(fleet: Fleet, dsn: str, since: float, after: float | None = None) -> Ingest:
    """What the broker acknowledged before ``since`` (and, given, after ``after``) must be stored."""
    return Ingest(fleet, dsn, frozenset(fleet.acked(before=since, after=after)))


def wait_for_recovery(probe: Probe, record: Callable[[], FleetRecord], since: float, settings: Settings, *,
                      ingest: Ingest | None = None, deadline: float | None = None, poll_s: float = 0.2,
                      waiting: Callable[[float], None] = lambda s: None) -> Recovery:
    """The one wait for "served again": until users are served fresh, correct readings for a
    whole streak begun after ``since`` (and, given ``ingest``, the backlog is stored), or until
    ``deadline`` (default: the recovery target, plus the streak and the hang threshold needed to
    judge the last samples). ``record``: the fleet's record as answers are judged against it."""
    target_s, streak_s = settings.recovery.target_s, settings.steady_state.streak_s
    deadline = deadline if deadline is not None else since + target_s + streak_s + settings.hang_s
    users_at = None
    ingest_at = None if ingest is not None else since
    while True:
        if ingest_at is None and ingest is not None and ingest.caught_up():
            ingest_at = time.monotonic()
        if users_at is None:
            users_at = users_recovered_at(probe, record(), since, settings)
        if (users_at is not None and ingest_at is not None) or time.monotonic() > deadline:
            break
        waiting(time.monotonic() - since)
        time.sleep(poll_s)
    return Recovery(target_s, None if users_at is None else users_at - since,
                    None if ingest_at is None else ingest_at - since, len(ingest.backlog) if ingest else 0)


def users_recovered_at(probe: Probe, record: FleetRecord, since: float, settings: Settings) -> float | None:
    """When users were served again: health, API and fresh, correct readings for a whole streak
    begun at or after ``since`` (monotonic); None until then."""
    max_staleness = settings.steady_state.max_staleness_s

    def healthy(sample: Sample) -> bool:
        served = judge_answer(sample, record)
        return answered_ok(sample) if served is None else served.fresh(max_staleness)
    return probe.snapshot(settings.hang_s).first_streak(since, settings.steady_state.streak_s, healthy)

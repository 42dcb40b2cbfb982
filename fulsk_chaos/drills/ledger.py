"""What the ledger holds a drill to, beyond its rule (nothing acknowledged lost, altered or
stored twice), as a value the drill builds up: which other senders it answers for, what must
never be stored, and what the method may lose by design. Judged when the instruments stop."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..checks.restore import Allowance


@dataclass(frozen=True)
class LedgerPolicy:
    tracked: tuple[Any, ...] = ()                    # more senders: a flood's fleet, the load's inverters
    never_stored: tuple[tuple[str, str], ...] = ()   # (inverter-id prefix, what): nothing under it stored
    excused: tuple[tuple[float, float], ...] = ()    # acknowledged in these spans (monotonic): not due in answers
    allowance: Allowance | None = None               # the loss a restore may cause (checks.restore)

    def track(self, sender: Any) -> "LedgerPolicy":
        return replace(self, tracked=(*self.tracked, sender))

    def never(self, prefix: str, what: str) -> "LedgerPolicy":
        return replace(self, never_stored=(*self.never_stored, (prefix, what)))

    def excuse(self, start: float, end: float) -> "LedgerPolicy":
        return replace(self, excused=(*self.excused, (start, end)))

    def allow(self, allowance: Allowance) -> "LedgerPolicy":
        if self.allowance is not None:
            raise ValueError(f"the ledger already allows {type(self.allowance).__name__}'s loss: one per drill")
        return replace(self, allowance=allowance)

    @property
    def spans(self) -> list[tuple[float, float]]:
        """Every span whose acknowledged readings answers are not due to hold."""
        return [*self.excused, *([self.allowance.excused] if self.allowance is not None else [])]

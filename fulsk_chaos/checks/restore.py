"""The loss a restore may cause, judged over what was recorded (like Jepsen's checkers over a
history): which acknowledged readings the ledger found lost, when each was acknowledged, and
what the drill measured of the restore. No server is asked anything here.

- ``Rpo``: a restore after a total loss may lose what was acknowledged after the backup (or the
  last archived WAL) and before the loss, spanning at most the RPO target; nothing else.
- ``PointInTime``: a recovery to a target discards what was committed after it; everything
  acknowledged before it (less the commit margin) is back, and what the broker held while the
  restore had the database stopped is stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

from ..figures import PointInTimeFigures, RpoFigures
from ..verdict import Evidence, Expectation, at_most, none_of
from .ledger import Key, show_keys as keys


@dataclass(frozen=True)
class LossJudgement:
    expectations: list[Expectation]
    evidence: list[Evidence]
    figures: RpoFigures | PointInTimeFigures
    unaccounted: list[Key]  # lost, and not what the restore may lose: lost, for the ledger


@dataclass(frozen=True)
class Rpo:
    """A total loss restored from a backup (all times monotonic)."""
    lost_at: float      # when the data was destroyed
    gone_at: float      # when its server was gone (it may commit until then)
    kept_until: float   # what the backup holds: its snapshot, or the last archived WAL
    target_s: float
    what: str           # "the backup", "the last WAL archived"
    margin_s: float     # a reading is committed a moment after the broker acknowledged it

    @property
    def excused(self) -> tuple[float, float]:
        """Acknowledged in this span: answers are not due to hold it after the restore."""
        return self.kept_until - self.margin_s, self.gone_at

    def judge(self, lost: Sequence[Key], acked_at: Mapping[Key, float]) -> LossJudgement:
        kept = [k for k in lost if acked_at[k] < self.kept_until - self.margin_s]
        after_loss = [k for k in lost if acked_at[k] > self.gone_at]
        between = [k for k in lost if k not in set(kept) | set(after_loss)]
        span = max(0.0, self.lost_at - min(acked_at[k] for k in between)) if between else 0.0
        acked_between = sum(1 for t in acked_at.values() if self.kept_until <= t <= self.gone_at)
        acked_before = sum(1 for t in acked_at.values() if t < self.kept_until - self.margin_s)
        return LossJudgement(
            [none_of(f"lost though acknowledged before {self.what}", len(kept), detail=keys(kept)),
             none_of("lost though acknowledged after the loss (the broker holds them)", len(after_loss),
                     detail=keys(after_loss)),
             at_most("RPO (span of acknowledged readings lost)", round(span, 2), self.target_s, "s",
                     evidence={"lost": len(between)}, detail=f"{len(between)} readings lost")],
            [Evidence(f"readings acknowledged between {self.what} and the loss", acked_between, 10),
             Evidence(f"readings acknowledged before {self.what}", acked_before, 10)],
            RpoFigures(rpo_s=round(span, 2), rpo_target_s=self.target_s, rpo_margin_s=round(self.target_s - span, 2),
                       lost_in_rpo=len(between)),
            kept + after_loss)


@dataclass(frozen=True)
class PointInTime:
    """A recovery to ``target`` (monotonic), measured once the restore was done."""
    target: float
    target_iso: str
    stopped_at: float   # when the restore had the stack stop the database
    margin_s: float
    late: list[Key] = field(default_factory=list)  # committed after the target, before the stop, and present

    @property
    def excused(self) -> tuple[float, float]:
        return self.target - self.margin_s, self.stopped_at

    def judge(self, lost: Sequence[Key], acked_at: Mapping[Key, float]) -> LossJudgement:
        before = [k for k in lost if acked_at[k] < self.target - self.margin_s]
        after_stop = [k for k in lost if acked_at[k] > self.stopped_at]
        due = sum(1 for a in acked_at.values() if a < self.target - self.margin_s)
        return LossJudgement(
            [none_of("lost though acknowledged before the recovery target", len(before), detail=keys(before)),
             none_of("committed after the recovery target (before the restore), yet present", len(self.late),
                     detail=keys(self.late)),
             none_of("lost though acknowledged after the restore stopped the database (the broker holds them)",
                     len(after_stop), detail=keys(after_stop))],
            [Evidence("readings acknowledged before the recovery target", due, 10)],
            PointInTimeFigures(recovery_target=self.target_iso,
                               discarded_after_target=len(lost) - len(before) - len(after_stop)),
            before + after_stop)


Allowance = Union[Rpo, PointInTime]

"""The order of an experiment, after Chaos Toolkit's: the instruments up, the steady state shown
before anything is done, the method (faults, a restore, a runbook, a schedule), each fault rolled
back, the stack recovered (measured), the steady state after, the instruments stopped (the ledger
settles then), the verdict. A drill that skips a phase or takes one out of order proves less
than its verdict would say, so it is refused, with what to do instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..errors import FulskChaosError


class PhaseError(FulskChaosError):
    """A phase taken out of order: a mistake of the drill, not a finding about the stack."""


class Phase(Enum):
    CREATED = "created"
    OBSERVING = "observing"        # fleet, probe and live feed running
    BEFORE = "steady state before"
    METHOD = "method"              # faults injected, a restore or a runbook running, windows during it
    RECOVERED = "recovered"        # the stack measured back in steady state after the method
    AFTER = "steady state after"
    CLOSED = "instruments stopped"  # the ledger settled
    JUDGED = "verdict"


# What may follow each phase. Stopping the instruments may follow anything (an exception, a
# steady state that did not hold before the fault: the verdict is then already reached).
NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.CREATED: frozenset({Phase.OBSERVING}),
    Phase.OBSERVING: frozenset({Phase.BEFORE}),
    Phase.BEFORE: frozenset({Phase.BEFORE, Phase.METHOD}),
    Phase.METHOD: frozenset({Phase.METHOD, Phase.RECOVERED}),
    Phase.RECOVERED: frozenset({Phase.RECOVERED, Phase.METHOD, Phase.AFTER}),
    Phase.AFTER: frozenset({Phase.AFTER}),
    Phase.CLOSED: frozenset({Phase.JUDGED}),
    Phase.JUDGED: frozenset(),
}

HOW = {  # what the drill must do first, said when a phase comes too early
    Phase.OBSERVING: "enter the experiment (`with experiment:`) first",
    Phase.BEFORE: "start the instruments first (`with experiment:`)",
    Phase.METHOD: "show the steady state first (`experiment.steady_state(\"before\")`): a fault proves nothing "
                  "about a stack that was not shown steady",
    Phase.RECOVERED: "run the method first, and roll its faults back",
    Phase.AFTER: "measure the recovery first (`experiment.recover(fault)`, or the drill's own measure, which "
                 "reports it with `experiment.recovered(...)`): a steady state after that never recovered "
                 "judges nothing",
    Phase.CLOSED: "",
    Phase.JUDGED: "leave the `with experiment:` block first: the ledger settles when the instruments stop",
}


@dataclass
class Phases:
    """Where an experiment is; ``enter`` refuses a phase that may not follow the current one.
    A method that disrupted the stack (a fault, a lost database) must have its recovery measured
    before the steady state after; one that did not (a refused restore) may go straight to it."""
    current: Phase = Phase.CREATED
    taken: list[Phase] = field(default_factory=list)
    disrupted: bool = False  # since the last recovery measured

    def enter(self, phase: Phase, *, disrupts: bool = False) -> None:
        allowed = NEXT[self.current] | ({Phase.AFTER} if self.current is Phase.METHOD and not self.disrupted
                                        else set())
        if phase is not Phase.CLOSED and phase not in allowed:
            raise PhaseError(f"{phase.value} cannot follow {self.current.value}: {HOW[phase] or 'out of order'}")
        self.current = phase
        self.taken.append(phase)
        if phase is Phase.METHOD and disrupts:
            self.disrupted = True
        elif phase is Phase.RECOVERED:
            self.disrupted = False

    @property
    def method_began(self) -> bool:
        return Phase.METHOD in self.taken

    @property
    def recovered(self) -> bool:
        return Phase.RECOVERED in self.taken

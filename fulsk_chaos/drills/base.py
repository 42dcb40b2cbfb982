"""What every drill shares, whatever its method (faults, a restore, a runbook, a schedule, a load
profile): the phases in order, the record judged into a verdict, the ledger and its policy, the
faults that must reach their condition, and the monitoring. The experiment (drills.experiment)
adds the observers users and inverters are watched through; the load drill (drills.load) its
load generator."""
from __future__ import annotations

import dataclasses

import time
from dataclasses import replace
from typing import Any, Iterable

from ..checks import alerts as alert_judge
from ..checks import settle
from ..checks.ledger import LedgerResult, never_stored
from ..checks.validity import HostFigures
from ..config import Settings
from ..faults import FaultRecord
from ..faults.conditions import condition_expectation
from ..figures import AlertFigures
from ..probes import Fleets
from ..report import ScenarioRecord
from ..stack import Stack
from ..verdict import Expectation, Verdict, VerdictReached, judge
from .ledger import Allowance, LedgerPolicy
from .phases import Phase, Phases


class Drill:
    def __init__(self, stack: Stack, settings: Settings, record: ScenarioRecord) -> None:
        self.stack = stack
        self.settings = settings
        self.record = record
        self.phases = Phases()  # Chaos Toolkit's order, enforced (drills.phases)
        self.ledger = LedgerPolicy()  # what the ledger holds the run to (drills.ledger)
        self._biting: list[FaultRecord] = []  # injected by the method: each must reach its condition
        self._stalled: list[tuple[str, HostFigures]] = []  # windows whose latency alone broke on a stalled host
        self._excusable: set[str] = set()  # those latency expectations
        self._recovered_at: float | None = None
        self._method_began: float | None = None

    # --- the phases ------------------------------------------------------------------------------
    def begin_method(self, *, disrupts: bool = False) -> None:
        """The method has begun: a steady state that fails from here is a finding. ``disrupts``:
        it takes something away from the stack (a fault, a lost database), so the stack's recovery
        must be measured (``recover``, ``served_again``) before the steady state after."""
        self.phases.enter(Phase.METHOD, disrupts=disrupts)
        self._method_began = time.monotonic()

    def recovered(self) -> None:
        """The stack's recovery from the method has been measured (the steady state after may follow)."""
        self.phases.enter(Phase.RECOVERED)
        self._recovered_at = time.monotonic()

    def must_bite(self, fault: FaultRecord) -> None:
        """A fault of the method: one that never reached its condition leaves the verdict ``error``."""
        self._biting.append(fault)

    def not_steady_before(self, before: Verdict, what: str = "the fault") -> None:
        """The hypothesis did not hold before the method: that is the verdict, and no method runs."""
        verdict = Verdict(before.status, f"steady state did not hold before {what}, so none was run: "
                                         f"{before.reason}", before.hypothesis, before.expectations, before.evidence)
        self.record.conclude(verdict)
        raise VerdictReached(verdict)

    # --- the ledger ------------------------------------------------------------------------------
    def track(self, fleet: Any) -> None:
        """Hold another sender's acknowledged readings to the ledger too (e.g. a flood's fleet)."""
        self.ledger = self.ledger.track(fleet)

    def excuse(self, start: float, end: float) -> None:
        """Readings acknowledged between monotonic ``start`` and ``end`` may be lost by design:
        answers are not due to hold them (their loss is the ledger's to judge)."""
        self.ledger = self.ledger.excuse(start, end)

    def allow_loss(self, allowance: Allowance) -> None:
        """The loss the method may cause by design (a restore: checks.restore), judged over the
        ledger once it has settled; answers are not due to hold what it excuses."""
        self.ledger = self.ledger.allow(allowance)

    def expect_never_stored(self, prefix: str, what: str) -> None:
        """Nothing under inverter ids starting with ``prefix`` may ever be stored (judged with the ledger)."""
        self.ledger = self.ledger.never(prefix, what)

    def judge_ledger(self, senders: Iterable[Any]) -> LedgerResult:
        """Every reading the broker acknowledged to ``senders`` (and those the policy tracks) is
        stored exactly once and unaltered, less what the policy allows; judged first in the record:
        data loss before slowness."""
        dsn = self.stack.endpoints.database_dsn
        senders = [*senders, *self.ledger.tracked]
        contract = self.stack.contract
        ledger = settle(Fleets(*senders), dsn, timeout_s=self.settings.recovery.target_s,
                        allow_duplicates=self.settings.ledger.allow_duplicates, contract=contract)
        if not contract.capabilities.idempotent_writes:
            ledger = dataclasses.replace(ledger, duplicates_skipped=f"the {contract.name} backend declares no "
                                                                    f"idempotent writes (capabilities.idempotent_writes)")
        if (allowance := self.ledger.allowance) is not None:  # a restore's RPO: the loss it may cause
            acked_at = {m.key: m.acked_at for f in senders if hasattr(f, "messages") for m in f.messages()
                        if m.acked_at is not None}
            judged = allowance.judge(list(ledger.lost), acked_at)
            self.record.expect(judged.expectations, judged.evidence, first=True)
            self.record.measure(judged.figures)
            ledger = replace(ledger, lost=judged.unaccounted)
        self.record.expect(ledger.expectations(), first=True)
        self.record.measure(ledger.figures())
        self.record.expect([never_stored(dsn, prefix, what, self.stack.contract)
                            for prefix, what in self.ledger.never_stored])
        return ledger

    # --- on a stalled host ---------------------------------------------------------------------
    def on_a_stalled_host(self, prefix: str, expectations: list[Expectation], broken: list[Expectation],
                          host: HostFigures) -> list[Expectation]:
        """Latency expectations that broke, alone in their window, while the host was stalled: said
        so, and remembered. If nothing else of the scenario fails, its verdict is ``invalid`` with
        the host's figures (see ``verdict``); a finding anywhere else is still a finding."""
        why = "; ".join(host.beyond(self.settings))
        self._stalled.append((prefix, host))
        self._excusable |= {e.name for e in broken}
        said = {e.name: replace(e, detail=f"{e.detail + '; ' if e.detail else ''}measured on a stalled host: {why}")
                for e in broken}
        return [said.get(e.name, e) for e in expectations]

    # --- monitoring and verdict ----------------------------------------------------------------
    def monitoring(self, **declared: list[str]) -> tuple[Any, alert_judge.Prometheus] | None:
        """The stack's alert receiver and Prometheus; None, said in the results, on a stack without
        monitoring: the alerts ``declared`` are then not judged."""
        receiver, prometheus = self.stack.alerts, self.stack.services.get("prometheus")
        if receiver is None or prometheus is None:
            why = "the stack has no monitoring (run with --monitoring, or set stack.monitoring): "
            self.record.measure(AlertFigures(
                alerts_not_judged=why + ", ".join(f"{k} {v}" for k, v in declared.items())))
            return None
        return receiver, alert_judge.Prometheus(prometheus.address)

    def verdict(self) -> Verdict:
        """The verdict on everything judged so far (call after the instruments stopped: the ledger
        comes last). A fault of the method that never reached its condition makes it error, never
        pass. When all that failed is latency measured on a stalled host, the host's figures are
        the verdict's: ``invalid``, nothing blamed on the stack."""
        self.phases.enter(Phase.JUDGED)
        biting, self._biting = self._biting, []
        self.record.expect([condition_expectation(f.kind, f.target, f.condition) for f in biting])
        failed = [e for e in self.record.expectations if e.held is False and e.kind == "hypothesis"]
        if failed and all(e.name in self._excusable for e in failed):
            for prefix, host in self._stalled:
                self.record.expect(host.expectations(prefix, self.settings))
        verdict = judge(self.record.hypothesis, self.record.expectations, self.record.evidence)
        self.record.conclude(verdict)
        return verdict

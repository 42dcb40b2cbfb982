"""What every drill shares: its phases in Chaos Toolkit's order (out of order is refused, with
what to do), what its ledger holds it to as a value, and the loss a restore may cause judged over
recorded data alone."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from fulsk_chaos.checks.restore import PointInTime, Rpo
from fulsk_chaos.drills import LedgerPolicy, Phase, PhaseError, Phases
from fulsk_chaos.drills.experiment import Experiment
from fulsk_chaos.drills.instruments import Needs
from fulsk_chaos.figures import SteadyFigures
from fulsk_chaos.verdict import VerdictReached


def walk(*phases: Phase, disrupts: bool = False) -> Phases:
    machine = Phases()
    for phase in phases:
        machine.enter(phase, disrupts=disrupts and phase is Phase.METHOD)
    return machine


def test_a_fault_scenario_runs_in_order():
    machine = walk(Phase.OBSERVING, Phase.BEFORE, Phase.BEFORE, Phase.METHOD, Phase.METHOD, Phase.RECOVERED,
                   Phase.AFTER, Phase.CLOSED, Phase.JUDGED, disrupts=True)
    assert machine.current is Phase.JUDGED and machine.recovered


@pytest.mark.parametrize(("phases", "refused", "says"), [
    ((Phase.OBSERVING,), Phase.METHOD, "show the steady state first"),
    ((), Phase.BEFORE, "start the instruments first"),
    ((Phase.OBSERVING, Phase.BEFORE), Phase.AFTER, "measure the recovery first"),
    ((Phase.OBSERVING, Phase.BEFORE), Phase.RECOVERED, "run the method first"),
    ((Phase.OBSERVING, Phase.BEFORE, Phase.METHOD, Phase.RECOVERED, Phase.AFTER), Phase.METHOD, "cannot follow"),
    ((Phase.OBSERVING, Phase.BEFORE, Phase.METHOD), Phase.JUDGED, "leave the `with experiment:` block first"),
])
def test_a_phase_out_of_order_is_refused_with_what_to_do(phases, refused, says):
    machine = walk(*phases, disrupts=True)
    with pytest.raises(PhaseError, match=says):
        machine.enter(refused)
    assert machine.current is (phases[-1] if phases else Phase.CREATED)  # nothing changed


def test_a_method_that_disrupted_the_stack_needs_its_recovery_measured():
    undisrupted = walk(Phase.OBSERVING, Phase.BEFORE, Phase.METHOD)  # e.g. a refused restore
    undisrupted.enter(Phase.AFTER)
    disrupted = walk(Phase.OBSERVING, Phase.BEFORE, Phase.METHOD, disrupts=True)
    with pytest.raises(PhaseError, match="a steady state after that never recovered judges nothing"):
        disrupted.enter(Phase.AFTER)
    disrupted.enter(Phase.RECOVERED)
    disrupted.enter(Phase.METHOD, disrupts=True)  # a second fault: recovered again before the window after
    with pytest.raises(PhaseError):
        disrupted.enter(Phase.AFTER)


def test_stopping_the_instruments_may_follow_anything():
    machine = walk(Phase.OBSERVING, Phase.BEFORE, Phase.METHOD, disrupts=True)  # e.g. an exception
    machine.enter(Phase.CLOSED)
    machine.enter(Phase.JUDGED)


def test_the_ledger_policy_is_a_value():
    empty = LedgerPolicy()
    policy = empty.track("flood").never("bad-", "garbage").excuse(1.0, 2.0)
    assert empty == LedgerPolicy() and policy.tracked == ("flood",) and policy.never_stored == (("bad-", "garbage"),)
    rpo = Rpo(lost_at=10.0, gone_at=10.5, kept_until=5.0, target_s=60.0, what="the backup", margin_s=1.0)
    allowed = policy.allow(rpo)
    assert allowed.spans == [(1.0, 2.0), (4.0, 10.5)]
    with pytest.raises(ValueError, match="one per drill"):
        allowed.allow(rpo)


ACKED = {("a", 1): 3.0, ("a", 2): 6.0, ("a", 3): 8.0, ("a", 4): 12.0, **{("b", i): 1.0 + i * 0.01 for i in range(20)}}


def test_a_restore_may_lose_only_what_came_after_the_backup_and_within_the_rpo():
    rpo = Rpo(lost_at=10.0, gone_at=10.5, kept_until=5.0, target_s=60.0, what="the backup", margin_s=1.0)
    judged = rpo.judge([("a", 1), ("a", 2), ("a", 3), ("a", 4)], ACKED)
    # a#1 was in the backup, a#4 came after the loss (the broker held it): both lost for the ledger
    assert judged.unaccounted == [("a", 1), ("a", 4)]
    held = {e.name: e.held for e in judged.expectations}
    assert held == {"lost though acknowledged before the backup": False,
                    "lost though acknowledged after the loss (the broker holds them)": False,
                    "RPO (span of acknowledged readings lost)": True}
    assert judged.figures.rpo_s == 4.0 and judged.figures.lost_in_rpo == 2  # 10.0 - 6.0
    tight = Rpo(lost_at=10.0, gone_at=10.5, kept_until=5.0, target_s=3.0, what="the backup", margin_s=1.0)
    assert not next(e for e in tight.judge([("a", 2)], ACKED).expectations if e.name.startswith("RPO")).held


def test_a_point_in_time_recovery_discards_only_what_came_after_its_target():
    pit = PointInTime(target=7.0, target_iso="t", stopped_at=11.0, margin_s=1.0, late=[("a", 3)])
    judged = pit.judge([("a", 1), ("a", 3), ("a", 4)], ACKED)
    assert judged.unaccounted == [("a", 1), ("a", 4)]  # before the target, and after the stop
    failed = {e.name for e in judged.expectations if e.held is False}
    assert failed == {"lost though acknowledged before the recovery target",
                      "committed after the recovery target (before the restore), yet present",
                      "lost though acknowledged after the restore stopped the database (the broker holds them)"}
    assert judged.figures.discarded_after_target == 1 and pit.excused == (6.0, 11.0)


def test_an_experiment_refuses_its_phases_out_of_order(experiment):
    """On a real stack: each refusal leaves the experiment where it was, and the drill, once in
    order, is judged as any other."""
    with experiment:
        with pytest.raises(PhaseError, match="show the steady state first"):
            experiment.inject("kill", "backend")
        assert experiment.faults.active == [] and experiment.stack.service("backend").running
        experiment.steady_state("before")
        with experiment.inject("pause", "redis") as fault:
            with pytest.raises(PhaseError, match="roll it back first"):
                experiment.steady_state("after")
            with pytest.raises(PhaseError, match="roll it back first"):
                experiment.recover(fault)
            time.sleep(2.0)  # long enough to reach its condition
        with pytest.raises(PhaseError, match="measure the recovery first"):
            experiment.steady_state("after")
        experiment.recover(fault)
        experiment.steady_state("after")
        with pytest.raises(PhaseError, match="leave the `with experiment:` block first"):
            experiment.verdict()
    verdict = experiment.verdict()
    assert verdict.status in ("pass", "invalid"), verdict.reason  # invalid: only on a stalled host


def test_before_the_fault_a_stalled_host_is_waited_out_then_the_run_is_invalid(
        stack, chaos_settings, journal, faults, fleet, probe, live_feed):
    """Before the fault nothing is at stake: a window whose latency alone broke while the host was
    stalled is measured again, up to quiet_host_windows more, before the before_attempts budget;
    one still stalled is invalid (never a failure of the stack, never a fault injected). The host
    is 'stalled' here by bounds every measurement exceeds, and the API p95 broken by a bound of
    1 us."""
    settings = replace(chaos_settings,
                       steady_state=replace(chaos_settings.steady_state, window_s=1.0, before_attempts=1,
                                            quiet_host_windows=2),
                       validity=replace(chaos_settings.validity, max_cpu_stall=-1.0, max_io_stall=-1.0,
                                        max_memory_stall=-1.0, max_observer_lag_ms=-1.0),
                       baselines=replace(chaos_settings.baselines, api_response_ms=0.001))
    experiment = Experiment(stack, settings, journal, fleet=fleet, probe=probe, feed=live_feed, faults=faults,
                            needs=Needs(samples_per_window=1, acked_per_window=1, judged_per_window=1))
    with pytest.raises(VerdictReached) as reached:
        with experiment:
            experiment.steady_state("before")
            pytest.fail("a fault would have been injected on a stalled host")
    assert reached.value.verdict.status == "invalid", reached.value.verdict.reason
    unsettled = journal.figure(SteadyFigures, "before").unsettled
    assert len(unsettled) == 2 and all("on a stalled host" in u for u in unsettled), unsettled
    assert faults.active == []

"""Fault schedules searched by Hypothesis: sequences and overlaps of catalogue faults nobody
would list by hand.

Hypothesis: under any schedule the search draws - faults injected and healed in any order,
up to ``max_active`` at once - the stack is steady again (users' answers healthy, fresh and
correct for a streak; every reading acknowledged before the heal stored) within
``recovery.target_s`` of each heal that leaves nothing faulted, and the ledger is clean at the
end: nothing acknowledged lost, altered or stored twice.

Method: a RuleBasedStateMachine whose rules inject and heal faults of the catalogue the
provider supports, bounded by a profile (``--schedule-profile``: quick for CI, drill for the
quarterly drill), seeded (``--schedule-seed``). A failure is shrunk to the smallest failing
schedule, replayed ``replays`` times to confirm it, and printed with the command that replays it
(``--schedule-replay``). Each fault's condition is measured and journaled; one masked by another
(a toxic on an edge whose server is frozen) is listed, not judged, but a search in which no
fault bit is an error.
"""
from __future__ import annotations

import pytest

from fulsk_chaos.schedules import Runner, Step, format_command, search
from fulsk_chaos.verdict import Evidence, none_of


@pytest.mark.scenario
@pytest.mark.quick
@pytest.mark.evidence(acked_during_fault=0)
def test_fault_schedules(experiment, chaos_settings, schedule_options, stack):
    options = schedule_options
    profile = options.profile
    with experiment:
        experiment.steady_state("before")
        experiment.begin_method(disrupts=True)  # from here the steady state is judged, not a precondition
        runner = Runner(stack, chaos_settings, profile, experiment.faults, experiment.fleet, experiment.probe)
        if options.replay:
            steps = [Step.parse(s) for s in options.replay.split(",")]
            trial = runner.run(steps)
            bit, missed = runner.bites()
            experiment.record.measure(schedule={"replayed": [str(s) for s in steps], "failure": trial.failure,
                                                "faults_reached_condition": bit, "faults_not_reached": missed})
            experiment.record.expect([none_of("replayed schedule failed", int(trial.failure is not None),
                                              evidence={"steps": len(steps)}, detail=trial.failure or "")],
                                     [Evidence("schedule steps run", runner.steps_run, 1),
                                      Evidence("schedule faults that reached their condition", bit, 1)])
        else:
            result = search(runner, options.profile_name, options.seed,
                            lambda extra: format_command(options.command, extra))
            experiment.record.measure(schedule=result.to_json())
            detail = ""
            if result.minimal:
                detail = (f"smallest failing schedule: {', '.join(map(str, result.minimal))} "
                          f"(failed {result.replay_failures} of {result.replays} replays): {result.failure}; "
                          f"replay: {result.replay_command}")
                print(f"\nfault schedule failed; replay it with:\n  {result.replay_command}\n"
                      f"search again with:\n  {result.search_command}")
            experiment.record.expect(
                [none_of("failing fault schedules", int(result.minimal is not None),
                         evidence={"examples": result.examples, "seed": result.seed}, detail=detail)],
                [Evidence("schedule steps run", result.steps_run, 1),
                 Evidence("schedule faults that reached their condition", result.faults_reached, 1)])
        experiment.recovered()  # after each heal the runner waited for it: a schedule that never recovered failed
        experiment.steady_state("after")
    experiment.verdict()

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

from fulsk_chaos.drills import schedule_search


@pytest.mark.scenario
@pytest.mark.quick
@pytest.mark.evidence(acked_during_fault=0)
def test_fault_schedules(experiment, schedule_options):
    with experiment:
        experiment.steady_state("before")
        schedule_search.run(experiment, schedule_options)  # each heal waits for the recovery; a failing schedule fails
        experiment.steady_state("after")
    experiment.verdict()

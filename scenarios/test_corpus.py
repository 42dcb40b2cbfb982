"""The committed corpus (fixtures/corpus/): every fault schedule a search once found worth
keeping - one that failed (a bug since fixed, or a bug switch's), or the first to reach a rare
state of the stack - replayed as a regression case, each judged like a scenario.

Hypothesis: under the schedule the entry records, replayed step by step as the search ran it,
the stack is steady again within ``recovery.target_s`` of each heal that leaves nothing faulted,
every reading acknowledged before the heal is stored, and the ledger is clean at the end.

Method: the entry's steps through the schedule runner (``--schedule-replay FILE`` replays one
alone). An entry's origin (seed, commit, provider, the backend and its bug switches) is kept for
the record; the case runs on this run's stack and backend. Add one with
``fulsk-chaos corpus add reports/corpus/FILE.json`` (or a run's results.json).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from fulsk_chaos.drills import corpus, schedule_search

CASES = corpus.entries()


@pytest.mark.scenario
@pytest.mark.quick
@pytest.mark.evidence(acked_during_fault=0)
@pytest.mark.parametrize("path", [p for p, _ in CASES], ids=[p.stem for p, _ in CASES])
def test_corpus_case(experiment, schedule_options, path):
    with experiment:
        experiment.steady_state("before")
        schedule_search.run(experiment, replace(schedule_options, replay=str(path)))
        experiment.steady_state("after")
    experiment.verdict()

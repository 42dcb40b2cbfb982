"""The bug-switch proofs against the guide's Node.js backend (fixtures/backends/node): each class
of resilience bug the reference backend's switches prove caught, switched on in a backend the
framework did not write, fails the scenario for the right reason - the expectation that names it.

Each runs one scenario in a pytest of its own, with ``--backend node`` and FULSK_BUGS.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

DB_LOSS_KILL = "scenarios/test_db_loss.py -k kill --backend node"

CASES = [
    # (bug, scenario, the expectation that must fail: in its name)
    ("ack-on-receipt", DB_LOSS_KILL, "lost (acknowledged, not stored)"),
    ("duplicate-writes", DB_LOSS_KILL, "duplicates (stored more than once)"),
    ("ingest-dies-on-error", DB_LOSS_KILL, "lost (acknowledged, not stored)"),
    ("generation-binary-kilo", DB_LOSS_KILL, "wrong answers"),  # totals 2.4 % above all that was sent
    ("unbounded-queries", "scenarios/test_network.py -k blackhole_postgres --backend node",
     "during: unanswered"),
    ("stale-cache-after-outage", "scenarios/test_cache.py -k pause --backend node", "after: stale answers"),
]


@pytest.mark.parametrize("bug, select, expectation", CASES, ids=[c[0] for c in CASES])
def test_each_bug_class_fails_the_node_backend_for_its_reason(run_scenario, bug, select, expectation):
    run = run_scenario(select, f'[recovery]\ntarget_s = 10\n[backend.env]\nFULSK_BUGS = "{bug}"\n')
    assert run.scenario["verdict"] == "fail", run.output[-2000:]
    failed = run.expectations(held=False)
    assert any(expectation in name for name in failed), sorted(failed)


def test_the_healthy_node_backend_passes_what_its_bugs_fail(run_scenario):
    """(The same scenario without a bug: the failures above are the bugs', not the backend's.)"""
    run = run_scenario(DB_LOSS_KILL, "[recovery]\ntarget_s = 10\n")
    assert run.scenario["verdict"] == "pass", run.output[-2000:]
    assert run.scenario["measurements"]["lost"] == run.scenario["measurements"]["duplicates"] == 0

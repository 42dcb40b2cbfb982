"""The ops guide's runbooks (fixtures/runbooks/*.yml), each run against the stack from its trigger.

Hypothesis: each runbook, run step by step as the guide documents it (or as the runbook file
corrects it), brings the stack back from its trigger within the runbook's target: users served
fresh, correct data again, nothing the broker acknowledged lost or stored twice. Every documented
command exists and has its verified effect; where it does not, the runbook file says what works
and what the guide should say, and the run reports the drift.

Method: the trigger (a fault of the catalogue, or a condition such as a failing backup), then
every step in order, with the stack's addresses. Rollback: the trigger's fault is rolled back
after the runbook (a no-op once the runbook fixed it), and the stack is healed after each scenario.
"""
from __future__ import annotations

import pytest

from fulsk_chaos import runbooks

# CI runs these on Docker too (the guide's docker-compose commands; the firewall on the host network)
QUICK = {("service-restart", "unresponsive"), ("security-incident-response", "path-probe"),
         ("database-failover", "primary-lost")}
# Scaling up is judged on the host's spare CPU (load.host_max_cpu): never beside another drill worker
SERIAL = {"scale-up"}
CASES = [pytest.param(r.name, t.case, id=f"{r.name}:{t.case}",
                      marks=[pytest.mark.runbook(r.name), *([pytest.mark.quick, pytest.mark.provider] if (r.name, t.case) in QUICK else []),
                             *([pytest.mark.stack(**r.stack)] if r.stack is not None else []),
                             *([pytest.mark.serial] if r.name in SERIAL else []),
                             *([pytest.mark.needs(*r.needs)] if r.needs else [])])
         for r in runbooks.load_all() for t in r.triggers]

pytestmark = [pytest.mark.scenario]


@pytest.mark.parametrize("name, case", CASES)
def test_runbook(name, case, experiment, runbook_drill):
    runbook = runbooks.load(name)
    experiment.record.hypothesis = runbooks.drill.hypothesis(runbook, runbook.trigger(case))
    with experiment:
        experiment.steady_state("before")
        runbook_drill.run(runbook, case)
        experiment.steady_state("after")
    experiment.verdict()

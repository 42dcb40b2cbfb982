"""A failure the schedule search finds is replayed to say how often it reproduces, and written to
the corpus as a file that --schedule-replay replays to the same verdict."""
from __future__ import annotations

import json

import pytest

from fulsk_chaos.drills import corpus

# A backlog of more than 20 late readings is shed: one kill of the backend (3 s down at the
# fleet's 50 readings/s) builds one, so the rare-state bug shows in the first schedule.
SHED = ('[recovery]\ntarget_s = 5\n[backend.env]\nFULSK_BUGS = "backlog-shed"\nFULSK_BACKLOG_SHED = "20"\n'
        '[schedules.quick]\nmax_examples = 2\nmax_steps = 2\nfault_s = 4.0\nreplays = 2\nkinds = ["kill"]\n'
        'targets = ["backend"]\n')


@pytest.mark.slow
def test_a_found_failure_reproduces_and_its_corpus_file_replays_to_the_same_verdict(run_scenario):
    found = run_scenario("scenarios/test_schedules.py --schedule-seed 5", SHED, timeout_s=600)
    assert found.scenario["verdict"] == "fail", found.output[-3000:]
    schedule = found.scenario["measurements"]["schedule"]
    assert schedule["reproduced"] in ("1 of 2", "2 of 2") and not schedule["nondeterministic"]
    entries = [e for e in found.scenario["measurements"]["corpus"] if e["why"] == "failed"]
    assert entries and entries[0]["backend"]["env"]["FULSK_BUGS"] == "backlog-shed"
    (path,) = [p for p in (found.report.parent / "corpus").glob("failed-*.json")]
    assert corpus.read(path).steps == schedule["minimal_failing_schedule"]
    assert "reproduces" in found.expectations(held=False)["failing fault schedules"]["detail"]

    replayed = run_scenario(f"scenarios/test_schedules.py --schedule-replay {path}", SHED, timeout_s=300)
    assert replayed.scenario["verdict"] == "fail", replayed.output[-3000:]
    assert "replayed schedule failed" in replayed.expectations(held=False)
    assert json.loads(path.read_text())["steps"] == replayed.scenario["measurements"]["schedule"]["replayed"]

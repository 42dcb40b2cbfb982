"""Each catalogue scenario against the reference backend with the weakness it exists to catch.

Every test runs one scenario in a pytest of its own with one FULSK_BUGS switch on and checks
that the verdict is ``fail`` and names the expectation the weakness violates.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

CASES = [
    # (scenario, switch, an expectation that must fail: its name's start, or several, any of which)
    ("scenarios/test_network.py::test_latency[postgres]", "chatty-queries", "during: read error rate"),
    # a live feed's p95 is what a busy host breaks too: judged with nothing beside it
    pytest.param("scenarios/test_network.py::test_latency[redis]", "slow-cache-path", "during: live feed delay p95",
                 marks=pytest.mark.serial, id="slow-cache-path->test_latency[redis]"),
    ("scenarios/test_network.py::test_blackhole_postgres", "unbounded-queries", "during: unanswered"),
    ("scenarios/test_network.py::test_reset_peer_mqtt", "clean-session", "lost"),
    ("scenarios/test_process.py::test_process_fault[kill-backend]", "clean-session", "lost"),
    ("scenarios/test_process.py::test_process_fault[kill-mqtt]", "no-mqtt-reconnect", "recovery"),
    ("scenarios/test_mqtt_clients.py::test_duplicate_client_id", "clean-session", "lost"),
    # Trusting payloads stores garbage, or (when a poison payload reaches the database first) jams
    # ingest behind it so acknowledged readings are lost: which comes first is a race, both are caught.
    ("scenarios/test_mqtt_clients.py::test_flood_and_storm", "no-validation",
     ("malformed or impossible readings stored", "lost (acknowledged, not stored)")),
    ("scenarios/test_cache.py::test_cache_fault[restart-empty]", "cache-refill-all", "during: database reads per user read"),
]


@pytest.mark.parametrize(("scenario", "switch", "violated"), CASES,
                         ids=[c.id if hasattr(c, "id") else f"{c[1]}->{c[0].split('::')[1]}" for c in CASES])
def test_scenario_fails_under_its_weakness(run_scenario, scenario, switch, violated):
    # The recovery target bounds how long the ledger waits for readings that never come: 5 s is
    # plenty for the reference backend and halves what each weakness costs to show.
    run = run_scenario(scenario, f'[recovery]\ntarget_s = 5\n[backend.env]\nFULSK_BUGS = "{switch}"\n')
    assert run.scenario["verdict"] == "fail", run.output[-3000:]
    failed = run.expectations(held=False)
    assert any(name.startswith(violated) for name in failed), f"{violated!r} not among the failed: {sorted(failed)}"


# The recovery drills against broken stacks and a broken restore procedure:
# (scenario, configuration, environment of the tools, an expectation that must fail). A backend
# serving reads frozen before an outage fails the same "contradicts" check after a restore (it
# fails db_loss on stale answers in test_verdicts_catch_bugs.py): one proof of that check is kept
# in CI's 40 minutes, the one through the restore procedure itself.
WAL_OFF = '[stack]\nbugs = ["wal-archive-off"]\n'
RECOVERY_CASES = {
    "wal-archive-off->point_in_time": ("scenarios/test_backup_recovery.py::test_point_in_time", WAL_OFF, {},
                                       "disaster-recovery.sh -f latest_backup.tar.gz exit status"),
    "wal-archive-off->total_loss[full]": ("scenarios/test_backup_recovery.py::test_total_loss[full]", WAL_OFF, {},
                                          "lost though acknowledged before the last WAL archived"),
    "restore-keeps-the-cache->point_in_time": ("scenarios/test_backup_recovery.py::test_point_in_time", "",
                                               {"CACHE_KEYS": "nothing-matches:*"}, "answers the database contradicts"),
}


@pytest.mark.parametrize(("scenario", "config", "env", "violated"), RECOVERY_CASES.values(), ids=RECOVERY_CASES)
def test_restore_drill_fails_on_a_broken_stack(run_scenario, monkeypatch, scenario, config, env, violated):
    for name, value in env.items():  # the backup tools read their settings from the environment too
        monkeypatch.setenv(name, value)
    run = run_scenario(scenario, config, timeout_s=600)
    assert run.scenario["verdict"] == "fail", run.output[-3000:]
    failed = run.expectations(held=False)
    assert any(name.startswith(violated) for name in failed), f"{violated!r} not among the failed: {sorted(failed)}"


def test_a_schedule_search_finds_shrinks_and_replays_a_failure(run_scenario):
    """Under clean-session a killed backend loses what is published while it is away: the search
    finds it, shrinks it to one step, confirms it by replaying, and prints a command that reproduces it."""
    config = ('[recovery]\ntarget_s = 5\n[backend.env]\nFULSK_BUGS = "clean-session"\n'
              '[schedules.quick]\nkinds = ["kill"]\ntargets = ["backend", "redis"]\nmax_examples = 3\nreplays = 2\n')
    # Hypothesis shrinks each choice toward the menu's first step, and the seed orders the menu:
    # seed 1 puts kill:backend first (seed 7, redis first, shrinks to kill:redis, kill:backend)
    run = run_scenario("scenarios/test_schedules.py -s --schedule-seed 1", config, timeout_s=900)
    scenario = run.scenario
    assert scenario["verdict"] == "fail", run.output[-3000:]
    assert "failing fault schedules" in run.expectations(held=False)
    schedule = scenario["measurements"]["schedule"]
    assert [s for s in schedule["minimal_failing_schedule"] if s != "heal"] == ["kill:backend"]
    assert schedule["replays"] == 2 and schedule["replay_failures"] >= 1
    command = schedule["replay_command"]
    assert command in run.output and "--schedule-replay kill:backend" in command
    replayed = run_scenario(command.split(" ", 3)[3], config, timeout_s=300)  # the same pytest arguments
    assert replayed.scenario["verdict"] == "fail", replayed.output[-3000:]
    assert "replayed schedule failed" in replayed.expectations(held=False)

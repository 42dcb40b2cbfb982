"""The schedule search's parts that need no search: steps, the menu, profiles."""
from __future__ import annotations

import pytest

from fulsk_chaos.config import ConfigError, from_mapping
from fulsk_chaos.errors import FulskChaosError
from fulsk_chaos.faults import CATALOGUE, FaultInjector
from fulsk_chaos.checks.dbload import OURS, is_user_read
from fulsk_chaos.drills.schedule_search import format_command
from fulsk_chaos.drills.schedules import ScheduleStep as Step, menu


def test_a_step_reads_as_it_prints():
    step = Step.parse(" latency:backend-postgres ")
    assert step == Step("latency", "backend-postgres") and str(step) == "latency:backend-postgres"
    assert CATALOGUE[step.kind].search_params == {"latency_ms": 300, "jitter_ms": 50}  # what the kind declares
    assert Step.parse(" heal ").is_heal and str(Step.parse("heal")) == "heal"
    with pytest.raises(FulskChaosError, match="KIND:TARGET .* or heal"):
        Step.parse("kill")


def test_profiles_come_from_the_configuration_and_keep_the_others():
    settings = from_mapping({"schedules": {"quick": {"max_examples": 1, "kinds": ["kill"]},
                                           "nightly": {"max_steps": 12}}})
    assert settings.schedules["quick"].max_examples == 1 and settings.schedules["quick"].kinds == ["kill"]
    assert settings.schedules["nightly"].max_steps == 12
    assert "drill" in settings.schedules  # a profile not mentioned keeps its default
    with pytest.raises(ConfigError, match="schedules.quick.max_exampels: unknown key"):
        from_mapping({"schedules": {"quick": {"max_exampels": 1}}})


def test_the_replay_command_quotes_what_a_shell_would_split():
    command = format_command(["python", "-m", "pytest", "scenarios/test_schedules.py::test_fault_schedules"],
                             {"--schedule-replay": "kill:backend,latency:backend-postgres", "--chaos-config": "/a b"})
    assert command.endswith("--schedule-replay kill:backend,latency:backend-postgres --chaos-config '/a b'")


@pytest.mark.provider
def test_the_menu_holds_what_the_provider_supports_and_nothing_destructive(stack):
    steps = menu(FaultInjector(stack))
    kinds = {s.kind for s in steps}
    assert "volume-loss" not in kinds and "stuck-websockets" not in kinds
    assert {"kill", "pause", "latency", "down", "flushall", "flood"} <= kinds
    assert Step("latency", "backend-postgres") in steps and Step("kill", "backend") in steps
    assert not any(s.target == "toxiproxy" for s in steps)  # the instrument is not the system under test
    assert {s.target for s in steps if s.kind == "flushall"} == {"redis"}  # what serves the Redis protocol
    assert {s.target for s in steps if s.kind == "flood"} == {"mqtt"}
    only = menu(FaultInjector(stack), ["kill"], ["backend"])
    assert only == [Step("kill", "backend")]
    with pytest.raises(FulskChaosError, match="no fault to search"):
        menu(FaultInjector(stack), ["kill"], ["nothing"])


@pytest.mark.parametrize(("query", "counted"), [
    ("SELECT inverter_id, site_id, last_seen FROM inverters ORDER BY inverter_id", True),
    ("SELECT seq, ts FROM readings WHERE inverter_id = $1", True),
    (f"{OURS} SELECT inverter_id, seq FROM readings WHERE inverter_id = ANY($1)", False),
    ("WITH batch AS (SELECT ...) INSERT INTO readings SELECT * FROM batch", False),
    ("SELECT $1", False),
    ("SELECT device_id, site_id, recorded_at FROM telemetry WHERE device_id = $1", True),  # any backend's tables
    ("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'", False),
])
def test_only_the_stacks_reads_count_as_database_load(query, counted):
    assert is_user_read(query) is counted

"""The nox sessions do what the README says of them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
nox = pytest.importorskip("nox", reason="nox is what runs these sessions: pip install -e '.[test]'")


class RecordingSession:
    """Stands in for nox's Session: records the commands a session function would run."""

    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs
        self.commands: list[tuple[str, ...]] = []

    def run(self, *args: str, **kwargs: object) -> None:
        self.commands.append(args)

    def install(self, *args: str) -> None:
        self.commands.append(("install", *args))


@pytest.fixture
def noxfile(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delenv("FULSK_CHAOS_STACK", raising=False)
    import noxfile  # once per process: nox keeps a registry of the sessions a noxfile declares
    return noxfile


@pytest.mark.parametrize("posargs", [["--stack", "docker"], ["--stack=docker", "-k", "db_loss"]])
def test_drill_on_docker_installs_and_starts_the_engine_first(noxfile, posargs):
    session = RecordingSession(posargs)
    noxfile.drill(session)
    assert session.commands[0] == ("bash", "scripts/bootstrap.sh", "--docker")
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--schedule-profile", "drill", *posargs)


def test_drill_on_the_local_stack_needs_no_engine(noxfile):
    session = RecordingSession(["--stack", "local"])
    noxfile.drill(session)
    assert session.commands[0] == ("bash", "scripts/bootstrap.sh")
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--schedule-profile", "drill", "--stack", "local")


def test_the_drill_profile_can_be_overridden(noxfile):
    session = RecordingSession(["--stack", "local", "--schedule-profile", "quick"])
    noxfile.drill(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--stack", "local", "--schedule-profile", "quick")


def _collected(command: tuple[str, ...]) -> list[str]:
    """The test ids a session's pytest command selects, as pytest itself collects them."""
    done = subprocess.run([sys.executable, "-m", "pytest", *command[1:], "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_ci_runs_every_test_and_the_quick_subset_of_the_catalogue_on_each_provider(noxfile):
    session = RecordingSession([])
    noxfile.tests(session)
    local, docker = (_collected(c) for c in session.commands if c[0] == "pytest")
    every_test = _collected(("pytest", "tests"))
    assert set(every_test) <= set(local)
    scenarios = [t for t in local if t.startswith("scenarios/")]
    # exactly the scenarios marked quick: one of each scenario module, a runbook of each kind of trigger
    assert scenarios and {t.split("::")[0] for t in scenarios} == {str(p.relative_to(ROOT)) for p in
                                                                     (ROOT / "scenarios").glob("test_*.py")}
    assert "scenarios/test_db_loss.py::test_db_loss[kill]" in scenarios
    assert "scenarios/test_db_loss.py::test_db_loss[pause]" not in scenarios
    # Docker: the quick scenarios but the search, and only the tests that exercise a provider
    assert {t for t in docker if t.startswith("scenarios/")} == set(scenarios) - {
        "scenarios/test_schedules.py::test_fault_schedules"}
    assert "tests/test_docker.py::test_volume_loss_deletes_the_data_and_the_stack_recovers_on_an_empty_database" in docker
    assert "tests/test_verdict.py::test_pass_needs_every_expectation_held_on_enough_evidence" not in docker


@pytest.mark.parametrize("name, path", [("load", "loadtests/test_load.py"), ("stress", "loadtests/test_stress.py")])
def test_the_load_cadence_sessions_run_their_load_scenario_with_the_given_parameters(noxfile, name, path):
    session = RecordingSession(["--stack", "local", "--duration", "60s", "--workers", "2"])
    getattr(noxfile, name)(session)
    assert session.commands[-1] == ("pytest", path, "--monitoring", "--stack", "local", "--duration", "60s",
                                    "--workers", "2")


def test_the_quarterly_chaos_session_runs_every_scenario_under_load(noxfile):
    session = RecordingSession(["--stack", "local"])
    noxfile.chaos(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--under-load", "--schedule-profile", "drill",
                                    "--stack", "local")
    session = RecordingSession(["--stack", "local", "--under-load=weekly"])
    noxfile.chaos(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--schedule-profile", "drill", "--stack",
                                    "local", "--under-load=weekly")

"""The nox sessions do what the README says of them."""
from __future__ import annotations

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


def test_ci_runs_the_quick_subset_and_the_provider_tests_on_docker(noxfile):
    session = RecordingSession([])
    noxfile.tests(session)
    local, docker = [c for c in session.commands if c[0] == "pytest"]
    assert local == ("pytest", "tests", "scenarios", "--stack", "local", "--durations", "40")
    assert docker == ("pytest", "tests", "scenarios", "--stack", "docker", "-m", "docker or provider or quick")


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

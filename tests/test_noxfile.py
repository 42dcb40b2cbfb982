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
    assert session.commands[-1] == ("pytest", "scenarios", *posargs)


def test_drill_on_the_local_stack_needs_no_engine(noxfile):
    session = RecordingSession(["--stack", "local"])
    noxfile.drill(session)
    assert session.commands[0] == ("bash", "scripts/bootstrap.sh")
    assert session.commands[-1] == ("pytest", "scenarios", "--stack", "local")

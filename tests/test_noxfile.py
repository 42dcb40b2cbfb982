"""The nox sessions do what the README says of them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MONITORED = ("-n", str(os.cpu_count() or 1), "--dist", "worksteal")  # see noxfile.parallel: a drill is monitored
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
    assert session.commands[-1] == ("pytest", "scenarios", *MONITORED, "--monitoring", "--schedule-profile", "drill",
                                    *posargs)


def test_drill_on_the_local_stack_needs_no_engine(noxfile):
    session = RecordingSession(["--stack", "local"])
    noxfile.drill(session)
    assert session.commands[0] == ("bash", "scripts/bootstrap.sh")
    assert session.commands[-1] == ("pytest", "scenarios", *MONITORED, "--monitoring", "--schedule-profile", "drill",
                                    "--stack", "local")


def test_the_drill_profile_and_the_workers_can_be_overridden(noxfile):
    session = RecordingSession(["--stack", "local", "--schedule-profile", "quick", "-n", "1"])
    noxfile.drill(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--stack", "local", "--schedule-profile", "quick",
                                    "-n", "1")
    for chosen in (["-n0"], ["--numprocesses=3"], ["-p", "no:xdist"]):
        assert noxfile.parallel(chosen) == []
    assert [noxfile.workers(c) for c in (1, 2, 4, 8)] == [2, 3, 6, 12]
    assert [noxfile.workers(c, monitored=True) for c in (1, 2, 4, 8)] == [1, 2, 4, 8]
    assert noxfile.parallel(["--monitoring"])[:2] == ["-n", str(noxfile.workers(monitored=True))]
    assert noxfile.parallel([], heavy=True)[:2] == ["-n", str(noxfile.workers(monitored=True))]


def _serial(command: tuple[str, ...]) -> tuple[str, ...]:
    """The command without pytest-xdist's options (whose workers print no collection)."""
    kept, skip = [], False
    for arg in command:
        if not skip and arg not in ("-n", "--dist"):
            kept.append(arg)
        skip = not skip and arg in ("-n", "--dist")
    return tuple(kept)


def _collected(*commands: tuple[str, ...]) -> list[list[str]]:
    """The test ids each of a session's pytest commands selects, as pytest itself collects them."""
    commands = [_serial(c) for c in commands]
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", *c[1:], "--collect-only", "-q", "-p", "no:cacheprovider"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    return [[line for line in output.splitlines() if "::" in line] for output in outputs]


def test_ci_runs_every_test_and_each_quick_scenario_once(noxfile):
    session = RecordingSession([])
    noxfile.tests(session)
    runs = [c for c in session.commands if c[0] == "pytest"]
    local, docker, node_local, node_docker, every_test = _collected(*runs, ("pytest", "tests"))
    # the quick subset once more against the Node.js backend, split between the stacks the same way
    assert all("--backend" in c and "node" in c for c in runs[2:])
    # a Docker stack is heavy (dockerd, a shim per container): one worker per core
    assert all(c[c.index("-n") + 1] == str(noxfile.workers(monitored=True)) for c in runs if "docker" in c)
    assert {t for t in local if t.startswith("scenarios/")} == set(node_local)
    assert {t for t in docker if t.startswith("scenarios/")} == set(node_docker)
    assert set(every_test) <= set(local)
    on_local = {t for t in local if t.startswith("scenarios/")}
    on_docker = {t for t in docker if t.startswith("scenarios/")}
    # each quick scenario once: on Docker those whose faults or commands act through the provider,
    # on the local stack the others; together at least one of each scenario module
    assert on_local and on_docker and not on_local & on_docker
    assert {t.split("::")[0] for t in on_local | on_docker} == {str(p.relative_to(ROOT)) for p in
                                                                (ROOT / "scenarios").glob("test_*.py")}
    assert {"scenarios/test_db_loss.py::test_db_loss[kill]", "scenarios/test_backup_recovery.py::test_total_loss[daily]",
            "scenarios/test_runbooks.py::test_runbook[service-restart:unresponsive]"} <= on_docker
    assert {"scenarios/test_schedules.py::test_fault_schedules", "scenarios/test_network.py::test_latency[postgres]"
            } <= on_local
    assert "scenarios/test_db_loss.py::test_db_loss[pause]" not in on_local | on_docker  # not quick: the drill's
    assert "tests/test_docker.py::test_volume_loss_deletes_the_data_and_the_stack_recovers_on_an_empty_database" in docker
    assert "tests/test_verdict.py::test_pass_needs_every_expectation_held_on_enough_evidence" not in docker


@pytest.mark.parametrize("name, path", [("load", "loadtests/test_load.py"), ("stress", "loadtests/test_stress.py")])
def test_the_load_cadence_sessions_run_their_load_drill_with_the_given_parameters(noxfile, name, path):
    session = RecordingSession(["--stack", "local", "--duration", "60s", "--workers", "2"])
    getattr(noxfile, name)(session)
    assert session.commands[-1] == ("pytest", path, "--monitoring", "--stack", "local", "--duration", "60s",
                                    "--workers", "2")


def test_loadbench_prints_the_generator_ceiling_or_with_knee_the_stress_knee_beside_wrk(noxfile):
    session = RecordingSession(["3", "10"])
    noxfile.loadbench(session)
    assert session.commands[-1] == ("python", "tests/benchmarks/load_generator.py", "3", "10")
    session = RecordingSession(["knee", "15", "5"])
    noxfile.loadbench(session)
    assert ("bash", "scripts/bootstrap.sh", "--bench") in session.commands  # wrk
    assert session.commands[-1] == ("python", "tests/benchmarks/stress_knee.py", "15", "5")


def test_the_quarterly_chaos_session_runs_every_scenario_under_load(noxfile):
    session = RecordingSession(["--stack", "local"])
    noxfile.chaos(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--under-load",
                                    "--schedule-profile", "drill", "--stack", "local")
    session = RecordingSession(["--stack", "local", "--under-load=weekly"])
    noxfile.chaos(session)
    assert session.commands[-1] == ("pytest", "scenarios", "--monitoring", "--schedule-profile", "drill",
                                    "--stack", "local", "--under-load=weekly")


def test_bench_runs_a_commit_to_compare_from_a_worktree_it_removes_whatever_happens(noxfile, monkeypatch):
    session = RecordingSession(["--against", "fb825b9"])
    noxfile.bench(session)
    assert session.commands[0] == ("bash", "scripts/bootstrap.sh", "--docker")
    assert session.commands[-1] == ("python", "tests/benchmarks/stack_lifecycle.py", "--against", "fb825b9")
    import importlib.util
    spec = importlib.util.spec_from_file_location("stack_lifecycle", ROOT / "tests" / "benchmarks" / "stack_lifecycle.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stack_lifecycle", bench)
    spec.loader.exec_module(bench)
    with pytest.raises(RuntimeError, match="a stack failed"):
        with bench.worktree("HEAD") as (sha, checkout):
            assert (checkout / "fulsk_chaos" / "stack").is_dir()
            raise RuntimeError("a stack failed")
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not checkout.exists() and str(checkout) not in listed


@pytest.mark.parametrize("posargs, budget, rest", [(["--stack", "local", "--budget", "1h"], "1h", ["--stack", "local"]),
                                                   (["--budget=90s", "--stack", "local"], "90s", ["--stack", "local"]),
                                                   (["--stack", "local"], "15m", ["--stack", "local"])])
def test_explore_searches_with_the_explore_profile_for_its_budget(noxfile, posargs, budget, rest):
    session = RecordingSession(posargs)
    noxfile.explore(session)
    assert session.commands[-1] == ("pytest", "scenarios/test_schedules.py", "--schedule-budget", budget,
                                    "--schedule-profile", "explore", *rest)

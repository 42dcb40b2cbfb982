"""A run leaves no process, listening port or directory behind: on success, on error, on Ctrl-C,
and when the test process itself is SIGKILLed (the reaper's job)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import as_in_a_terminal

from fulsk_chaos.stack import Stack
from fulsk_chaos.host.procs import identity, listening_ports, service_processes, survivors, wait_exited

ROOT = Path(__file__).resolve().parents[1]


def everything_of(stack: Stack) -> tuple[set, set[int], list[Path]]:
    """Every process (with its identity), every port and the directories of a running stack (its
    own, and its memory directory where the host has one)."""
    services = [*stack.services.values(), *(r for extra in stack.replicas.values() for r in extra)]
    processes = {identity(p) for s in services for p in service_processes(s.pid)}
    processes.add(identity(stack.describe()["reaper_pid"]))
    ports = set(stack.topology.ports.values()) | {e.listen for e in stack.topology.edges.values()}
    return processes - {None}, ports, directories_of(stack.describe())


def directories_of(state: dict) -> list[Path]:
    """The directories a stack's state (stack.json, describe()) names."""
    assert state["dir"] and Path(state["dir"]).is_absolute()
    return [Path(d) for d in (state["dir"], state.get("memory_dir")) if d]


def assert_nothing_left(processes: set, ports: set[int], directories: list[Path], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not survivors(processes) and not (ports & listening_ports()) and not any(d.exists() for d in directories):
            return
        time.sleep(0.1)
    assert survivors(processes) == [], "processes left behind"
    assert sorted(ports & listening_ports()) == [], "ports still listening"
    assert not [d for d in directories if d.exists()], "directories left behind"


def test_a_clean_teardown_leaves_nothing():
    with Stack() as stack:
        left = everything_of(stack)
        assert len(left[0]) > 8 and left[1] <= listening_ports()
    assert_nothing_left(*left, within_s=0.5)


def test_scaled_out_instances_leave_with_the_stack():
    """Replicas (``ctl scale``) share their service's port: they must go with the stack, not outlive it."""
    with Stack() as stack:
        stack.scale("backend", 3)
        stack.scale("frontend", 2)
        left = everything_of(stack)
        assert stack.instances("backend") == ["running"] * 3 and stack.instances("frontend") == ["running"] * 2
    assert_nothing_left(*left, within_s=0.5)


def test_an_exception_inside_the_stack_leaves_nothing():
    with pytest.raises(RuntimeError, match="boom"):
        with Stack() as stack:
            left = everything_of(stack)
            stack.service("postgres").pause()  # even a frozen service is taken down
            raise RuntimeError("boom")
    assert_nothing_left(*left, within_s=0.5)


def test_two_stacks_in_one_process_share_nothing():
    with Stack() as a, Stack() as b:
        assert set(a.topology.ports.values()).isdisjoint(b.topology.ports.values())
        assert a.dir != b.dir
        a.service("redis").kill()
        assert b.service("redis").running
        assert b.toxiproxy.proxies()["backend-redis"]["upstream"].endswith(str(b.topology.ports["redis"]))


def test_a_teardown_stops_each_client_before_its_servers_and_times_every_phase():
    """The start groups in reverse (each group's services together); Stack.timings says where the
    start and the teardown went (`nox -s bench` prints each service's share)."""
    spans: dict[str, tuple[float, float]] = {}
    with Stack() as stack:
        for name, service in stack.services.items():
            def stop(grace_s: float | None = None, name: str = name, original=service.stop) -> None:
                began = time.monotonic()
                original(grace_s)
                spans[name] = (began, time.monotonic())
            service.stop = stop
    proxy = [s.name for s in stack.catalogue.specs if s.carries_edges]
    for spec in stack.catalogue.specs:
        for server in {*spec.depends_on, *(proxy if spec.depends_on else [])}:
            assert spans[spec.name][1] <= spans[server][0], f"{server} was stopped before its client {spec.name}"
    phases = {"prepare", "spawn", "healthy", "after_start", "ready", "stop", "remove"}
    assert {n: set(p) for n, p in stack.timings.services.items()} == {n: phases for n in stack.catalogue.names}
    assert stack.timings.start_to_healthy_s > 0 and stack.timings.teardown_s > 0
    assert {"ports", "ready", "control"} <= set(stack.timings.start) and "reaper" in stack.timings.teardown
    json.dumps(stack.describe()["timings"])


def test_the_reaper_process_imports_nothing_it_does_not_need():
    """One starts beside every stack and exits at every teardown: the stack package and its clients
    cost each reaper 0.7 s of CPU while the stack started."""
    code = "import sys, fulsk_chaos.host.reaper; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    heavy = ("fulsk_chaos.stack", "fulsk_chaos.services", "psycopg", "requests", "docker", "redis")
    assert [m for m in loaded.split() if m.startswith(heavy)] == []


def test_waiting_for_a_process_returns_its_exit_status_or_times_out():
    assert wait_exited(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]), 30) == 3
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exited(sleeper, 0.05)
    finally:
        sleeper.kill()
        sleeper.wait()


_HOLD_A_STACK = """
import json, sys, time
from fulsk_chaos.stack import Stack
from fulsk_chaos.host.procs import service_processes
stack = Stack()
stack.start()
pids = [p for s in stack.services.values() for p in service_processes(s.pid)] + [stack.describe()["reaper_pid"]]
ports = list(stack.topology.ports.values()) + [e.listen for e in stack.topology.edges.values()]
print(json.dumps({"pids": pids, "ports": ports, **stack.describe()}), flush=True)
time.sleep(600)
"""


def test_a_killed_test_process_leaves_nothing():
    child = subprocess.Popen([sys.executable, "-c", _HOLD_A_STACK], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        state = json.loads(child.stdout.readline())
        processes = {identity(p) for p in state["pids"]} - {None}
        assert len(processes) > 8 and set(state["ports"]) <= listening_ports()
    finally:
        child.kill()  # SIGKILL: no finalizer, no atexit, nothing of ours runs in it
        child.wait()
    assert_nothing_left(processes, set(state["ports"]), directories_of(state))


def _descendants(pid: int) -> set:
    return {identity(p) for p in service_processes(pid) if p != pid} - {None}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_test_runner_stopped_mid_scenario_leaves_nothing(tmp_path, sig):
    # The database stays down for a minute: the signal lands mid-scenario however busy the host.
    (tmp_path / "long.toml").write_text("[scenarios.db_loss]\ndown_s = 60\n")
    runner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "scenarios/test_db_loss.py", "-k", "kill", "-p", "no:cacheprovider",
         "--chaos-config", str(tmp_path / "long.toml"), "--report-dir", str(tmp_path)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=as_in_a_terminal)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/stack.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        state = json.loads(next(tmp_path.glob("*/stack.json")).read_text())
        postgres = state["services"]["postgres"]["pid"]
        while identity(postgres) is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # mid-scenario: the fault has been injected
        assert identity(postgres) is None, "the scenario never killed postgres"
        assert runner.poll() is None, "the runner ended before it could be stopped mid-scenario"
        processes = _descendants(runner.pid)
        ports = {s["port"] for s in state["services"].values()} | {p["listen"] for p in state["proxies"].values()}
    finally:
        os.kill(runner.pid, sig)
        runner.wait(timeout=60)
    assert len(processes) >= 6  # reaper, toxiproxy, redis, mosquitto, backend, nginx (postgres is down)
    assert_nothing_left(processes, ports, directories_of(state))
    # The journal says what happened: the scenario never reached its verdict (written ahead, so
    # even a SIGKILLed runner leaves it), and the run as a whole was interrupted, not passed.
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    (scenario,) = results["scenarios"]
    assert results["verdict"] == "interrupted"
    assert scenario["name"] == "db_loss[kill]" and scenario["verdict"] == "interrupted"
    assert "before this scenario reached its verdict" in scenario["reason"]

"""The Docker provider: containers on the host network, container faults, and nothing left behind.

Runs with ``--stack docker`` (``nox -s tests`` does both providers); skipped on the local stack.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import psycopg
import pytest
import requests
from docker.errors import NotFound

from fulsk_chaos.faults import FaultInjector
from fulsk_chaos.host.engine import LABEL, OWNER_LABEL, STACK_LABEL, remove_orphans
from conftest import as_in_a_terminal  # Ctrl-C as a terminal delivers it

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.docker


@pytest.fixture
def docker_stack(stack):
    return stack


@pytest.fixture
def client():
    c = docker.from_env()
    yield c
    c.close()


def labelled(client, stack_id: str) -> tuple[list[str], list[str]]:
    """Names of a stack's containers and volumes (listed without inspecting: they may be going away)."""
    selector = {"label": f"{STACK_LABEL}={stack_id}"}
    return ([c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=selector)],
            [v["Name"] for v in client.api.volumes(filters=selector).get("Volumes") or []])


def test_every_service_is_a_labelled_container_on_the_host_network(docker_stack, client, chaos_run):
    names, volumes = labelled(client, docker_stack.id)
    assert len(names) == 6 and volumes == [docker_stack.service("postgres").volume]
    for container in map(client.containers.get, names):
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.labels[OWNER_LABEL].startswith(f"{os.getpid()}:")
    recorded = chaos_run.stack["services"]
    assert {n: s["image"] for n, s in recorded.items()} == {
        n: s.image for n, s in docker_stack.services.items()}
    assert all(s["image_id"].startswith("sha256:") for s in recorded.values())


def test_kill_with_another_signal_goes_to_the_container(docker_stack):
    redis = docker_stack.service("redis")
    redis.kill(signal.SIGTERM)  # redis shuts down cleanly on SIGTERM
    deadline = time.monotonic() + 10
    while redis.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis.running
    docker_stack.heal()
    assert redis.running


def test_a_pause_rolled_back_after_another_fault_restarted_the_container(docker_stack):
    """Overlapping faults (a schedule pauses a service, then kills it; the kill's rollback restarts
    it): the pause's rollback finds it running, and leaves it so."""
    faults = FaultInjector(docker_stack, [])
    paused = faults.inject("pause", "redis")
    killed = faults.inject("kill", "redis")
    killed.rollback()
    paused.rollback()
    assert paused.record.rollback_error is None and docker_stack.service("redis").state() == "running"


def test_restart_keeps_the_container_and_its_data(docker_stack):
    postgres = docker_stack.service("postgres")
    container = postgres.container_id
    with psycopg.connect(docker_stack.endpoints.database_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives_restart (x int)")
    postgres.restart()
    assert postgres.container_id == container
    with psycopg.connect(docker_stack.endpoints.database_dsn) as conn:
        assert conn.execute("SELECT to_regclass('survives_restart')").fetchone() == ("survives_restart",)


def test_volume_loss_deletes_the_data_and_the_stack_recovers_on_an_empty_database(docker_stack, client):
    postgres = docker_stack.service("postgres")
    with psycopg.connect(docker_stack.endpoints.database_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lost_with_the_volume (x int)")
    faults = FaultInjector(docker_stack)
    with faults.inject("volume-loss", "postgres") as fault:
        with pytest.raises(NotFound):
            client.volumes.get(postgres.volume)
        assert not postgres.running
    assert fault.record.kind == "volume-loss" and fault.record.ended is not None
    with psycopg.connect(docker_stack.endpoints.database_dsn) as conn:
        assert conn.execute("SELECT to_regclass('lost_with_the_volume')").fetchone() == (None,)

    def backend_serves() -> bool:
        return requests.get(docker_stack.endpoints.frontend_url + "/api/inverters", timeout=5).status_code == 200
    deadline = time.monotonic() + 30
    while not backend_serves() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backend_serves()  # the backend re-created its schema on the new database


def test_orphans_of_a_dead_owner_are_removed(docker_stack, client):
    orphan = client.containers.run(
        docker_stack.service("redis").image, ["sleep", "300"], detach=True, network_mode="host",
        labels={LABEL: "true", STACK_LABEL: "orphan", OWNER_LABEL: "999999999:1"})  # no such pid
    volume = client.volumes.create("fulsk-chaos-orphan-test", labels={LABEL: "true", OWNER_LABEL: "999999999:1"})
    remove_orphans(client)  # (another worker's stack, starting, may sweep them first)

    def gone(get, name) -> bool:
        try:
            get(name)
        except NotFound:
            return True
        return False
    deadline = time.monotonic() + 30  # a removal another sweep began may still be under way
    while not (gone(client.containers.get, orphan.id) and gone(client.volumes.get, volume.name)) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(client.containers.get, orphan.id) and gone(client.volumes.get, volume.name)
    assert labelled(client, docker_stack.id)[0], "the live stack's own containers were kept"


def test_two_sweeps_of_the_same_orphans_side_by_side_both_succeed(docker_stack, client):
    """Every stack starting sweeps orphans: two at once must not fail on each other's removal."""
    orphans = [client.containers.run(
        docker_stack.service("redis").image, ["sleep", "300"], detach=True, network_mode="host",
        labels={LABEL: "true", STACK_LABEL: "orphan", OWNER_LABEL: "999999999:1"}) for _ in range(4)]
    with ThreadPoolExecutor(3) as pool:
        for sweep in [pool.submit(remove_orphans, client) for _ in range(3)]:
            sweep.result()  # a 409 "removal already in progress" would raise here
    deadline = time.monotonic() + 30
    while any(c.id in {x["Id"] for x in client.api.containers(all=True)} for c in orphans) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not {c.id for c in orphans} & {x["Id"] for x in client.api.containers(all=True)}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_test_run_stopped_mid_scenario_leaves_no_container_or_volume(docker_stack, client, tmp_path, sig):
    runner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "scenarios/test_db_loss.py", "-k", "kill", "-p", "no:cacheprovider",
         "--stack", "docker", "--report-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=as_in_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/stack.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        state = json.loads(next(tmp_path.glob("*/stack.json")).read_text())
        postgres = client.containers.get(state["services"]["postgres"]["container"])
        while postgres.status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)  # mid-scenario: the fault has been injected
            postgres.reload()
        assert postgres.status != "running", "the scenario never killed postgres"
        assert labelled(client, state["id"])[0]
    finally:
        os.kill(runner.pid, sig)
        runner.wait(timeout=60)
    deadline = time.monotonic() + 30
    directories = [Path(d) for d in (state["dir"], state.get("memory_dir")) if d]
    while (any(labelled(client, state["id"])) or any(d.exists() for d in directories)) and time.monotonic() < deadline:
        time.sleep(0.2)
    containers, volumes = labelled(client, state["id"])
    assert containers == [] and volumes == []
    assert not [d for d in directories if d.exists()]
    (scenario,) = json.loads(next(tmp_path.glob("*/results.json")).read_text())["scenarios"]
    assert scenario["verdict"] == "interrupted"


def test_offline_images_are_not_rebuilt_when_nothing_changed(docker_stack, client):
    from fulsk_chaos.images import build_images
    results = build_images(docker_stack.fixtures, log=lambda line: None, client=client)
    assert [r.image for r in results if r.built] == []
    assert {r.image for r in results} >= {s.image for s in docker_stack.services.values()}


def test_a_backend_image_named_in_the_configuration_runs_with_the_same_contract(docker_stack, client):
    from dataclasses import replace

    from fulsk_chaos.config import DockerSettings
    from fulsk_chaos.stack import Stack

    reference = client.images.get(docker_stack.service("backend").image)
    reference.tag("fulsk-chaos/your-production-backend", "test")  # stands in for the user's own image
    config = replace(docker_stack.settings, docker=DockerSettings(
        offline=True, images={"backend": "fulsk-chaos/your-production-backend:test"}))
    try:
        with Stack(config, "docker") as other:
            backend = other.service("backend")
            assert backend.describe()["image"] == "fulsk-chaos/your-production-backend:test"
            env = client.containers.get(backend.container_id).attrs["Config"]["Env"]
            names = {entry.split("=", 1)[0] for entry in env}
            assert {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "PORT"} <= names
            health = requests.get(other.endpoints.frontend_url + "/health", timeout=5).json()
            assert health["status"] == "ok"
    finally:
        client.images.remove("fulsk-chaos/your-production-backend:test")


def test_the_guides_compose_commands_act_on_the_stacks_own_containers_and_leave_nothing(chaos_settings, client):
    """Each container carries the Compose project's labels and configuration hash: `kill` then
    `up -d` (the guide's force restart) starts the stack's own container, never a replacement;
    what `up` creates for the project (its volumes) goes with the stack."""
    from fulsk_chaos.stack import Stack
    stack = Stack(chaos_settings, "docker")
    stack.start()
    try:
        compose = stack.compose
        env = {**os.environ, **compose.env}
        backend = stack.service("backend").container_id
        for verb in (["kill", "backend"], ["up", "-d", "backend"]):
            done = subprocess.run([*compose.argv, *verb], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        stack.wait_ready()
        assert stack.service("backend").container_id == backend and stack.service("backend").running
        listed = subprocess.run([*compose.argv, "ps"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert all(name in listed for name in ("postgres", "redis", "mqtt", "backend", "frontend"))
        project = {"label": f"com.docker.compose.project={compose.name}"}
        assert client.api.volumes(filters=project).get("Volumes")  # `up` made the project's volumes
    finally:
        stack.stop()
    assert not client.api.containers(all=True, filters=project)
    assert not client.api.volumes(filters=project).get("Volumes")


def test_no_pager_waits_in_a_container(docker_stack, client):
    """The guide's `docker-compose exec postgres psql -c ...` with more rows than an 80x24
    terminal holds returns: every container's environment sets PAGER=cat (before, psql's pager
    waited for a key until the runbook step timed out, whenever Compose sized the terminal late)."""
    from fulsk_chaos.runbooks import run_in_terminal
    from fulsk_chaos.stack.docker import NO_PAGER
    for name in docker_stack.services:
        env = dict(e.split("=", 1) for e in client.containers.get(
            docker_stack.service(name).container_id).attrs["Config"]["Env"])
        assert {k: env.get(k) for k in NO_PAGER} == NO_PAGER, name
    compose = docker_stack.compose
    command = " ".join([*compose.argv, "exec", "postgres", "psql", "-U", "fulsk_user", "-c",
                        "'SELECT generate_series(1, 300) AS n'"])
    done = run_in_terminal(command, {**os.environ, **compose.env, "TERM": "xterm"}, timeout_s=60, size=(24, 80))
    assert done.exit_code == 0, done.output[-500:]
    assert "(300 rows)" in done.output

"""The ``fulsk-chaos`` command: ``up`` gives engineers a stack their own tools work against, and
every error is one line that says what to do, never a traceback."""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from fulsk_chaos.host.procs import identity, listening_ports, service_processes, survivors
from fulsk_chaos.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fulsk_chaos.cli"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/bootstrap.sh` (it installs the clients too)")
    return path


def read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"`fulsk-chaos up` printed nothing within {timeout_s:g} s")
    return proc.stdout.readline()


@pytest.mark.provider
def test_up_serves_the_engineers_own_tools_and_ctrl_c_leaves_nothing(pytestconfig):
    provider = pytestconfig.getoption("--stack")
    up = subprocess.Popen([*CLI, "up", "--json", "--stack", provider], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = read_line(up, 180)
        assert line, up.stderr.read()
        where = json.loads(line)
        processes = {identity(p) for p in service_processes(up.pid) if p != up.pid} - {None}
        ports = {int(p["listen"].rsplit(":", 1)[1]) for p in where["toxiproxy"]["proxies"].values()}
        ports |= {int(p["upstream_address"].rsplit(":", 1)[1]) for p in where["toxiproxy"]["proxies"].values()}
        assert ports <= listening_ports()

        # users: the frontend and its /health, as the ops guide checks it
        assert requests.get(where["frontend"] + "/health", timeout=5).json()["status"] == "ok"
        # toxiproxy-cli sees every proxy and can add a toxic to one
        toxiproxy = where["toxiproxy"]["url"]
        listed = subprocess.run([tool("toxiproxy-cli"), "-h", toxiproxy, "list"], capture_output=True, text=True,
                                check=True).stdout
        assert all(name in listed for name in where["toxiproxy"]["proxies"])
        subprocess.run([tool("toxiproxy-cli"), "-h", toxiproxy, "toxic", "add", "-t", "latency", "-a",
                        "latency=20", "backend-postgres"], capture_output=True, check=True)
        toxics = requests.get(f"{toxiproxy}/proxies/backend-postgres/toxics", timeout=5).json()
        assert [t["type"] for t in toxics] == ["latency"]
        # psql on the database DSN, redis on its URL
        selected = subprocess.run([tool("psql"), where["database"], "-tAc", "SELECT 41 + 1"], capture_output=True,
                                  text=True, check=True)
        assert selected.stdout.strip() == "42"
        assert redis.Redis.from_url(where["redis"]).ping()
        # an inverter's reading published with mosquitto_pub is served through the frontend
        inverter = f"cli-{os.getpid()}"
        reading = {"inverter_id": inverter, "site_id": "s", "seq": 1, "ts": round(time.time(), 3),
                   "power_w": 1200.5, "energy_wh": 0.33}
        subprocess.run([tool("mosquitto_pub"), "-h", where["mqtt"]["host"], "-p", str(where["mqtt"]["port"]),
                        "-q", "1", "-t", where["mqtt"]["topic"].format(inverter_id=inverter),
                        "-m", json.dumps(reading)], check=True, timeout=10)

        def served() -> dict:
            response = requests.get(f"{where['frontend']}/api/inverters/{inverter}/latest", timeout=5)
            response.raise_for_status()
            return response.json()
        assert wait_until(served, 10, "the reading to be served")["power_w"] == 1200.5
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=120) == 0, up.stderr.read()
    deadline = time.monotonic() + 30
    while (survivors(processes) or ports & listening_ports() or Path(where["dir"]).exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert survivors(processes) == [] and not (ports & listening_ports())
    assert not Path(where["dir"]).exists()
    if provider == "docker":
        import docker
        client = docker.from_env()
        assert client.api.containers(all=True, filters={"label": f"org.fulsk-chaos.stack={where['id']}"}) == []


@pytest.mark.parametrize("args", [["images", "build", "--offline"], ["up", "--stack", "docker"]],
                         ids=["images", "up"])
def test_no_engine_is_one_line_that_says_what_to_do(args):
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("fulsk-chaos: error: no Docker engine answers") and "bootstrap.sh --docker" in line


def test_a_bad_configuration_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[docker.images]\nmysql = "mysql:8"\n')
    done = subprocess.run([*CLI, "up", "--chaos-config", str(bad)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "docker.images.mysql: not a service of the stack" in line


@pytest.mark.parametrize("argv, says", [
    (["scale", "backend"], "scale takes SERVICE COUNT"),
    (["restart", "backend", "2"], "scale takes SERVICE COUNT"),
])
def test_ctl_scale_needs_a_count_and_only_scale_takes_one(tmp_path, argv, says):
    done = subprocess.run([*CLI, "ctl", "--socket", str(tmp_path / "control.sock"), *argv],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and says in done.stderr, done.stderr

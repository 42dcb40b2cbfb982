"""Locust, headless, in processes of its own: one master and N workers on this machine.

Locust monkey-patches the standard library with gevent, so it never runs in the test process.
The master binds to loopback here; to spread the generator over several machines, start more
workers elsewhere with the same locustfile and profile (``locust -f loadtests/locustfile.py
--worker --master-host THIS_HOST``) and ask for them with ``external_workers`` and a
``master_host`` they can reach.

A run is bounded by Locust's own ``--run-time``; a watchdog (the stack's reaper) kills every
process of it if the test process dies first.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract import CONTRACT_ENV, Contract
from ..errors import FulskChaosError
from ..host.ports import free_ports
from ..host.procs import service_processes, signal_service
from ..lifecycle import StartStop
from ..stack.reaper import Reaper
from .profile import ENV, LoadProfile

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"


class LoadError(FulskChaosError, RuntimeError):
    """The load generator could not be started or did not run as asked."""


@dataclass(frozen=True)
class LoadTarget:
    """Where the load goes: users through the frontend, inverters through their broker edge."""
    frontend_url: str
    mqtt_host: str
    mqtt_port: int
    contract: Contract = field(default_factory=Contract)  # how the backend is published to and read

    @classmethod
    def of(cls, stack: Any) -> "LoadTarget":
        endpoints = stack.endpoints
        return cls(endpoints.frontend_url, endpoints.mqtt_host, endpoints.mqtt_port, stack.contract)


def _locust() -> str:
    found = shutil.which("locust", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not found:
        raise LoadError("the locust command is not installed in this environment: pip install -e . (it is a dependency)")
    return found


class LocustRun(StartStop):
    """One load run. ``start`` returns once every worker is connected; the load then runs for the
    profile's duration (or until ``stop``); its files are in ``out_dir``."""

    def __init__(self, profile: LoadProfile, target: LoadTarget, out_dir: Path, *, workers: int = 1,
                 external_workers: int = 0, master_host: str = "127.0.0.1", run_s: float | None = None,
                 locustfile: Path = LOCUSTFILE) -> None:
        if workers < 1 and external_workers < 1:
            raise LoadError("a load run needs at least one worker (--workers N)")
        self.profile = profile
        self.target = target
        self.out_dir = Path(out_dir)
        self.workers = workers
        self.external_workers = external_workers
        self.master_host = master_host
        self.locustfile = locustfile
        self.run_id = f"load-{secrets.token_hex(3)}"
        users = sum(profile.users.values())
        # The profile's run, after every user has started and warmed up; a bound, not a target, when
        # the caller stops it (chaos under load).
        self.run_s = run_s if run_s is not None else (users / profile.spawn_rate + profile.warmup_s + profile.run_s)
        self.master: subprocess.Popen | None = None
        self.worker_procs: list[subprocess.Popen] = []
        self._reaper: Reaper | None = None
        self.started_at: float | None = None   # time.time() the master started the test

    # --- commands ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return {**os.environ, ENV: self.profile.to_json(), "FULSK_LOAD_OUT": str(self.out_dir),
                "FULSK_LOAD_RUN": self.run_id, "FULSK_MQTT": f"{self.target.mqtt_host}:{self.target.mqtt_port}",
                CONTRACT_ENV: json.dumps(self.target.contract.to_json()),
                "PYTHONUNBUFFERED": "1"}

    def master_command(self, port: int) -> list[str]:
        users = self.profile.users
        return [_locust(), "-f", str(self.locustfile), "--headless", "--master",
                "--master-bind-host", self.master_host, "--master-bind-port", str(port),
                "--expect-workers", str(self.workers + self.external_workers), "--expect-workers-max-wait", "60",
                "-H", self.target.frontend_url, "-u", str(sum(users.values())),
                "-r", f"{self.profile.spawn_rate:g}", "-t", f"{math.ceil(self.run_s)}s",
                "--only-summary", "--loglevel", "WARNING", *users]

    def worker_command(self, port: int) -> list[str]:
        return [_locust(), "-f", str(self.locustfile), "--worker", "--master-host", self.master_host,
                "--master-port", str(port), "--loglevel", "WARNING"]

    # --- lifecycle ---------------------------------------------------------------------------
    def _spawn(self, command: list[str], log: str) -> subprocess.Popen:
        with open(self.out_dir / log, "ab") as out:
            proc = subprocess.Popen(command, env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.out_dir)
        assert self._reaper is not None
        self._reaper.watch(proc.pid)
        return proc

    def start(self, timeout_s: float = 60.0) -> "LocustRun":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._reaper = Reaper()
        (port,) = free_ports(1)
        self.master = self._spawn(self.master_command(port), "master.log")
        self.worker_procs = [self._spawn(self.worker_command(port), f"worker-{i}.log") for i in range(self.workers)]
        self.started_at = self._await_event("test_start", timeout_s, "start the test")
        return self

    def wait_spawned(self, timeout_s: float = 60.0) -> float:
        """Until every user has started; the time.time() they had."""
        return self._await_event("spawned", timeout_s, "start every user")

    def _await_event(self, name: str, timeout_s: float, what: str) -> float:
        """The time.time() of the master's event ``name``, once written; a dead process ends the wait."""
        deadline = time.monotonic() + timeout_s
        while (at := self.event_time(name)) is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise LoadError(f"Locust did not {what} within {timeout_s:.0f} s: {self.log_tail()}")
            time.sleep(0.1)
        return at

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the run ends by itself (its duration is over), then every process has exited."""
        assert self.master is not None
        try:
            self.master.wait(timeout=timeout_s if timeout_s is not None else self.run_s + 60)
        except subprocess.TimeoutExpired:
            raise LoadError(f"Locust ran past its own run time ({self.run_s:.0f} s) by over a minute") from None
        self.stop()

    @property
    def running(self) -> bool:
        return self.master is not None and self.master.poll() is None

    def _check_alive(self) -> None:
        if self.master is not None and self.master.poll() is not None:
            raise LoadError(f"the Locust master exited with {self.master.returncode}: {self.log_tail()}")
        dead = [p for p in self.worker_procs if p.poll() is not None]
        if dead:
            raise LoadError(f"a Locust worker exited with {dead[0].returncode}: {self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the test (the master tells its workers), wait for every process, kill what remains."""
        procs = [p for p in [self.master, *self.worker_procs] if p is not None]
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_service(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for proc in procs:  # a gevent child a worker left behind
            if service_processes(proc.pid):
                signal_service(proc.pid, signal.SIGKILL)
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

    # --- what it wrote -----------------------------------------------------------------------
    @property
    def pids(self) -> dict[str, int]:
        """The generator's processes by role, for sampling its own CPU."""
        named = {"master": self.master} if self.master else {}
        named.update({f"worker-{i}": p for i, p in enumerate(self.worker_procs)})
        return {name: p.pid for name, p in named.items()}

    def events(self) -> list[dict[str, Any]]:
        path = self.out_dir / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def event_time(self, name: str) -> float | None:
        return next((e["t"] for e in self.events() if e["event"] == name), None)

    def locust_stats(self) -> dict[str, Any]:
        path = self.out_dir / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def log_tail(self, lines: int = 15) -> str:
        text = []
        for log in sorted(self.out_dir.glob("*.log")):
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
            if tail:
                text.append(f"[{log.name}] " + " | ".join(tail))
        return " ".join(text)[-3000:] or "(no output)"

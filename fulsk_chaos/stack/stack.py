"""A Stack: the named services of the Fulsk stack, wired through Toxiproxy, with one lifecycle.

Two stacks share nothing: each has its own ports, directory, reaper and clients.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..toxiproxy import ToxiproxyClient
from .local import LocalService
from .ports import free_ports
from .reaper import Reaper
from .running import Service
from .service import Edge, ServiceContext, ServiceSpec, Topology, unprivileged_user
from .services import ALL
from .wait import StackError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# (proxy name, client, upstream service): one Toxiproxy proxy on every dependency edge.
EDGES = (
    ("backend-postgres", "backend", "postgres"),
    ("backend-redis", "backend", "redis"),
    ("backend-mqtt", "backend", "mqtt"),
    ("inverters-mqtt", "inverters", "mqtt"),
    ("frontend-backend", "frontend", "backend"),
)
PROVIDERS = ("local", "docker")


@dataclass(frozen=True)
class Endpoints:
    """Where a client of the stack connects: users through the frontend, inverters through their proxy."""
    frontend_url: str
    backend_url: str
    mqtt_host: str
    mqtt_port: int
    database_dsn: str  # direct, not through Toxiproxy: for checks that must see the truth
    metrics_url: str


class Stack:
    def __init__(self, config: Config | None = None, provider: str = "local", *,
                 fixtures: Path = FIXTURES, logs_to: Path | None = None) -> None:
        if provider not in PROVIDERS:
            raise StackError(f"unknown stack provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
        if not (fixtures / "backend").is_dir():
            raise StackError(f"fixtures not found at {fixtures}: run from a checkout of fulsk-chaos "
                             f"(installed with `pip install -e .`)")
        self.config = config or Config()
        self.provider = provider
        self.fixtures = fixtures
        self.logs_to = logs_to
        self.id = secrets.token_hex(4)
        self.services: dict[str, Service] = {}
        self.dir: Path | None = None
        self.toxiproxy: ToxiproxyClient | None = None
        self.timings: dict[str, float] = {}
        self._reaper: Reaper | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> float:
        """Start every service and wait until the whole stack is healthy; return the seconds taken
        (not counting the engine check and image builds a Docker stack does first)."""
        make = self._docker_services() if self.provider == "docker" else self._local_service
        t0 = time.monotonic()
        self._reaper = Reaper()
        self.dir = Path(tempfile.mkdtemp(prefix=f"fulsk-chaos-{self.id}-"))
        self._reaper.watch_path(self.dir)
        os.chmod(self.dir, 0o755)  # unprivileged servers (postgres, nginx workers) traverse it
        (self.dir / "logs").mkdir()
        names = [spec.name for spec in ALL]
        ports = free_ports(len(names) + len(EDGES))
        topology = Topology(
            ports=dict(zip(names, ports)),
            edges={name: Edge(name, client, upstream, port)
                   for (name, client, upstream), port in zip(EDGES, ports[len(names):])},
            db_password=secrets.token_urlsafe(12))
        for spec in ALL:
            workdir = self.dir / spec.name
            workdir.mkdir()
            self.services[spec.name] = make(spec, topology, workdir)
        self.topology = topology
        self.toxiproxy = ToxiproxyClient(topology.ports["toxiproxy"])
        # Independent servers start together; the backend needs them, and the frontend the backend.
        self._start_together(["toxiproxy", "postgres", "redis", "mqtt"])
        self._start_together(["backend"])
        self._start_together(["frontend"])
        self.timings["start_to_healthy_s"] = time.monotonic() - t0
        return self.timings["start_to_healthy_s"]

    def _local_service(self, spec: ServiceSpec, topology: Topology, workdir: Path) -> Service:
        ctx = ServiceContext(spec.name, topology, self.config, workdir, self.fixtures,
                             run_as=unprivileged_user(spec))
        assert self._reaper is not None
        return LocalService(spec, ctx, self._reaper, self.dir / "logs" / f"{spec.name}.log",
                            self.config.stack.start_timeout_s, self.config.stack.stop_grace_s)

    def _docker_services(self):
        from . import docker as provider  # the docker SDK only when Docker is asked for
        from ..images import image_for

        client = provider.engine()
        provider.remove_orphans(client)
        if self.config.docker.offline:  # incremental: only what is missing or outdated is built
            from ..images import build_images
            build_images(self.fixtures, log=lambda line: None, client=client)
        labels = {provider.LABEL: "true", provider.STACK_LABEL: self.id, provider.OWNER_LABEL: provider.owner_label()}

        def make(spec: ServiceSpec, topology: Topology, workdir: Path) -> Service:
            ctx = ServiceContext(spec.name, topology, self.config, workdir, self.fixtures, in_container=True)
            image = image_for(spec, self.config.docker.offline, self.config.docker.images)
            assert self._reaper is not None and self.dir is not None
            return provider.DockerService(
                spec, ctx, client, image, labels, self._reaper, self.dir / "logs" / f"{spec.name}.log",
                self.config.stack.start_timeout_s, self.config.stack.stop_grace_s, self.dir)
        return make

    def _start_together(self, names: list[str]) -> None:
        for name in names:
            self.services[name].start()
        with ThreadPoolExecutor(len(names)) as pool:
            for future in [pool.submit(self.services[n].wait_healthy) for n in names]:
                future.result()

    def stop(self) -> float:
        """Stop everything, leave nothing behind; return the seconds taken. Safe to call twice."""
        t0 = time.monotonic()
        errors = []
        for name in reversed(list(self.services)):
            try:
                self.services[name].stop()
                self.services[name].remove()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others; the reaper backs us up
                errors.append(f"{name}: {exc}")
        if self.toxiproxy:
            self.toxiproxy.close()
        if self.dir and self.logs_to:
            shutil.copytree(self.dir / "logs", self.logs_to, dirs_exist_ok=True)
        if self._reaper:
            self._reaper.close()  # removes the stack's directory and anything we failed to stop
            self._reaper = None
        self.services.clear()
        self.timings["teardown_s"] = time.monotonic() - t0
        if errors:
            raise StackError("teardown: " + "; ".join(errors))
        return self.timings["teardown_s"]

    # --- faults and healing ------------------------------------------------------------------
    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise StackError(f"no service {name!r} in the stack: {', '.join(self.services)}") from None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.service(name).kill(sig)

    def pause(self, name: str) -> None:
        self.service(name).pause()

    def resume(self, name: str) -> None:
        self.service(name).resume()

    def stop_service(self, name: str, grace_s: float | None = None) -> None:
        self.service(name).stop(grace_s)

    def start_service(self, name: str) -> float:
        service = self.service(name)
        service.start()
        return service.wait_healthy()

    def restart(self, name: str) -> float:
        return self.service(name).restart()

    def wait_healthy(self, name: str | None = None, timeout_s: float | None = None) -> float:
        names = [name] if name else list(self.services)
        start = time.monotonic()
        for n in names:
            self.service(n).wait_healthy(timeout_s)
        return time.monotonic() - start

    def heal(self) -> list[str]:
        """Return to a clean steady state: no toxics, nothing paused, everything running and healthy."""
        actions = []
        if self.toxiproxy and self.service("toxiproxy").running:
            self.toxiproxy.reset()
        for name, service in self.services.items():
            if service.paused:
                service.resume()
                actions.append(f"resumed {name}")
            if not service.running:
                service.stop()
                service.start()
                actions.append(f"restarted {name}")
        self.wait_healthy()
        return actions

    # --- where things are --------------------------------------------------------------------
    @property
    def endpoints(self) -> Endpoints:
        t = self.topology
        return Endpoints(
            frontend_url=f"http://127.0.0.1:{t.ports['frontend']}",
            backend_url=f"http://127.0.0.1:{t.ports['backend']}",
            mqtt_host="127.0.0.1", mqtt_port=t.edge_port("inverters-mqtt"),
            database_dsn=t.dsn(), metrics_url=f"http://127.0.0.1:{t.ports['backend']}/metrics")

    def describe(self) -> dict[str, Any]:
        """Everything needed to find what the stack runs, e.g. to prove that nothing outlived it."""
        return {
            "id": self.id, "provider": self.provider, "dir": str(self.dir),
            "reaper_pid": self._reaper.pid if self._reaper else None,
            "services": {n: s.describe() for n, s in self.services.items()},
            "proxies": {e.name: {"listen": e.listen, "client": e.client, "upstream": e.upstream}
                        for e in self.topology.edges.values()},
            "timings": self.timings,
        }

    def write_state(self, path: Path) -> None:
        path.write_text(json.dumps(self.describe(), indent=2))

"""A Stack: the catalogue's services, wired through the proxy on every edge, with one lifecycle.

Two stacks share nothing: each has its own ports, directory, reaper and clients.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..contract import load as load_contract
from ..errors import InstrumentError, StackError
from ..host.ports import free_ports
from ..host.procs import listening_ports, service_processes
from ..wait import wait_until
from ..lifecycle import StartStop
from ..services import CATALOGUE, FIXTURES, Catalogue, Edge, Topology
from ..services.alertmanager import RECEIVER
from ..services.toxiproxy import ToxiproxyClient
from .alerts import AlertReceiver
from .control import ControlServer
from .reaper import Reaper
from .running import Provider, Service
from .timings import Timings, timed

PROVIDERS = ("local", "docker")

log = logging.getLogger("fulsk_chaos.stack")


SHM = Path("/dev/shm")


def memory_root(stack_id: str, shm: Path = SHM) -> Path | None:
    """The stack's directory on a memory filesystem (ServiceContext.memory), when the host mounts
    one at ``shm``; None otherwise."""
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
    if not any(line.split()[1:3] == [str(shm), "tmpfs"] for line in mounts.splitlines() if len(line.split()) > 2):
        return None
    if not os.access(shm, os.W_OK):
        return None
    path = Path(tempfile.mkdtemp(prefix=f"fulsk-chaos-{stack_id}-", dir=shm))
    os.chmod(path, 0o755)  # unprivileged servers (the broker) traverse it
    return path


def _provider_class(name: str) -> type[Provider]:
    if name == "local":
        from .local import LocalProvider
        return LocalProvider
    if name == "docker":
        from .docker import DockerProvider  # the docker SDK only when Docker is asked for
        return DockerProvider
    raise StackError(f"unknown stack provider {name!r}: choose one of {', '.join(PROVIDERS)}")


@dataclass(frozen=True)
class Endpoints:
    """Where a client of the stack connects: users through the frontend, inverters through their
    proxy; the database and cache directly, for checks that must see the truth."""
    frontend_url: str
    backend_url: str
    mqtt_host: str
    mqtt_port: int
    database_dsn: str
    redis_url: str
    toxiproxy_url: str
    metrics_url: str   # empty: the backend's contract declares none
    proxies: dict[str, dict[str, Any]]
    live_feed_url: str  # the dashboard's WebSocket feed, through the frontend (the contract's path)


class Stack(StartStop):
    def __init__(self, settings: Settings | None = None, provider: str = "local", *,
                 fixtures: Path = FIXTURES, logs_to: Path | None = None, catalogue: Catalogue = CATALOGUE) -> None:
        self._provider_class = _provider_class(provider)
        if not (fixtures / "backend").is_dir():
            raise StackError(f"fixtures not found at {fixtures}: run from a checkout of fulsk-chaos "
                             f"(installed with `pip install -e .`)")
        self.settings = settings or Settings()
        self.contract = load_contract(self.settings.backend.contract or None)  # how the backend is spoken to
        # the standby, the monitoring: where switched on; the backend its contract runs
        catalogue = catalogue.for_settings(self.settings).for_contract(self.contract)
        catalogue.check_settings(self.settings)
        self.provider = provider
        self.fixtures = fixtures
        self.logs_to = logs_to
        self.catalogue = catalogue
        self.id = secrets.token_hex(4)
        self.services: dict[str, Service] = {}
        self.replicas: dict[str, list[Service]] = {}  # instances 2..n of a scaled service (local provider)
        self.dir: Path | None = None
        self.memory_dir: Path | None = None  # on a memory filesystem (ServiceContext.memory), where there is one
        self.toxiproxy: ToxiproxyClient | None = None
        self.timings = Timings()
        self._reaper: Reaper | None = None
        self._provider: Provider | None = None
        self._control: ControlServer | None = None
        self.database = "postgres"  # the primary: where the truth is (a failover promotes another)
        self.alerts: AlertReceiver | None = None  # Alertmanager's webhook, when the stack has monitoring

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> float:
        """Start every service and wait until the whole stack is healthy; return the seconds taken
        (not counting what the provider prepares first: an engine check, image builds). Where the
        time went is in ``timings``."""
        self.timings = Timings()
        step = self.timings.start
        with timed(step, "reaper"):
            self._reaper = Reaper()
            self.dir = Path(tempfile.mkdtemp(prefix=f"fulsk-chaos-{self.id}-"))
            self._reaper.watch_path(self.dir)
            os.chmod(self.dir, 0o755)  # unprivileged servers (postgres, nginx workers) traverse it
            (self.dir / "logs").mkdir()
            self.memory_dir = memory_root(self.id)
            if self.memory_dir is not None:
                self._reaper.watch_path(self.memory_dir)
        with timed(step, "provider"):
            self._provider = self._provider_class(self.settings, self._reaper, self.dir, self.id, self.fixtures,
                                                  memory_root=self.memory_dir)
            self._provider.prepare()
        t0 = time.monotonic()
        names, edges = self.catalogue.names, self.catalogue.edges
        host_ports = [p for s in self.catalogue.specs for p in s.host_ports]
        with timed(step, "ports"):
            ports = free_ports(len(names) + len(edges) + len(host_ports))
        self.topology = Topology(
            ports=dict(zip(names + host_ports, ports[:len(names)] + ports[len(names) + len(edges):])),
            edges={e.name: Edge(e.name, e.client, e.upstream, port) for e, port in zip(edges, ports[len(names):])},
            db_password=secrets.token_urlsafe(12))
        if RECEIVER in self.topology.ports:  # Alertmanager's webhook: the framework listens
            with timed(step, "alert_receiver"):
                self.alerts = AlertReceiver(self.topology.ports[RECEIVER]).start()
        with timed(step, "services"):  # on Docker, the Compose project's labels too
            for spec in self.catalogue.specs:
                workdir = self.dir / spec.name
                workdir.mkdir()
                self.services[spec.name] = self._provider.service(spec, self.topology, workdir)
            proxy = next((s.name for s in self.catalogue.specs if s.carries_edges), None)
            if proxy is not None:
                self.toxiproxy = self.services[proxy].client()
        for group in self.catalogue.start_groups:
            with timed(step, "group " + "+".join(group)):
                self._start_together(group)
        with timed(step, "ready"):
            self.wait_ready()
        self.timings.start_to_healthy_s = time.monotonic() - t0
        # what the ops guide's backup tools need to work on this stack from another process
        with timed(step, "control"):
            self._control = ControlServer(self, self.control_path).start()
        self.timings.services = {name: dict(service.phases) for name, service in self.services.items()}
        return self.timings.start_to_healthy_s

    def _start_together(self, names: tuple[str, ...]) -> None:
        """Start services that do not depend on each other, each waiting only for itself (a
        container's creation takes a few hundred ms; PostgreSQL's initdb more than a second)."""
        with ThreadPoolExecutor(len(names)) as pool:
            for future in [pool.submit(self.services[n].start_healthy) for n in names]:
                future.result()

    def stop(self) -> float:
        """Stop everything, leave nothing behind; return the seconds taken. Safe to call twice.

        Clients before their servers: the start groups in reverse, the services of a group
        together (each waits only for its own exit)."""
        t0 = time.monotonic()
        step = self.timings.teardown
        errors = []
        if self._control:
            with timed(step, "control"):
                self._control.close()
            self._control = None
        replicas = {f"{name} replica {n}": r for name, extra in self.replicas.items() for n, r in enumerate(extra, 2)}
        if replicas:
            with timed(step, "replicas"):
                errors += self._stop_together(replicas)
        self.replicas.clear()
        for group in reversed(self.catalogue.start_groups):
            services = {n: self.services[n] for n in group if n in self.services}
            if services:
                with timed(step, "group " + "+".join(services)):
                    errors += self._stop_together(services)
        if self.toxiproxy:
            self.toxiproxy.close()
        if self.alerts:
            self.alerts.close()
            self.alerts = None
        if self._provider:
            with timed(step, "provider"):
                self._provider.close()
            self._provider = None
        if self.dir and self.logs_to and (self.dir / "logs").is_dir():
            with timed(step, "logs"):
                shutil.copytree(self.dir / "logs", self.logs_to, dirs_exist_ok=True)
        if self._reaper:
            with timed(step, "reaper"):
                self._reaper.close()  # removes the stack's directory and anything we failed to stop
            self._reaper = None
        for name, service in self.services.items():
            self.timings.services.setdefault(name, {}).update(service.phases)
        self.services.clear()
        self.timings.teardown_s = time.monotonic() - t0
        if errors:
            raise StackError("teardown: " + "; ".join(errors))
        return self.timings.teardown_s

    @staticmethod
    def _stop_together(services: dict[str, Service]) -> list[str]:
        """Stop and remove these services in parallel; return what went wrong."""
        def stop(name: str, service: Service) -> str | None:
            try:
                with timed(service.phases, "stop"):
                    service.stop()
                with timed(service.phases, "remove"):
                    service.remove()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others; the reaper backs us up
                return f"{name}: {exc}"
            return None
        with ThreadPoolExecutor(len(services)) as pool:
            return [error for error in pool.map(stop, services, services.values()) if error]

    @property
    def compose(self) -> Any:
        """The Docker stack as a Compose project (a ComposeProject), for the ops guide's
        docker-compose commands; None on the local stack, or where Compose is not installed."""
        return getattr(self._provider, "compose", None)

    @property
    def control_path(self) -> Path:
        """The control socket: stop, start, restart, kill or wipe a service from another process."""
        assert self.dir is not None, "the stack is not started"
        return self.dir / "control.sock"

    def control_log(self) -> list[tuple[float, str, str]]:
        """What other processes had the stack do through its control socket: (monotonic, action, service)."""
        return list(self._control.log) if self._control else []

    def scale(self, name: str, count: int) -> list[Service]:
        """Run ``count`` instances of a service on its one port (SO_REUSEPORT: the kernel spreads
        new connections over them), as ``docker-compose up -d --scale NAME=COUNT`` does on the
        Docker stack; fewer stops the newest. Returns every instance, the first one included."""
        if count < 1:
            raise StackError(f"scale {name}: at least 1 instance, not {count}")
        first, extra = self.service(name), self.replicas.setdefault(name, [])
        if not first.spec.scalable:
            raise StackError(f"{name} cannot be scaled: its instances would not share one port or one state")
        assert self._provider is not None and self.dir is not None, "the stack is not started"
        while len(extra) > count - 1:
            extra.pop().stop()
        added = []
        while len(extra) < count - 1:
            n = len(extra) + 2
            workdir = self.dir / f"{name}-{n}"
            workdir.mkdir(exist_ok=True)
            replica = self._provider.service(first.spec, self.topology, workdir, replica=n)
            extra.append(replica)
            replica.start()
            added.append(replica)
        port = self.topology.ports[name]
        for replica in added:
            # the shared port answers from the first instance: healthy means this one listens too
            def listening(r: Service = replica) -> None:
                if port not in listening_ports(service_processes(r.pid or 0)):
                    raise RuntimeError(f"pid {r.pid} does not listen on {port} yet")
            wait_until(listening, self.settings.stack.start_timeout_s, f"{name} instance to listen on 127.0.0.1:{port}",
                       abort=replica.exit_reason)
            replica.wait_healthy()
        return [first, *extra]

    def instances(self, name: str) -> list[str]:
        """The state of every instance of a service (running, paused, exited), replicas included:
        the local stack's (see scale), or the Compose project's containers on Docker."""
        first = self.service(name)
        counted = getattr(self._provider, "instance_states", None)
        if counted is not None:
            return counted(name)
        return [first.state(), *(r.state() for r in self.replicas.get(name, []))]

    # --- services, and healing ---------------------------------------------------------------
    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise StackError(f"no service {name!r} in the stack: {', '.join(self.services)}") from None

    def client(self, name: str) -> Any:
        """A direct client of one server (psycopg, redis, paho, toxiproxy, http); the caller closes it."""
        return self.service(name).client()

    def wait_healthy(self, name: str | None = None, timeout_s: float | None = None) -> float:
        names = [name] if name else list(self.services)
        start = time.monotonic()
        for n in names:
            self.service(n).wait_healthy(timeout_s)
        return time.monotonic() - start

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Until every service is ready for users, dependencies included (see ServiceSpec.ready);
        the services are asked together."""
        def ready(service: Service) -> None:
            with timed(service.phases, "ready"):
                wait_until(lambda: service.spec.ready(service.ctx), timeout_s or self.settings.stack.start_timeout_s,
                           f"{service.name} to be ready", service.poll_s, abort=service.exit_reason)
        with ThreadPoolExecutor(max(1, len(self.services))) as pool:
            for future in [pool.submit(ready, service) for service in self.services.values()]:
                future.result()

    def heal(self) -> list[str]:
        """Return to a clean steady state: no toxics, nothing paused, everything running and healthy."""
        actions = []
        for name, service in self.services.items():
            if service.paused:
                service.resume()
                actions.append(f"resumed {name}")
            if not service.running:
                service.stop()
                service.start()
                actions.append(f"restarted {name}")
        if self.toxiproxy:
            try:
                self.toxiproxy.reset()  # every proxy enabled, every toxic gone
            except InstrumentError as exc:
                actions.append(self.restart_proxy(str(exc)))
        self.wait_healthy()
        for name, service in self.services.items():
            if service.spec.drift(service.ctx):  # a setting changed at runtime: start it as configured
                service.restart()
                actions.append(f"restarted {name} (settings had drifted)")
        # A service a fault left broken for good (it never reconnects, say) has failed its scenario
        # already; the next test needs it working, not another minute's wait: it is restarted.
        for name, service in self.services.items():
            try:
                wait_until(lambda: service.spec.ready(service.ctx), self.settings.recovery.target_s,
                           f"{name} to be ready", abort=service.exit_reason)
            except StackError as exc:
                log.warning("healing: %s; restarting it", exc)
                service.restart()
                actions.append(f"restarted {name} (not ready {self.settings.recovery.target_s:g} s after healing)")
        self.wait_ready()
        return actions

    def restart_proxy(self, why: str) -> str:
        """The proxy every edge goes through, restarted with its proxies and without toxics: the
        way out when it hangs (ProxyHung). Every edge's connections are cut once, as a network
        blip would; the clients reconnect."""
        name = next(s.name for s in self.catalogue.specs if s.carries_edges)
        log.warning("restarting %s: %s", name, why)
        self.services[name].restart()
        return f"restarted {name} (it hung: {why})"

    def leftovers(self) -> list[tuple[str, str]]:
        """What a fault could have left behind, as (subject, problem): a service not running or
        paused, a proxy disabled or carrying a toxic, a server setting changed at runtime. The
        subject is a service or an edge name. Empty: the stack is as it was started."""
        problems: list[tuple[str, str]] = []
        for name, service in self.services.items():
            state = service.state()
            if state != "running":
                problems.append((name, f"{name} is {state}"))
                continue
            try:
                problems += [(name, p) for p in service.spec.drift(service.ctx)]
            except Exception as exc:  # noqa: BLE001 - a server that cannot say is not known to be clean
                problems.append((name, f"{name}'s settings could not be read: {exc}"))
        if self.toxiproxy:
            for proxy, data in self.toxiproxy.proxies().items():
                if not data.get("enabled", True):
                    problems.append((proxy, f"proxy {proxy} is disabled"))
                problems += [(proxy, f"toxic {t['name']} ({t['type']}) left on {proxy}") for t in data.get("toxics") or []]
        return problems

    # --- where things are --------------------------------------------------------------------
    @property
    def endpoints(self) -> Endpoints:
        t = self.topology
        proxies = {e.name: {"listen": f"127.0.0.1:{e.listen}", "client": e.client, "upstream": e.upstream,
                            "upstream_address": f"127.0.0.1:{t.ports[e.upstream]}"} for e in t.edges.values()}
        inverters = next((e for e in t.edges.values() if e.client == "inverters"), None)
        return Endpoints(
            frontend_url=self.service("frontend").address,
            backend_url=self.service("backend").address,
            mqtt_host="127.0.0.1", mqtt_port=inverters.listen if inverters else t.ports["mqtt"],
            database_dsn=self.service(self.database).address,
            redis_url=self.service("redis").address,
            toxiproxy_url=self.toxiproxy.url if self.toxiproxy else "",
            metrics_url=(self.service("backend").address + self.contract.capabilities.metrics
                         if self.contract.capabilities.metrics else ""),
            proxies=proxies,
            live_feed_url=self.service("frontend").address.replace("http://", "ws://", 1) + self.contract.feed.path)

    def describe(self) -> dict[str, Any]:
        """Everything needed to find what the stack runs, e.g. to prove that nothing outlived it."""
        return {
            "id": self.id, "provider": self.provider, "dir": str(self.dir),
            "memory_dir": str(self.memory_dir) if self.memory_dir else None,
            "reaper_pid": self._reaper.pid if self._reaper else None,
            "services": {n: s.describe() for n, s in self.services.items()},
            "replicas": {n: [r.describe() for r in extra] for n, extra in self.replicas.items() if extra},
            "proxies": {e.name: {"listen": e.listen, "client": e.client, "upstream": e.upstream}
                        for e in self.topology.edges.values()},
            "timings": self.timings.as_dict(),
        }

    def write_state(self, path: Path) -> None:
        """Written whole or not at all: a reader that sees the file reads all of it."""
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.describe(), indent=2))
        os.replace(partial, path)

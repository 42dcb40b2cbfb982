"""What a service is, whatever runs it: how to prepare, start, check, reach and stop it.

A spec is provider-agnostic (the same command, environment, ports, data directory and health
check drive a local process or a container); a provider turns it into something running. A spec
also declares where it sits in the stack: the services it connects to (each such edge goes
through the proxy) and the outside clients that reach it.
"""
from __future__ import annotations


import os
import pwd
import shutil
import signal
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import Settings
from ..errors import StackError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

if TYPE_CHECKING:
    from ..contract import Contract


@dataclass(frozen=True)
class Edge:
    """A proxy on one dependency edge: ``client`` reaches ``upstream`` by connecting to ``listen``."""
    name: str
    client: str
    upstream: str
    listen: int


@dataclass(frozen=True)
class Topology:
    """Who listens where. Everything is on 127.0.0.1."""
    ports: dict[str, int]
    edges: dict[str, Edge]
    db_password: str

    def edge(self, client: str, upstream: str) -> Edge:
        try:
            return self.edges[f"{client}-{upstream}"]
        except KeyError:
            raise StackError(f"no edge {client}->{upstream}: declare {upstream!r} in {client}'s depends_on "
                             f"(or {client!r} in {upstream}'s external_clients)") from None


@dataclass
class ServiceContext:
    name: str
    topology: Topology
    settings: Settings
    workdir: Path
    fixtures: Path
    run_as: str | None = None  # a user to drop to when we are root and the server refuses root
    in_container: bool = False  # the same paths, bind-mounted; binaries found on the image's PATH
    memory_root: Path | None = None  # the stack's directory on a memory filesystem (Stack.start)

    @property
    def memory(self) -> Path:
        """Where state that must outlive the process (SIGKILL, the OOM killer) but not the host is
        kept: on a memory filesystem, so saving it after every change costs no disk flush. No fault
        here takes the host down, and a disk flush per change cost the broker 4 times its CPU under
        a flood. Without a memory filesystem, a directory beside the workdir."""
        path = self.memory_root / self.name if self.memory_root else self.workdir / "memory"
        path.mkdir(exist_ok=True)
        return path

    @cached_property
    def contract(self) -> "Contract":
        """The backend's contract (read once: a readiness check polls it)."""
        from ..contract import load
        return load(self.settings.backend.contract or None)

    @property
    def port(self) -> int:
        return self.topology.ports[self.name]

    def outside_port(self) -> int:
        """The port its clients from outside the stack (spec.external_clients) reach: their proxied
        edge's, where they have one, else its own."""
        edge = next((e for e in self.topology.edges.values()
                     if e.upstream == self.name and e.client not in self.topology.ports), None)
        return edge.listen if edge else self.port

    def upstream_port(self, upstream: str) -> int:
        """The port this service connects to for ``upstream``: its proxied edge, never the server itself."""
        return self.topology.edge(self.name, upstream).listen

    def exe(self, name: str, *candidates: str) -> str:
        """Where the binary ``name`` is: on the image's PATH in a container, found on this host otherwise."""
        return name if self.in_container else find_binary(name, *candidates)


class ServiceSpec:
    name: ClassVar[str]
    # Where it sits: the services it connects to (one proxied edge each) and clients from outside
    # the stack that reach it through a proxied edge of their own (e.g. the inverters).
    depends_on: ClassVar[tuple[str, ...]] = ()
    external_clients: ClassVar[tuple[str, ...]] = ()
    carries_edges: ClassVar[bool] = False  # the proxy every edge goes through: started first
    stop_signal: ClassVar[int] = signal.SIGTERM
    user_when_root: ClassVar[str | None] = None  # servers that refuse to run as root
    # Images: what production runs (for users with a registry), and what the offline build installs.
    registry_image: ClassVar[str]
    offline_image: ClassVar[str]
    packages: ClassVar[tuple[str, ...]] = ()  # Debian packages of the offline image
    # Instances can share its port and its state (Stack.scale): stateless servers that bind with
    # SO_REUSEPORT. Never a database or a broker.
    scalable: ClassVar[bool] = False
    # What the stack needs of it, so that adding a server is its module (and its compose service):
    # - profile: the [stack] switch that adds it (standby, monitoring); None: in every stack;
    # - instrument: part of the harness (the proxy, the monitoring), never a target of the search;
    # - serves: the protocols it answers, which fault kinds that need one target (FaultKind.needs);
    # - compose_service: its name in the guide's docker-compose.prod.yml (None: not in that file);
    # - commands: the programs it runs on the local stack, with the Debian package of each
    #   (scripts/bootstrap.sh installs them: python3 -S -m fulsk_chaos.services --commands).
    profile: ClassVar[str | None] = None
    instrument: ClassVar[bool] = False
    serves: ClassVar[tuple[str, ...]] = ()
    compose_service: ClassVar[str | None] = None
    commands: ClassVar[dict[str, str]] = {}
    # Ports its configuration points at the framework's own listeners (Alertmanager's webhook),
    # allocated with the stack's.
    host_ports: ClassVar[tuple[str, ...]] = ()

    def image_lines(self, fixtures: Path) -> list[str]:
        """Dockerfile lines after the packages are installed (ENV, COPY, CMD...)."""
        return []

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        """Files the Dockerfile COPYs: name in the build context -> source."""
        return {}

    def volume_path(self, ctx: ServiceContext) -> Path | None:
        """Where the service keeps data that a container provider puts in a volume of its own."""
        return None

    def prepare(self, ctx: ServiceContext) -> None:
        """Write configuration and initialise data; called before every start, so idempotent."""

    def argv(self, ctx: ServiceContext) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {}

    def check(self, ctx: ServiceContext) -> None:
        """Raise unless the service answers its own protocol correctly."""
        raise NotImplementedError

    def ready(self, ctx: ServiceContext) -> None:
        """Raise unless the service is ready for users, its dependencies included (a fresh stack
        waits for this). ``check`` is the service alone: what a rollback waits for, while another
        fault may still hold one of its dependencies."""
        self.check(ctx)

    def after_start(self, ctx: ServiceContext) -> None:
        """Runs once the check passes, on every start (e.g. re-create state kept only in memory)."""

    def drift(self, ctx: ServiceContext) -> list[str]:
        """Runtime settings that differ from what the service was started with (a fault that
        changes them at runtime must have put them back)."""
        return []

    def client(self, ctx: ServiceContext) -> Any:
        """A client of this server, connected directly (not through a proxy); the caller closes it."""
        raise NotImplementedError(f"{self.name} has no client factory")

    def address(self, ctx: ServiceContext) -> str:
        """Where to reach the server directly, as a URL its own tools take."""
        return f"127.0.0.1:{ctx.port}"

    def endpoints(self, ctx: ServiceContext) -> dict[str, Any]:
        """Where its users reach it, for ``fulsk-chaos up`` (psql, curl, mosquitto_pub, locust)."""
        return {"address": self.address(ctx)}


def find_binary(name: str, *candidates: str) -> str:
    for candidate in (shutil.which(name), *candidates):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise StackError(f"{name} not found on PATH nor in {', '.join(candidates) or 'the usual places'}: "
                     f"run `bash scripts/bootstrap.sh` (it installs the local stack's servers)")


def unprivileged_user(spec: ServiceSpec) -> str | None:
    """The user to run ``spec`` as: its own unprivileged user when we are root, else ourselves."""
    user = spec.user_when_root
    if user is None or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise StackError(f"{spec.name} refuses to run as root and there is no user {user!r}: "
                         f"reinstall its Debian package, or create the user") from None
    return user


def hand_over(path: Path, user: str | None, in_container: bool = False) -> None:
    """Give a service's directory to the unprivileged user it will run as.

    In a container that user's uid is the image's, not this host's: the directory is opened to all.
    """
    if in_container:
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666)
        return
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


class HttpClient:
    """requests, bound to one base URL: ``client.get("/health")``."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        import requests
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_s)
        return self._session.get(self.base_url + path, **kwargs)

    def close(self) -> None:
        self._session.close()

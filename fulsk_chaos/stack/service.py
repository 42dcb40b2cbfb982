"""What a service is, whatever runs it: how to prepare, start, check and stop it.

A spec is provider-agnostic (the same command, environment, ports, data directory and health
check drive a local process or a container); a provider turns it into something running.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..config import Config
from .wait import StackError

DB_USER = "fulsk_user"  # the ops guide's database user
DB_NAME = "fulsk"


@dataclass(frozen=True)
class Edge:
    """A Toxiproxy proxy on one dependency edge: clients of ``upstream`` connect to ``listen``."""
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

    def edge_port(self, name: str) -> int:
        return self.edges[name].listen

    def dsn(self, port: int | None = None, dbname: str = DB_NAME) -> str:
        return (f"postgresql://{DB_USER}:{self.db_password}@127.0.0.1:"
                f"{port or self.ports['postgres']}/{dbname}")


@dataclass
class ServiceContext:
    name: str
    topology: Topology
    config: Config
    workdir: Path
    fixtures: Path
    run_as: str | None = None  # a user to drop to when we are root and the server refuses root
    in_container: bool = False  # the same paths, bind-mounted; binaries found on the image's PATH

    @property
    def port(self) -> int:
        return self.topology.ports[self.name]

    def exe(self, name: str, *candidates: str) -> str:
        """Where the binary ``name`` is: on the image's PATH in a container, found on this host otherwise."""
        return name if self.in_container else find_binary(name, *candidates)


class ServiceSpec:
    name: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM
    user_when_root: ClassVar[str | None] = None  # servers that refuse to run as root
    # Images: what production runs (for users with a registry), and what the offline build installs.
    registry_image: ClassVar[str]
    offline_image: ClassVar[str]
    packages: ClassVar[tuple[str, ...]] = ()  # Debian packages of the offline image

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

    def after_start(self, ctx: ServiceContext) -> None:
        """Runs once the check passes, on every start (e.g. re-create state kept only in memory)."""


def find_binary(name: str, *candidates: str) -> str:
    for candidate in (shutil.which(name), *candidates):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise StackError(f"{name} not found on PATH nor in {', '.join(candidates) or 'the usual places'}: "
                     f"run `bash scripts/bootstrap.sh` (it installs the local stack's servers)")


def unprivileged_user(spec: "ServiceSpec") -> str | None:
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

"""What every provider's running service offers the stack and the faults."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ..config import Settings
from ..errors import StackError
from ..services import ServiceContext, ServiceSpec, Topology
from ..wait import wait_until
from .reaper import Reaper
from .timings import timed


class Service(ABC):
    """A service as a provider runs it: start, wait until healthy, signal, stop."""

    provider: ClassVar[str]
    # The provider-specific fault kinds (names in fulsk_chaos.faults' catalogue) it supports beyond
    # the portable ones, which need only the methods below.
    fault_kinds: ClassVar[frozenset[str]] = frozenset()
    # How often a wait polls its check: a start waits for its groups one after another, and each
    # wait ends up to one interval after the service is there.
    poll_s: ClassVar[float] = 0.05

    def __init__(self, spec: ServiceSpec, ctx: ServiceContext, log_path: Path, start_timeout_s: float,
                 stop_grace_s: float) -> None:
        self.spec = spec
        self.ctx = ctx
        self.name = spec.name
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.paused = False
        self.phases: dict[str, float] = {}  # seconds of its last prepare, spawn, healthy... (see Timings)

    @property
    @abstractmethod
    def pid(self) -> int | None:
        """The main process's pid on this host."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """Started and not exited (a paused service is running)."""

    @abstractmethod
    def state(self) -> str:
        """What the host says, not what we believe: running, paused, exited (or removed)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...

    @abstractmethod
    def log_tail(self, lines: int = 20) -> str: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def kill(self, sig: int) -> None: ...

    @abstractmethod
    def pause(self) -> None: ...

    @abstractmethod
    def resume(self) -> None: ...

    @abstractmethod
    def stop(self, grace_s: float | None = None) -> None: ...

    def remove(self) -> None:
        """Release what outlives a stop (a container, its volume); nothing for a local process."""

    def lose_volume(self) -> None:
        """Delete the service's data volume with it (providers with volumes only)."""
        raise StackError(f"{self.name} runs on the {self.provider} provider, which has no volumes to lose")

    def lose_data(self) -> None:
        """Stop the service at once and destroy its data (directory or volume): a lost disk. The
        next start begins from nothing, or from what a restore staged (see the spec's prepare)."""
        raise StackError(f"{self.name} keeps no data of its own to lose")

    def client(self) -> Any:
        """A client of the server, connected directly (see the spec's client factory)."""
        return self.spec.client(self.ctx)

    @property
    def address(self) -> str:
        return self.spec.address(self.ctx)

    def exit_reason(self) -> str | None:
        """Why the service is not running although it should be; None while it runs."""
        return None if self.running else f"exited; log:\n{self.log_tail()}"

    def wait_healthy(self, timeout_s: float | None = None) -> float:
        """Block until the service passes its own check; return how long that took."""
        start = time.monotonic()
        with timed(self.phases, "healthy"):
            wait_until(lambda: self.spec.check(self.ctx), timeout_s or self.start_timeout_s,
                       f"{self.name} on 127.0.0.1:{self.ctx.port}", self.poll_s, abort=self.exit_reason)
        with timed(self.phases, "after_start"):
            self.spec.after_start(self.ctx)
        return time.monotonic() - start

    def start_healthy(self) -> float:
        self.start()
        return self.wait_healthy()

    def restart(self) -> float:
        self.stop()
        return self.start_healthy()


class Provider(ABC):
    """Turns specs into running services: local processes, or containers."""

    name: ClassVar[str]

    def __init__(self, settings: Settings, reaper: Reaper, stack_dir: Path, stack_id: str, fixtures: Path,
                 memory_root: Path | None = None) -> None:
        self.settings = settings
        self.reaper = reaper
        self.stack_dir = stack_dir
        self.memory_root = memory_root  # ServiceContext.memory: each service's directory in it
        self.stack_id = stack_id
        self.fixtures = fixtures

    def prepare(self) -> None:
        """Anything needed before the first service is created (an engine, images)."""

    @abstractmethod
    def service(self, spec: ServiceSpec, topology: Topology, workdir: Path, replica: int = 1) -> Service:
        """Replica n > 1 is another instance of the same service, on the same port (see Stack.scale)."""

    def close(self) -> None:
        """Release the provider's own resources (after every service is stopped and removed)."""

"""The embedded provider: each service is a local process in a session of its own.

A signal goes to all of the service's processes, as ``docker kill``/``pause`` act on a whole
container: postgres' backends and nginx's workers go with their parent.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..errors import StackError
from ..host.procs import identity, service_processes, signal_service, state, survivors, wait_exited
from ..services import ServiceContext, ServiceSpec, Topology
from ..services.spec import unprivileged_user
from ..wait import wait_until
from .reaper import Reaper
from .running import Provider, Service
from .timings import timed


class LocalProvider(Provider):
    """The embedded default: every service a process on this host, as its own user where it must be."""

    name = "local"

    def service(self, spec: ServiceSpec, topology: Topology, workdir: Path, replica: int = 1) -> Service:
        ctx = ServiceContext(spec.name, topology, self.settings, workdir, self.fixtures,
                             run_as=unprivileged_user(spec), memory_root=self.memory_root)
        log = f"{spec.name}.log" if replica == 1 else f"{spec.name}-{replica}.log"
        return LocalService(spec, ctx, self.reaper, self.stack_dir / "logs" / log,
                            self.settings.stack.start_timeout_s, self.settings.stack.stop_grace_s)


class LocalService(Service):
    provider = "local"
    poll_s = 0.02  # a check is a connection attempt on the loopback, and the exit check a waitpid

    def __init__(self, spec: ServiceSpec, ctx: ServiceContext, reaper: Reaper, log_path: Path,
                 start_timeout_s: float, stop_grace_s: float) -> None:
        super().__init__(spec, ctx, log_path, start_timeout_s, stop_grace_s)
        self._reaper = reaper
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def state(self) -> str:
        if not self.running:
            return "exited"
        frozen = [p for p in service_processes(self._proc.pid) if state(p) in ("T", "t")]
        return "paused" if frozen else "running"

    def describe(self) -> dict:
        return {"provider": "local", "pid": self.pid, "port": self.ctx.port, "image": None,
                "command": self.spec.argv(self.ctx)[0], "running": self.running, "paused": self.paused,
                "user": self.ctx.run_as}

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        with timed(self.phases, "prepare"):
            self.spec.prepare(self.ctx)
        env = {**os.environ, **self.spec.env(self.ctx)}
        with timed(self.phases, "spawn"), open(self.log_path, "ab") as log:
            log.write(f"\n--- fulsk-chaos: starting {self.name} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.spec.argv(self.ctx), env=env, cwd=self.ctx.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=self.ctx.run_as)
        self._reaper.watch(self._proc.pid)
        self.paused = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """As ``docker kill -s``: SIGKILL takes every process at once; another signal goes to the main one."""
        if self._proc is None:
            raise StackError(f"{self.name} was never started")
        if sig == signal.SIGKILL:
            self._reap(self.stop_grace_s)  # signals every process, and waits for each it saw
        else:
            os.kill(self._proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP every process, and return once all of them are stopped (as ``docker pause``)."""
        # a zombie (Z) or a process gone (None) is exiting, not running: it cannot be stopped and need not be
        self._signal_until(signal.SIGSTOP, lambda st: st in ("T", "t", "Z", "X", None), "paused")
        self.paused = True

    def resume(self) -> None:
        """SIGCONT every process, and return once none of them is stopped (as ``docker unpause``)."""
        self._signal_until(signal.SIGCONT, lambda st: st not in ("T", "t"), "resumed")
        self.paused = False

    def lose_data(self) -> None:
        data = self.spec.volume_path(self.ctx)
        if data is None:
            super().lose_data()
        if self.running:
            self.kill(signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)

    def _signal_until(self, sig: int, reached: Callable[[str | None], bool], what: str) -> None:
        """Signals are delivered asynchronously: re-send until every process shows the result."""
        if self._proc is None:
            raise StackError(f"{self.name} was never started")
        pid = self._proc.pid

        def all_reached() -> None:
            signal_service(pid, sig)  # again: a child may have been forked after the last one
            behind = [p for p in service_processes(pid) if not reached(state(p))]
            if behind:
                raise RuntimeError(f"pids {behind} not {what} yet")

        wait_until(all_reached, self.stop_grace_s, f"{self.name} to be {what}")

    def stop(self, grace_s: float | None = None) -> None:
        """The service's own stop signal, then SIGKILL after the grace period (as ``docker stop``)."""
        if self._proc is None:
            return
        if self.paused:
            self.resume()
        if self.running:
            try:
                os.kill(self._proc.pid, self.spec.stop_signal)
            except ProcessLookupError:
                pass
            try:
                wait_exited(self._proc, self.stop_grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._reap(self.stop_grace_s)

    def _reap(self, timeout_s: float) -> None:
        """Kill whatever is left of the service and wait until none of its processes runs.

        Every process ever seen is waited for, by identity: a postgres backend (in a session of
        its own) is re-parented once the postmaster dies, and would no longer be found from it
        while it is still exiting.
        """
        assert self._proc is not None
        pid = self._proc.pid
        seen: set[tuple[int, int]] = set()

        def all_gone() -> None:
            seen.update(i for i in map(identity, signal_service(pid, signal.SIGKILL)) if i is not None)
            if left := survivors(seen):
                for straggler in left:
                    try:
                        os.kill(straggler, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                raise RuntimeError(f"pids {left} still running")

        wait_until(all_gone, timeout_s, f"{self.name}'s processes to exit")
        wait_exited(self._proc, timeout_s)
        self._reaper.forget(pid)
        self.paused = False

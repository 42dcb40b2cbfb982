"""Process and container faults: a service killed, stopped, frozen, restarted, or its data lost.

Each rollback returns only once the service passes its own health check again: a fault's end
is when the dependency is back, and recovery is measured from there.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ..verdict import Expectation
from .canary import canary_for
from .catalogue import Family, Rollback
from .conditions import Watch, condition, reached
from .measure import process_identity, refuses

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("process")
PROVIDER = "the provider (the kernel's process table, or the Docker engine)"


# --- conditions --------------------------------------------------------------------------------
@condition("the service is gone: it runs no process (its container exited) and the kernel refuses "
           "connections to its port", f"{PROVIDER} and the kernel (a connection refused)")
class Gone(Watch):
    def check(self, handle: Any) -> Expectation:
        service = self.stack.service(self.target)
        state = service.state()
        signs = [f"it is {state}"] if state not in ("running", "paused") else []
        shared = bool(self.stack.replicas.get(self.target))  # other instances serve its port: not required
        if not shared and refuses(service.ctx.port):
            signs.append(f"port {service.ctx.port} refuses connections")
        return reached(f"signs that {self.target} is gone", len(signs), ">=", 1 if shared else 2,
                       detail="; ".join(signs) or f"it is {state}, its port accepts connections")


@condition("the service is frozen: its processes are stopped (its container paused) and a request in "
           "its own protocol gets no answer for a second", f"{PROVIDER} and a canary to its port")
class Frozen(Watch):
    interval_s = 0.1

    def check(self, handle: Any) -> Expectation:
        service = self.stack.service(self.target)
        state = service.state()
        signs = [f"it is {state}"] if state == "paused" else []
        if signs:
            canary = canary_for(self.stack, service=self.target)
            if canary is not None:
                seen = canary.ping(timeout_s=1.0)
                if seen.silent_ms is not None:
                    signs.append(f"a request to port {service.ctx.port} got {seen.describe()}")
            else:
                try:
                    service.spec.check(service.ctx)
                except Exception as exc:  # noqa: BLE001 - its own check went unanswered: frozen
                    signs.append(f"its own health check failed: {exc}")
        return reached(f"signs that {self.target} is frozen", len(signs), ">=", 2,
                       detail="; ".join(signs) or f"it is {state}")


@condition("the service was restarted: its main process was replaced by a new one (a new pid or start time)",
           f"{PROVIDER}: /proc/PID/stat's start time of its main process")
class Replaced(Watch):
    interval_s = 0.05

    def baseline(self) -> None:
        self.before = process_identity(self.stack.service(self.target))  # None: it was down already
        self.down_seen = False

    def check(self, handle: Any) -> Expectation:
        service = self.stack.service(self.target)
        if not self.down_seen and refuses(service.ctx.port, 0.2):
            self.down_seen = True
        now = process_identity(service)
        replaced = now is not None and now != self.before
        return reached(f"{self.target}'s main process replaced", int(replaced), ">=", 1,
                       detail=f"(pid, start) {self.before} before, {now} now; its port was "
                              f"{'seen refusing connections' if self.down_seen else 'never seen refusing'} in between")


@condition("the service's data volume is gone: the engine has no such volume, and no container of the service",
           "the Docker engine")
class VolumeGone(Watch):
    def check(self, handle: Any) -> Expectation:
        from docker.errors import NotFound
        service = self.stack.service(self.target)
        volume, engine = getattr(service, "volume", None), getattr(service, "engine", None)
        signs = [f"its container is {service.state()}"] if service.state() == "removed" else []
        if volume and engine is not None:
            try:
                engine.volumes.get(volume)
            except NotFound:
                signs.append(f"volume {volume} does not exist")
        return reached(f"signs that {self.target}'s data volume is lost", len(signs), ">=", 2,
                       detail="; ".join(signs) or "its container and volume are still there")




@family.kind("kill", acts_on=("running", "paused"), condition=Gone)  # a hung process killed
def kill(stack: "Stack", target: str, sig: int = signal.SIGKILL) -> Rollback:
    """Signal every process of the service (SIGKILL: it is gone at once); rollback: start it again."""
    service = stack.service(target)
    service.kill(sig)

    def rollback() -> None:
        if sig == signal.SIGKILL and service.running:  # someone (a runbook, an operator) started it again
            service.wait_healthy()
            return
        service.stop()  # whatever the signal left running
        service.start_healthy()
    return rollback


@family.kind("stop", acts_on=("running", "paused"), condition=Gone)
def stop(stack: "Stack", target: str, grace_s: float | None = None) -> Rollback:
    """Stop the service gracefully (its own stop signal, SIGKILL after the grace); rollback: start it."""
    service = stack.service(target)
    service.stop(grace_s)

    def rollback() -> None:
        if service.running:  # someone (a runbook, an operator) started it again
            service.wait_healthy()
        else:
            service.start_healthy()
    return rollback


@family.kind("pause", condition=Frozen)
def pause(stack: "Stack", target: str) -> Rollback:
    """Freeze the service (SIGSTOP, or the cgroup freezer): it holds its connections and answers
    nothing; rollback: thaw it."""
    service = stack.service(target)
    service.pause()

    def rollback() -> None:
        service.resume()
        service.wait_healthy()
    return rollback


@family.kind("restart", acts_on=None, condition=Replaced)  # an operator restarts what is down, too
def restart(stack: "Stack", target: str) -> Rollback:
    """Restart the service as an operator would (stop, start, healthy); rollback: make sure it is healthy."""
    service = stack.service(target)
    service.restart()
    return service.wait_healthy


@family.kind("volume-loss", portable=False, acts_on=None, condition=VolumeGone, destroys_data=True)
def volume_loss(stack: "Stack", target: str) -> Rollback:
    """Remove the container and delete its data volume: the data is gone, as with a lost disk.

    The rollback starts it on a new, empty volume: what recovery has to work from is what
    disaster recovery restores, not what was on the disk.
    """
    service = stack.service(target)
    service.lose_volume()
    return service.start_healthy

"""Process and container faults: a service killed, stopped, frozen, restarted, or its data lost.

Each rollback returns only once the service passes its own health check again: a fault's end
is when the dependency is back, and recovery is measured from there.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from .catalogue import Family, Rollback

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("process")


@family.kind("kill", acts_on=("running", "paused"))  # a hung process killed
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


@family.kind("stop", acts_on=("running", "paused"))
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


@family.kind("pause")
def pause(stack: "Stack", target: str) -> Rollback:
    """Freeze the service (SIGSTOP, or the cgroup freezer): it holds its connections and answers
    nothing; rollback: thaw it."""
    service = stack.service(target)
    service.pause()

    def rollback() -> None:
        service.resume()
        service.wait_healthy()
    return rollback


@family.kind("restart", acts_on=None)  # an operator restarts what is down, too
def restart(stack: "Stack", target: str) -> Rollback:
    """Restart the service as an operator would (stop, start, healthy); rollback: make sure it is healthy."""
    service = stack.service(target)
    service.restart()
    return service.wait_healthy


@family.kind("volume-loss", portable=False, acts_on=None)
def volume_loss(stack: "Stack", target: str) -> Rollback:
    """Remove the container and delete its data volume: the data is gone, as with a lost disk.

    The rollback starts it on a new, empty volume: what recovery has to work from is what
    disaster recovery restores, not what was on the disk.
    """
    service = stack.service(target)
    service.lose_volume()
    return service.start_healthy

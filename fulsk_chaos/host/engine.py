"""The Docker engine: how to reach it, and the labels by which fulsk-chaos finds what it created.

Both the Docker provider and the reaper (which may outlive the test process) use these, so they
live below both. The docker SDK is imported only here and only when a Docker stack is asked for.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..errors import StackError
from .procs import identity

if TYPE_CHECKING:
    import docker

LABEL = "org.fulsk-chaos"
STACK_LABEL = "org.fulsk-chaos.stack"
OWNER_LABEL = "org.fulsk-chaos.owner"  # "pid:starttime" of the process that created it


def engine() -> "docker.DockerClient":
    """A client of a Docker engine that answers, or a StackError saying how to get one."""
    import docker
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - whatever the cause, the remedy is the same
        raise StackError(f"no Docker engine answers ({exc}): run `bash scripts/bootstrap.sh --docker`, "
                         f"which installs docker.io and starts dockerd") from None


def owner_label() -> str:
    me = identity(os.getpid())
    assert me is not None
    return f"{me[0]}:{me[1]}"


def stack_labels(stack_id: str) -> dict[str, str]:
    return {LABEL: "true", STACK_LABEL: stack_id, OWNER_LABEL: owner_label()}


def remove_volume(client: "docker.DockerClient", name: str) -> bool:
    """Delete a volume, waiting briefly for a container being removed to let go of it; whether it is gone."""
    from docker.errors import APIError, NotFound
    for _ in range(50):
        try:
            client.volumes.get(name).remove(force=True)
            return True
        except NotFound:
            return True
        except APIError:
            time.sleep(0.1)
    return False


def remove_container(client: "docker.DockerClient", container_id: str) -> bool:
    """Force-remove a container and its anonymous volumes; False when it was gone already or
    another caller is removing it (Docker answers 409 to the second of two removals)."""
    from docker.errors import APIError, NotFound
    try:
        client.api.remove_container(container_id, force=True, v=True)
        return True
    except NotFound:
        return False
    except APIError as exc:
        if exc.status_code == 409 and "already in progress" in str(exc):
            return False
        raise


def _owner_gone(container_labels: dict[str, str]) -> bool:
    try:
        pid, start = (int(x) for x in container_labels.get(OWNER_LABEL, "").split(":"))
    except ValueError:
        return True  # ours (labelled so) but no readable owner: nobody will clean it up
    return identity(pid) != (pid, start)


def remove_orphans(client: "docker.DockerClient") -> list[str]:
    """Remove the containers and volumes fulsk-chaos created for a process that is gone.

    Listed without inspecting each one (another stack may be removing its own meanwhile), and
    every stack starting beside this one sweeps the same orphans: one that another sweep is
    already removing (Docker answers 409) or has removed is left to it.
    """
    from docker.errors import APIError
    removed = []
    for container in client.api.containers(all=True, filters={"label": f"{LABEL}=true"}):
        if _owner_gone(container.get("Labels") or {}):
            if remove_container(client, container["Id"]):
                removed.append(container["Names"][0].lstrip("/"))
    for volume in client.api.volumes(filters={"label": f"{LABEL}=true"}).get("Volumes") or []:
        if _owner_gone(volume.get("Labels") or {}):
            try:
                client.api.remove_volume(volume["Name"], force=True)
                removed.append(volume["Name"])
            except APIError:
                pass  # gone already, or still held by a container being removed: the next sweep takes it
    return removed

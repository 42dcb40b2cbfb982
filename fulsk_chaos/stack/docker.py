"""The Docker provider: each service is a testcontainers ``DockerContainer`` on the host network.

Same contract as the local provider: every container listens on its allocated 127.0.0.1 port
(host networking: no bridge address is ever used), the stack's directory is bind-mounted at the
same path so configuration paths are identical, and PostgreSQL's data lives in a named volume
that a fault can delete. The stack's memory directory (ServiceContext.memory) is bind-mounted too:
a tmpfs of the container's own would not outlive a kill. Every container and volume carries the stack's labels, so leftovers of
a run that died are found and removed (Ryuk needs an image that cannot be pulled here).
"""
from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
from docker.errors import NotFound
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from ..errors import StackError
from ..host.engine import (OWNER_LABEL, STACK_LABEL, engine, remove_container, remove_orphans, remove_volume,
                           stack_labels)
from ..contract import load as load_contract
from ..services import CATALOGUE, ServiceContext, ServiceSpec, Topology
from .compose import SERVICES as COMPOSE_SERVICES, ComposeProject
from ..wait import wait_until
from .reaper import Reaper
from .running import Provider, Service
from .timings import timed


# In every container's environment, as in fixtures/docker-compose.prod.yml: `docker exec` inherits
# it, so no pager waits for a key in a runbook's `docker-compose exec postgres psql ...` (Compose sets
# the terminal's size only after the command started: psql saw 80 columns and paged).
NO_PAGER = {"PAGER": "cat", "PSQL_PAGER": "cat", "MANPAGER": "cat", "SYSTEMD_PAGER": "", "LESS": "-FRX"}


class DockerProvider(Provider):
    """Every service a testcontainers container on the host network, from the configured images."""

    name = "docker"

    def prepare(self) -> None:
        from ..images import build_images
        self.contract = load_contract(self.settings.backend.contract or None)
        testcontainers_config.ryuk_disabled = True  # its image cannot be pulled here; we reap ourselves
        self.engine = engine()
        remove_orphans(self.engine)
        if self.settings.docker.offline:  # incremental: only what is missing or outdated is built
            build_images(self.fixtures, log=lambda line: None, client=self.engine,
                         catalogue=CATALOGUE.for_contract(self.contract))
        self.labels = stack_labels(self.stack_id)
        self.compose: ComposeProject | None = None
        self._compose_labels: dict[str, dict[str, str]] = {}

    def _image(self, spec: ServiceSpec) -> str:
        from ..images import image_for
        return image_for(spec, self.settings.docker.offline, self.settings.docker.images)

    def _compose(self, topology: Topology) -> None:
        """Label the containers as the Compose project of fixtures/docker-compose.prod.yml would
        (see .compose): the ops guide's docker-compose commands then act on this stack."""
        # every one the file names; the backend as its contract runs it (the Node.js one's image, say)
        backend = CATALOGUE.for_contract(self.contract).get("backend")
        images = {spec.name: self._image(backend if spec.name == "backend" else spec) for spec in COMPOSE_SERVICES.values()}
        try:
            project = ComposeProject.for_stack(self.stack_id, topology.ports, topology.db_password, images,
                                               self.labels[OWNER_LABEL])
            with ThreadPoolExecutor(2) as pool:  # docker-compose takes a second or more to say anything
                asked = pool.submit(project.hashes), pool.submit(project.version)
                hashes, version = (answer.result() for answer in asked)
        except StackError:
            return  # no Compose here: the stack runs, the guide's commands will say why they cannot
        self.compose = project
        self._compose_labels = {name: project.labels(name, hashes[name], version) for name in hashes}

    def service(self, spec: ServiceSpec, topology: Topology, workdir: Path, replica: int = 1) -> Service:
        if replica != 1:
            raise StackError(f"on Docker, replicas of {spec.name} are Compose's: "
                             f"`docker-compose -f docker-compose.prod.yml up -d --scale {spec.name}=N`")
        if self.compose is None and not self._compose_labels:
            self._compose(topology)
        ctx = ServiceContext(spec.name, topology, self.settings, workdir, self.fixtures, in_container=True,
                             memory_root=self.memory_root)
        labels = {**self.labels, **self._compose_labels.get(spec.compose_service or "", {})}
        return DockerService(spec, ctx, self.engine, self._image(spec), labels, self.reaper,
                             self.stack_dir / "logs" / f"{spec.name}.log", self.settings.stack.start_timeout_s,
                             self.settings.stack.stop_grace_s, self.stack_dir)

    def instance_states(self, name: str) -> list[str]:
        """Every container of the service in the stack's Compose project (``--scale`` adds some)."""
        if self.compose is None:
            raise StackError("this Docker stack is not a Compose project (is docker-compose installed?)")
        filters = {"label": [f"com.docker.compose.project={self.compose.name}", f"com.docker.compose.service={name}"]}
        return [c["State"] for c in self.engine.api.containers(all=True, filters=filters)]

    def close(self) -> None:
        client = getattr(self, "engine", None)
        if client is None:
            return
        if self.compose is not None:  # what Compose itself created for the project (`up` makes its volumes)
            project = {"label": f"com.docker.compose.project={self.compose.name}"}
            for container in client.api.containers(all=True, filters=project):
                if container.get("Labels", {}).get(STACK_LABEL) != self.stack_id:
                    remove_container(client, container["Id"])
            for volume in client.api.volumes(filters=project).get("Volumes") or []:
                remove_volume(client, volume["Name"])
        client.close()


class DockerService(Service):
    provider = "docker"
    fault_kinds = frozenset({"volume-loss"})  # a container's data lives in a volume it can lose

    def __init__(self, spec: ServiceSpec, ctx: ServiceContext, client: docker.DockerClient, image: str,
                 labels: dict[str, str], reaper: Reaper, log_path: Path, start_timeout_s: float,
                 stop_grace_s: float, stack_dir: Path) -> None:
        super().__init__(spec, ctx, log_path, start_timeout_s, stop_grace_s)
        self.engine = client
        self.image = image
        self.labels = labels
        self._reaper = reaper
        self._stack_dir = stack_dir
        self._container: DockerContainer | None = None
        volume_path = spec.volume_path(ctx)
        self.volume = f"fulsk-chaos-{labels[STACK_LABEL]}-{spec.name}" if volume_path else None
        self._volume_path = volume_path

    # --- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if self._container is None:
            return {}
        try:
            wrapped = self._container.get_wrapped_container()
            wrapped.reload()
            return wrapped.attrs["State"]
        except NotFound:
            return {}

    @property
    def pid(self) -> int | None:
        return self._state().get("Pid") or None

    @property
    def running(self) -> bool:
        return self._state().get("Status") in ("running", "paused")

    @property
    def container_id(self) -> str | None:
        return self._container.get_wrapped_container().id if self._container else None

    def state(self) -> str:
        return self._state().get("Status") or "removed"  # running, paused, exited, dead, created

    def describe(self) -> dict[str, Any]:
        image = self.engine.images.get(self.image)
        return {"provider": "docker", "pid": self.pid, "port": self.ctx.port, "image": self.image,
                "image_id": image.id, "container": self.container_id, "volume": self.volume,
                "running": self.running, "paused": self.paused}

    def log_tail(self, lines: int = 20) -> str:
        if self._container is None:
            return "(no container)"
        try:
            return self._container.get_wrapped_container().logs(tail=lines).decode(errors="replace")
        except NotFound:
            return "(container removed)"

    def exit_reason(self) -> str | None:
        state = self._state()
        if state.get("Status") in ("exited", "dead"):
            return f"container exited with {state.get('ExitCode')}; log:\n{self.log_tail()}"
        return None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the container again if it exists (as ``docker start``), else create it."""
        with timed(self.phases, "prepare"):
            self.spec.prepare(self.ctx)
        with timed(self.phases, "spawn"):
            self._spawn()
        self.paused = False

    def _spawn(self) -> None:
        if self._container is not None and self._state():
            self._container.get_wrapped_container().start()
            return
        if self.volume:
            self.engine.volumes.create(self.volume, labels={k: v for k, v in self.labels.items()
                                                            if not k.startswith("com.docker.compose.")})
            self._reaper.watch_volume(self.volume)
        command = self.spec.argv(self.ctx) or None
        container = DockerContainer(
            self.image, command=command, env={**NO_PAGER, **self.spec.env(self.ctx)},
            name=f"fulsk-chaos-{self.labels[STACK_LABEL]}-{self.spec.name}", network_mode="host",
            labels=self.labels, stop_signal=signal.Signals(self.spec.stop_signal).name)
        container.with_volume_mapping(str(self._stack_dir), str(self._stack_dir), "rw")
        if self.ctx.memory_root is not None:  # the host's, so that it outlives the container as the process
            container.with_volume_mapping(str(self.ctx.memory_root), str(self.ctx.memory_root), "rw")
        if self.volume:
            container.with_volume_mapping(self.volume, str(self._volume_path), "rw")
        container.start()
        self._container = container
        self._reaper.watch_container(container.get_wrapped_container().id)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """``docker kill -s``; for SIGKILL, wait until the container has exited."""
        if self._container is None:
            raise StackError(f"{self.name} was never started")
        self._container.get_wrapped_container().kill(signal=signal.Signals(sig).name)
        if sig == signal.SIGKILL:
            wait_until(self._must_be_exited, self.stop_grace_s, f"{self.name} to exit")
        self.paused = False

    def _must_be_exited(self) -> None:
        if self.running:
            raise RuntimeError("still running")

    def pause(self) -> None:
        self._container.get_wrapped_container().pause()
        self.paused = True

    def resume(self) -> None:
        """``docker unpause``; a no-op for a container that is no longer paused (another fault
        restarted it meanwhile: overlapping faults in a schedule do that)."""
        if self.state() == "paused":
            self._container.get_wrapped_container().unpause()
        self.paused = False

    def stop(self, grace_s: float | None = None) -> None:
        """``docker stop``: the image's stop signal, SIGKILL after the grace period."""
        if self._container is None or not self._state():
            return
        wrapped = self._container.get_wrapped_container()
        if self.paused:
            wrapped.unpause()
            self.paused = False
        if self.running:
            wrapped.stop(timeout=int(self.stop_grace_s if grace_s is None else grace_s))

    def lose_volume(self) -> None:
        """Remove the container and delete its data volume: the data is gone, as on a lost disk."""
        if self.volume is None:
            raise StackError(f"{self.name} has no data volume to lose")
        self.remove()

    def lose_data(self) -> None:
        if self.volume is None:
            super().lose_data()
        self.lose_volume()

    def remove(self) -> None:
        """Remove the container and its volume, keeping its log."""
        if self._container is not None:
            wrapped = self._container.get_wrapped_container()
            try:
                with open(self.log_path, "ab") as log:
                    log.write(wrapped.logs())
                wrapped.remove(force=True, v=True)
            except NotFound:
                pass
            self._reaper.forget_container(wrapped.id)
            self._container = None
        if self.volume and remove_volume(self.engine, self.volume):
            self._reaper.forget_volume(self.volume)
        self.paused = False

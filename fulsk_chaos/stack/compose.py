"""The Docker stack as a Compose project, so that the ops guide's ``docker-compose -f
docker-compose.prod.yml …`` commands act on it.

Compose finds a service's containers by their labels (project, service, number) and decides
whether to recreate one by its configuration hash. The stack's containers carry those labels,
with the hash Compose computes for ``fixtures/docker-compose.prod.yml`` given the stack's ports,
password and images: ``restart``, ``kill``, ``up -d``, ``exec``, ``logs`` and ``ps`` then act on
the stack's own containers (``up -d`` starts the existing one, never a replacement).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StackError
from ..services import CATALOGUE, FIXTURES, ServiceSpec

COMPOSE_FILE = FIXTURES / "docker-compose.prod.yml"
# the file's services, named as in the guide, from the specs that declare one (a profile's too)
SERVICES: dict[str, ServiceSpec] = {s.compose_service: s for s in CATALOGUE.specs if s.compose_service}


# docker-compose 1.x, a Python program, imports distutils, which setuptools' shim replaces with its
# own, importing pkg_resources: half of each call's time (0.5 s of a stack's start). Python has a
# distutils of its own up to 3.11; where it has none, the call runs again with the shim.
WITHOUT_SHIM = {"SETUPTOOLS_USE_DISTUTILS": "stdlib"}


def _run(argv: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env={**env, **WITHOUT_SHIM})
    if done.returncode != 0 and "distutils" in done.stderr:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
    return done


def variable(service: str) -> str:
    return service.upper().replace("-", "_")


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    raise StackError("neither docker-compose nor `docker compose` is installed: run `bash scripts/bootstrap.sh --docker`")


@dataclass(frozen=True)
class ComposeProject:
    name: str
    env: dict[str, str]   # what the file's ${FULSK_*} take, for this stack
    file: Path = COMPOSE_FILE
    command: tuple[str, ...] = field(default_factory=lambda: tuple(compose_command()))

    @classmethod
    def for_stack(cls, stack_id: str, ports: dict[str, int], db_password: str, images: dict[str, str],
                  owner: str) -> "ComposeProject":
        env = {f"FULSK_{variable(s)}_PORT": str(ports[spec.name]) for s, spec in SERVICES.items() if spec.name in ports}
        env |= {f"FULSK_{variable(s)}_IMAGE": images[spec.name] for s, spec in SERVICES.items() if spec.name in images}
        env |= {"FULSK_DB_PASSWORD": db_password, "FULSK_CHAOS_MANAGED": "true", "FULSK_CHAOS_OWNER": owner}
        profiles = sorted({spec.profile for spec in SERVICES.values() if spec.profile and spec.name in ports})
        if profiles:
            env["COMPOSE_PROFILES"] = ",".join(profiles)
        return cls(f"fulsk-chaos-{stack_id}", env)

    @property
    def argv(self) -> list[str]:
        """The guide's ``docker-compose -f docker-compose.prod.yml``, for this project."""
        return [*self.command, "-f", str(self.file), "-p", self.name]

    def hashes(self) -> dict[str, str]:
        """Compose's configuration hash of each service, as it computes it for this stack."""
        done = _run([*self.argv, "config", "--hash=*"], {**os.environ, **self.env}, 60)
        if done.returncode != 0:
            raise StackError(f"{' '.join(self.argv)} config --hash failed: {done.stderr.strip()[-300:]}")
        return dict(line.split(None, 1) for line in done.stdout.split("\n") if line.strip())

    def labels(self, service: str, config_hash: str, version: str) -> dict[str, str]:
        return {"com.docker.compose.project": self.name, "com.docker.compose.service": service,
                "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
                "com.docker.compose.version": version, "com.docker.compose.config-hash": config_hash,
                "com.docker.compose.project.config_files": str(self.file),
                "com.docker.compose.project.working_dir": str(self.file.parent)}

    def version(self) -> str:
        done = _run([*self.command, "version", "--short"], dict(os.environ), 30)
        return done.stdout.strip().lstrip("v") or "1.29.2"

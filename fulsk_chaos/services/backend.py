"""The backend under test: the reference backend by default, or the one its contract runs.

Every backend reads DATABASE_URL, REDIS_URL, MQTT_URL, PORT, HOST and MQTT_CLIENT_ID from its
environment and listens on HOST:PORT; its contract (fulsk_chaos.contract) says how it is
spoken to, its health answer among it, and how a stack runs it (``[run]``: a command, a setup
step, an image and what goes into it).
"""
from __future__ import annotations

import fcntl
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..contract import Contract, at, load as load_contract
from ..errors import StackError
from .postgres import dsn
from .spec import HttpClient, ServiceContext, ServiceSpec


def _host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no CA bundle on this host to build the backend image with")


MQTT_CLIENT_ID = "fulsk-backend"  # its persistent session at the broker


class Backend(ServiceSpec):
    """The reference backend (fixtures/backend), or any command ``backend.command`` names."""
    name = "backend"
    depends_on = ("postgres", "redis", "mqtt")
    registry_image = "fulsk-chaos/backend:latest"  # built from fixtures/backend
    offline_image = "fulsk-chaos/backend:latest"
    packages = ("python3", "python3-venv")
    serves = ("http",)
    compose_service = "backend"
    scalable = True  # SO_REUSEPORT; each instance leases its own MQTT client id

    def image_lines(self, fixtures: Path) -> list[str]:
        # PyPI is reached as this host reaches it, trusting what this host trusts (its CA bundle).
        return ["COPY requirements.txt host-ca.crt /opt/fulsk/",
                "RUN python3 -m venv /opt/fulsk/venv && PIP_CERT=/opt/fulsk/host-ca.crt "
                "/opt/fulsk/venv/bin/pip install --no-cache-dir -q -r /opt/fulsk/requirements.txt "
                "&& rm /opt/fulsk/host-ca.crt",
                "COPY fulsk_backend /opt/fulsk/fulsk_backend",
                "ENV PYTHONPATH=/opt/fulsk PATH=/opt/fulsk/venv/bin:$PATH",
                'CMD ["python", "-m", "fulsk_backend"]']

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        return {"requirements.txt": fixtures / "backend" / "requirements.txt",
                "fulsk_backend": fixtures / "backend" / "fulsk_backend",
                "host-ca.crt": _host_ca_bundle()}

    def argv(self, ctx: ServiceContext) -> list[str]:
        """The configured command; by default the reference backend (in a container: the image's CMD)."""
        if ctx.settings.backend.command or ctx.in_container:
            return list(ctx.settings.backend.command)
        return [sys.executable, "-m", "fulsk_backend"]

    def __init__(self, contract: Contract | None = None) -> None:
        self.contract = contract or load_contract()

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        env = {
            "DATABASE_URL": dsn(ctx.topology, ctx.upstream_port("postgres")),
            "REDIS_URL": f"redis://127.0.0.1:{ctx.upstream_port('redis')}/0",
            "MQTT_URL": f"mqtt://127.0.0.1:{ctx.upstream_port('mqtt')}",
            "PORT": str(ctx.port),
            "HOST": "127.0.0.1",
            "MQTT_CLIENT_ID": MQTT_CLIENT_ID,
            # what an operator edits (the guide's .env.production): read at every start, it wins
            "FULSK_ENV_FILE": str(self.env_file(ctx)),
        }
        if type(self) is Backend and not ctx.settings.backend.command and not ctx.in_container:
            reference = str(ctx.fixtures / "backend")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [reference, os.environ.get("PYTHONPATH")]))
        env.update(ctx.settings.backend.env)
        return env

    def env_file(self, ctx: ServiceContext) -> Path:
        return ctx.workdir / ".env.production"

    def address(self, ctx: ServiceContext) -> str:
        return f"http://127.0.0.1:{ctx.port}"

    def endpoints(self, ctx: ServiceContext) -> dict[str, Any]:
        metrics = self.contract.capabilities.metrics
        return {"address": self.address(ctx), "metrics": self.address(ctx) + metrics if metrics else ""}

    def client(self, ctx: ServiceContext) -> HttpClient:
        return HttpClient(self.address(ctx))

    def check(self, ctx: ServiceContext) -> None:
        """Up and answering its health path, whatever it says of its dependencies (they may be faulted)."""
        health = self.contract.health
        client = self.client(ctx)
        try:
            response = client.get(health.path, timeout=3)
            try:
                at(response.json(), health.status)
            except (ValueError, KeyError, TypeError, IndexError):
                raise RuntimeError(f"{health.path} answered {response.status_code} {response.text[:300]}") from None
        finally:
            client.close()

    def ready(self, ctx: ServiceContext) -> None:
        check_health(self.client(ctx), self.contract)


def check_health(client: HttpClient, contract: Contract) -> None:
    """Healthy as the contract says: 200 and a healthy status (the ops guide's ``curl -f .../health`` and more)."""
    health = contract.health
    try:
        response = client.get(health.path, timeout=3)
        try:
            healthy = response.status_code == 200 and at(response.json(), health.status) in health.healthy
        except (ValueError, KeyError, TypeError, IndexError):
            healthy = False
        if not healthy:
            raise RuntimeError(f"{health.path} answered {response.status_code} {response.text[:300]}")
    finally:
        client.close()


class ContractBackend(Backend):
    """A backend its contract's ``[run]`` table runs: a command in the contract's directory on the
    local stack (after its setup step, once), its image on Docker (built offline from the listed
    files where there are some)."""

    def __init__(self, contract: Contract) -> None:
        super().__init__(contract)
        run = contract.run
        self.home = Path(contract.home)
        self.registry_image = self.offline_image = run.image or f"fulsk-chaos/backend-{contract.name}:latest"
        self.packages = tuple(run.packages)
        self.commands = dict(run.commands)
        self.scalable = bool(contract.capabilities.instance_header)

    def image_lines(self, fixtures: Path) -> list[str]:
        run = self.contract.run
        return [f"COPY {name} /opt/fulsk/{name}" for name in run.files] + [
            "WORKDIR /opt/fulsk", f"CMD {json.dumps(run.image_command)}"]

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        self.setup()  # what the image copies is what the setup made (e.g. node_modules)
        return {name: self.home / name for name in self.contract.run.files}

    def setup(self) -> None:
        """The run's setup step, once per checkout (several stacks starting at once: one runs it)."""
        run = self.contract.run
        if not run.setup or (run.ready_when and (self.home / run.ready_when).exists()):
            return
        with open(self.home / ".fulsk-chaos-setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if run.ready_when and (self.home / run.ready_when).exists():
                return
            done = subprocess.run(run.setup, cwd=self.home, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise StackError(f"the {self.contract.name} backend's setup `{' '.join(run.setup)}` in {self.home} "
                                 f"failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")

    def prepare(self, ctx: ServiceContext) -> None:
        super().prepare(ctx)
        if not ctx.in_container and not ctx.settings.backend.command:
            self.setup()

    def argv(self, ctx: ServiceContext) -> list[str]:
        if ctx.settings.backend.command or ctx.in_container:
            return list(ctx.settings.backend.command)
        command = self.contract.run.command
        return [command[0], *(str(self.home / a) if (self.home / a).exists() else a for a in command[1:])]


def for_contract(contract: Contract) -> Backend:
    """The backend spec a contract asks for: its own ``[run]``, else the reference backend."""
    return ContractBackend(contract) if contract.run.command or contract.run.image else Backend(contract)


SPEC = Backend()

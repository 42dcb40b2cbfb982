"""The backend under test: the reference backend by default, or any command honouring its contract.

Contract: the backend reads DATABASE_URL, REDIS_URL, MQTT_URL and PORT from its environment,
listens on 127.0.0.1:PORT, and serves GET /health (200 when healthy) and the /api routes.
"""
from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path
from typing import Any

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
        if not ctx.settings.backend.command and not ctx.in_container:
            reference = str(ctx.fixtures / "backend")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [reference, os.environ.get("PYTHONPATH")]))
        env.update(ctx.settings.backend.env)
        return env

    def env_file(self, ctx: ServiceContext) -> Path:
        return ctx.workdir / ".env.production"

    def address(self, ctx: ServiceContext) -> str:
        return f"http://127.0.0.1:{ctx.port}"

    def endpoints(self, ctx: ServiceContext) -> dict[str, Any]:
        return {"address": self.address(ctx), "metrics": self.address(ctx) + "/metrics"}

    def client(self, ctx: ServiceContext) -> HttpClient:
        return HttpClient(self.address(ctx))

    def check(self, ctx: ServiceContext) -> None:
        """Up and answering /health, whatever it says of its dependencies (they may be faulted)."""
        client = self.client(ctx)
        try:
            response = client.get("/health", timeout=3)
            if response.status_code not in (200, 503) or "status" not in response.json():
                raise RuntimeError(f"/health answered {response.status_code} {response.text[:300]}")
        finally:
            client.close()

    def ready(self, ctx: ServiceContext) -> None:
        check_health(self.client(ctx), "/health")


def check_health(client: HttpClient, path: str) -> None:
    """Healthy means 200 and ``"status": "ok"``, the ops guide's ``curl -f .../health`` and more."""
    try:
        response = client.get(path, timeout=3)
        if response.status_code != 200 or response.json().get("status") != "ok":
            raise RuntimeError(f"{path} answered {response.status_code} {response.text[:300]}")
    finally:
        client.close()


SPEC = Backend()

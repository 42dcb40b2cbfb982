"""The backend under test: the reference backend by default, or any command honouring its contract.

Contract: the backend reads DATABASE_URL, REDIS_URL, MQTT_URL and PORT from its environment,
listens on 127.0.0.1:PORT, and serves GET /health (200 when healthy) and the /api routes.
"""
from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

import requests

from ..service import ServiceContext, ServiceSpec


def _host_ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no CA bundle on this host to build the backend image with")


class Backend(ServiceSpec):
    name = "backend"
    registry_image = "fulsk-chaos/backend:latest"  # built from fixtures/backend
    offline_image = "fulsk-chaos/backend:latest"
    packages = ("python3", "python3-venv")

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
        if ctx.config.backend.command or ctx.in_container:
            return list(ctx.config.backend.command)
        return [sys.executable, "-m", "fulsk_backend"]

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        t = ctx.topology
        env = {
            "DATABASE_URL": t.dsn(port=t.edge_port("backend-postgres")),
            "REDIS_URL": f"redis://127.0.0.1:{t.edge_port('backend-redis')}/0",
            "MQTT_URL": f"mqtt://127.0.0.1:{t.edge_port('backend-mqtt')}",
            "PORT": str(ctx.port),
            "HOST": "127.0.0.1",
        }
        if not ctx.config.backend.command and not ctx.in_container:
            reference = str(ctx.fixtures / "backend")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [reference, os.environ.get("PYTHONPATH")]))
        env.update(ctx.config.backend.env)
        return env

    def check(self, ctx: ServiceContext) -> None:
        response = requests.get(f"http://127.0.0.1:{ctx.port}/health", timeout=3)
        if response.status_code != 200 or response.json().get("status") != "ok":
            raise RuntimeError(f"/health answered {response.status_code} {response.text[:300]}")

"""The backend under test: the reference backend by default, or any command honouring its contract.

Contract: the backend reads DATABASE_URL, REDIS_URL, MQTT_URL and PORT from its environment,
listens on 127.0.0.1:PORT, and serves GET /health (200 when healthy) and the /api routes.
"""
from __future__ import annotations

import os
import sys

import requests

from ..service import ServiceContext, ServiceSpec


class Backend(ServiceSpec):
    name = "backend"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return list(ctx.config.backend.command) or [sys.executable, "-m", "fulsk_backend"]

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        t = ctx.topology
        env = {
            "DATABASE_URL": t.dsn(port=t.edge_port("backend-postgres")),
            "REDIS_URL": f"redis://127.0.0.1:{t.edge_port('backend-redis')}/0",
            "MQTT_URL": f"mqtt://127.0.0.1:{t.edge_port('backend-mqtt')}",
            "PORT": str(ctx.port),
            "HOST": "127.0.0.1",
        }
        if not ctx.config.backend.command:
            reference = str(ctx.fixtures / "backend")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [reference, os.environ.get("PYTHONPATH")]))
        env.update(ctx.config.backend.env)
        return env

    def check(self, ctx: ServiceContext) -> None:
        response = requests.get(f"http://127.0.0.1:{ctx.port}/health", timeout=3)
        if response.status_code != 200 or response.json().get("status") != "ok":
            raise RuntimeError(f"/health answered {response.status_code} {response.text[:300]}")

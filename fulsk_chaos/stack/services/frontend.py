"""nginx: the dashboard, and the reverse proxy for /health, /api and the WebSocket."""
from __future__ import annotations

import shutil
import signal
from string import Template

import requests

from ..service import ServiceContext, ServiceSpec


class Frontend(ServiceSpec):
    name = "frontend"
    stop_signal = signal.SIGQUIT  # graceful shutdown
    registry_image = "nginx:1.25"
    offline_image = "fulsk-chaos/nginx:1.22"
    packages = ("nginx-light",)

    def prepare(self, ctx: ServiceContext) -> None:
        source = ctx.fixtures / "frontend"
        html = ctx.workdir / "html"
        shutil.copytree(source / "html", html, dirs_exist_ok=True)
        (ctx.workdir / "tmp").mkdir(exist_ok=True)
        conf = Template((source / "nginx.conf.template").read_text()).substitute(
            port=ctx.port, backend=f"127.0.0.1:{ctx.topology.edge_port('frontend-backend')}",
            prefix=ctx.workdir, root=html)
        (ctx.workdir / "nginx.conf").write_text(conf)

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("nginx", "/usr/sbin/nginx"), "-p", str(ctx.workdir), "-c",
                str(ctx.workdir / "nginx.conf"), "-e", "stderr"]

    def check(self, ctx: ServiceContext) -> None:
        response = requests.get(f"http://127.0.0.1:{ctx.port}/health", timeout=3)
        if response.status_code != 200 or response.json().get("status") != "ok":
            raise RuntimeError(f"/health through nginx answered {response.status_code} {response.text[:300]}")

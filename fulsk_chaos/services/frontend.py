"""nginx: the dashboard, and the reverse proxy for /health, /api and the WebSocket."""
from __future__ import annotations

import shutil
import signal
from string import Template
from typing import Any

from .backend import check_health
from .spec import HttpClient, ServiceContext, ServiceSpec


class Frontend(ServiceSpec):
    name = "frontend"
    depends_on = ("backend",)
    stop_signal = signal.SIGQUIT  # graceful shutdown
    registry_image = "nginx:1.25"
    offline_image = "fulsk-chaos/nginx:1.22"
    packages = ("nginx-light",)
    serves = ("http", "live-feed")
    compose_service = "frontend"
    commands = {"nginx": "nginx-light"}
    scalable = True  # listen ... reuseport

    def prepare(self, ctx: ServiceContext) -> None:
        source = ctx.fixtures / "frontend"
        html = ctx.workdir / "html"
        shutil.copytree(source / "html", html, dirs_exist_ok=True)
        (ctx.workdir / "tmp").mkdir(exist_ok=True)
        conf = Template((source / "nginx.conf.template").read_text()).substitute(
            port=ctx.port, backend=f"127.0.0.1:{ctx.upstream_port('backend')}",
            prefix=ctx.workdir, root=html)
        (ctx.workdir / "nginx.conf").write_text(conf)

    def access_log(self, ctx: ServiceContext):
        """Its access log (combined format, flushed every second): the guide's /var/log/nginx/access.log."""
        return ctx.workdir / "access.log"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("nginx", "/usr/sbin/nginx"), "-p", str(ctx.workdir), "-c",
                str(ctx.workdir / "nginx.conf"), "-e", "stderr"]

    def address(self, ctx: ServiceContext) -> str:
        return f"http://127.0.0.1:{ctx.port}"

    def endpoints(self, ctx: ServiceContext) -> dict[str, Any]:
        address = self.address(ctx)
        feed = ctx.contract.feed.path
        return {"address": address, "live_feed": address.replace("http://", "ws://", 1) + feed}

    def client(self, ctx: ServiceContext) -> HttpClient:
        return HttpClient(self.address(ctx))

    def check(self, ctx: ServiceContext) -> None:
        """nginx itself serves the dashboard: its health is not its backends' (which the stack checks
        on their own), so it can be brought back while one of them is still faulted."""
        client = self.client(ctx)
        try:
            response = client.get("/", timeout=3)
            if response.status_code != 200:
                raise RuntimeError(f"/ answered {response.status_code} {response.text[:200]}")
        finally:
            client.close()

    def ready(self, ctx: ServiceContext) -> None:
        # through nginx to the backend, as users reach it, healthy as the backend's contract says
        check_health(self.client(ctx), ctx.contract)


SPEC = Frontend()

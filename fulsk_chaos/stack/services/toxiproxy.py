"""Toxiproxy: one proxy on every dependency edge, where network faults are injected."""
from __future__ import annotations

from pathlib import Path

from ...toxiproxy import ToxiproxyClient
from ..service import ServiceContext, ServiceSpec, find_binary


_BINARY = ("toxiproxy-server", "/usr/local/bin/toxiproxy-server", str(Path.home() / "go/bin/toxiproxy-server"))


class Toxiproxy(ServiceSpec):
    name = "toxiproxy"
    registry_image = "ghcr.io/shopify/toxiproxy:2.12.0"
    offline_image = "fulsk-chaos/toxiproxy:2.12.0"

    def image_lines(self, fixtures: Path) -> list[str]:
        # The server is the entrypoint, as in the registry's image (whose binary is /toxiproxy).
        return ["COPY toxiproxy-server /usr/local/bin/toxiproxy-server", 'ENTRYPOINT ["toxiproxy-server"]']

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        return {"toxiproxy-server": Path(find_binary(*_BINARY))}  # the same binary the local provider runs

    def argv(self, ctx: ServiceContext) -> list[str]:
        flags = ["-host", "127.0.0.1", "-port", str(ctx.port)]
        return flags if ctx.in_container else [ctx.exe(*_BINARY), *flags]

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {"LOG_LEVEL": "warn"}

    def check(self, ctx: ServiceContext) -> None:
        ToxiproxyClient(ctx.port, timeout_s=2).version()

    def after_start(self, ctx: ServiceContext) -> None:
        ports = ctx.topology.ports
        ToxiproxyClient(ctx.port).populate([
            {"name": e.name, "listen": f"127.0.0.1:{e.listen}", "upstream": f"127.0.0.1:{ports[e.upstream]}",
             "enabled": True}
            for e in ctx.topology.edges.values()])

"""Toxiproxy: one proxy on every dependency edge, where network faults are injected.

Its client is ours, bound to one server: toxiproxy-python keeps the server address in a class
attribute shared by the whole process, so two stacks in one process would drive each other's proxies.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FulskChaosError, InstrumentError
from .spec import ServiceContext, ServiceSpec, find_binary

_BINARY = ("toxiproxy-server", "/usr/local/bin/toxiproxy-server", str(Path.home() / "go/bin/toxiproxy-server"))


class ToxiproxyError(FulskChaosError, RuntimeError):
    pass


class ProxyHung(ToxiproxyError, InstrumentError):
    """Toxiproxy did not answer. Removing a toxic, it writes each chunk a connection whose peer
    died left in the toxic's buffer for up to 5 s before giving up on it, holding the proxy's lock
    meanwhile (Shopify/toxiproxy#558, open): a latency and a slicer toxic on an edge whose client
    was killed held it for minutes. Restarting it (the stack's heal does) is the way out."""

    @classmethod
    def saying(cls, method: str, path: str, what: str) -> "ProxyHung":
        return cls(f"toxiproxy {method} {path}: {what} (it hangs removing a toxic from a connection whose peer "
                   f"died, Shopify/toxiproxy#558): the stack's heal restarts it")


# How long a removal may take: Toxiproxy gives up on a stuck chunk after 5 s, one after the other.
REMOVAL_TIMEOUT_S = 30.0


@dataclass
class ToxiproxyClient:
    port: int
    host: str = "127.0.0.1"
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        import requests
        self._http = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _call(self, method: str, path: str, json: Any = None, timeout_s: float | None = None) -> Any:
        import requests
        timeout_s = timeout_s or self.timeout_s
        try:
            response = self._http.request(method, self.url + path, json=json, timeout=timeout_s)
        except requests.Timeout:
            raise ProxyHung.saying(method, path, f"no answer within {timeout_s:g} s") from None
        if response.status_code == 503 and "Timeout" in response.text:  # its API's own handler timeout
            raise ProxyHung.saying(method, path, "its API timed out (503)")
        if response.status_code >= 400:
            raise ToxiproxyError(f"toxiproxy {method} {path} -> {response.status_code}: {response.text.strip()}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def version(self) -> str:
        return self._http.get(self.url + "/version", timeout=self.timeout_s).text.strip()

    def populate(self, proxies: list[dict[str, Any]]) -> None:
        """Create (or re-create, after a toxiproxy restart) all proxies in one call."""
        self._call("POST", "/populate", proxies)

    def proxies(self) -> dict[str, Any]:
        return self._call("GET", "/proxies")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset", timeout_s=REMOVAL_TIMEOUT_S)

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def add_toxic(self, proxy: str, kind: str, attributes: dict[str, Any], *, stream: str = "downstream",
                  toxicity: float = 1.0, name: str | None = None) -> str:
        name = name or f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes})
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", timeout_s=REMOVAL_TIMEOUT_S)

    def close(self) -> None:
        self._http.close()


class Toxiproxy(ServiceSpec):
    name = "toxiproxy"
    carries_edges = True
    instrument = True  # the proxy every edge goes through: how network faults are made
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

    def client(self, ctx: ServiceContext) -> ToxiproxyClient:
        return ToxiproxyClient(ctx.port)

    def address(self, ctx: ServiceContext) -> str:
        return f"http://127.0.0.1:{ctx.port}"

    def check(self, ctx: ServiceContext) -> None:
        client = ToxiproxyClient(ctx.port, timeout_s=2)
        try:
            client.version()
        finally:
            client.close()

    def after_start(self, ctx: ServiceContext) -> None:
        ports = ctx.topology.ports
        client = self.client(ctx)
        try:
            client.populate([
                {"name": e.name, "listen": f"127.0.0.1:{e.listen}",
                 "upstream": f"127.0.0.1:{ports[e.upstream]}", "enabled": True}
                for e in ctx.topology.edges.values()])
        finally:
            client.close()


SPEC = Toxiproxy()

"""A client for Toxiproxy's HTTP API, bound to one server.

toxiproxy-python keeps its server address in a class attribute shared by the whole process, so
two stacks in one process would drive each other's proxies; this client holds its own address.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests


class ToxiproxyError(RuntimeError):
    pass


@dataclass
class ToxiproxyClient:
    port: int
    host: str = "127.0.0.1"
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        self._http = requests.Session()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, self.url + path, json=json, timeout=self.timeout_s)
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
        self._call("POST", "/reset")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def add_toxic(self, proxy: str, kind: str, attributes: dict[str, Any], *, stream: str = "downstream",
                  toxicity: float = 1.0, name: str | None = None) -> str:
        name = name or f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {
            "name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes})
        return name

    def close(self) -> None:
        self._http.close()

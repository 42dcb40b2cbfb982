"""The service catalogue: one module per server of the stack, each defining ``SPEC``.

A new service is one new module here (and, for Docker, its image lines in the spec): the
catalogue finds it, its ``depends_on`` gives its proxied edges and its place in the start order.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cached_property

from ..config import Settings
from ..errors import ConfigError, StackError
from .spec import FIXTURES, Edge, ServiceContext, ServiceSpec, Topology

__all__ = ["CATALOGUE", "MONITORING", "Catalogue", "Edge", "EdgeSpec", "FIXTURES", "ServiceContext", "ServiceSpec", "Topology",
           "discover"]


@dataclass(frozen=True)
class EdgeSpec:
    """A dependency edge, before ports are allocated: ``client`` connects to ``upstream``."""
    client: str
    upstream: str

    @property
    def name(self) -> str:
        return f"{self.client}-{self.upstream}"


@dataclass(frozen=True)
class Catalogue:
    specs: tuple[ServiceSpec, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise StackError(f"two services share a name in the catalogue: {sorted(names)}")
        for spec in self.specs:
            for upstream in spec.depends_on:
                if upstream not in names:
                    raise StackError(f"{spec.name} depends on {upstream!r}, which no service module defines")
        if sum(s.carries_edges for s in self.specs) > 1:
            raise StackError("more than one service carries the edges (only one proxy is supported)")
        self.start_groups  # noqa: B018 - refuses a dependency cycle now, not at the first start

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str) -> ServiceSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise StackError(f"no service {name!r} in the catalogue: {', '.join(self.names)}")

    @cached_property
    def edges(self) -> tuple[EdgeSpec, ...]:
        """Every dependency edge, each to be carried by the proxy, where network faults are injected."""
        edges = [EdgeSpec(s.name, up) for s in self.specs for up in s.depends_on]
        edges += [EdgeSpec(client, s.name) for s in self.specs for client in s.external_clients]
        return tuple(edges)

    @cached_property
    def start_groups(self) -> tuple[tuple[str, ...], ...]:
        """Services in groups that start together; each group after what it depends on (the proxy
        first when there are edges to carry)."""
        proxy = [s.name for s in self.specs if s.carries_edges]
        needs = {s.name: set(s.depends_on) | (set(proxy) if s.depends_on else set()) for s in self.specs}
        groups: list[tuple[str, ...]] = []
        placed: set[str] = set()
        while len(placed) < len(needs):
            ready = tuple(sorted(n for n, deps in needs.items() if n not in placed and deps <= placed))
            if not ready:
                raise StackError(f"the services' depends_on form a cycle among "
                                 f"{sorted(set(needs) - placed)}")
            groups.append(ready)
            placed.update(ready)
        return tuple(groups)

    def check_settings(self, settings: Settings) -> None:
        """Settings that name services must name services of this catalogue."""
        unknown = sorted(set(settings.docker.images) - set(self.names))
        if unknown:
            raise ConfigError(f"docker.images.{unknown[0]}: not a service of the stack ({', '.join(self.names)})")

    def with_specs(self, *extra: ServiceSpec) -> "Catalogue":
        return Catalogue(self.specs + extra)


def discover(package: str = __name__) -> Catalogue:
    """Every module of ``package`` that defines ``SPEC``, in start order."""
    module = importlib.import_module(package)
    specs = []
    for info in pkgutil.iter_modules(module.__path__):
        found = getattr(importlib.import_module(f"{package}.{info.name}"), "SPEC", None)
        if isinstance(found, ServiceSpec):
            specs.append(found)
    unordered = Catalogue(tuple(specs))
    order = [n for group in unordered.start_groups for n in group]
    return Catalogue(tuple(sorted(specs, key=lambda s: order.index(s.name))))


CATALOGUE = discover()


def _monitoring() -> tuple[ServiceSpec, ...]:
    from .alertmanager import ALERTMANAGER
    from .exporters import EXPORTERS
    from .prometheus import PROMETHEUS
    return (PROMETHEUS, ALERTMANAGER, *EXPORTERS)


# Not in every stack: stack.monitoring = true adds them (their images are built with the others).
MONITORING = _monitoring()

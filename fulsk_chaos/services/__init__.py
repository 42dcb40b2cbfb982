"""The service catalogue: one module per server of the stack, each defining ``SPEC`` (or ``SPECS``).

A new service is one new module here (and, for Docker, its image lines in the spec and its
service in the compose file): the catalogue finds it, its ``depends_on`` gives its proxied edges
and its place in the start order, its declarations (ServiceSpec: profile, instrument, serves,
commands) what the stack, the fault search and bootstrap.sh need of it.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cached_property

from ..config import Settings
from ..contract import Contract
from ..errors import ConfigError, StackError
from .spec import FIXTURES, Edge, ServiceContext, ServiceSpec, Topology

__all__ = ["CATALOGUE", "Catalogue", "Edge", "EdgeSpec", "FIXTURES", "ServiceContext", "ServiceSpec", "Topology",
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

    def instrument(self, name: str) -> bool:
        """Whether ``name`` is part of the harness (an outside client, e.g. the inverters, is not)."""
        return any(s.instrument for s in self.specs if s.name == name)

    def for_settings(self, settings: Settings) -> "Catalogue":
        """The services a stack with these settings runs: those of no profile, and those whose
        profile (a [stack] switch: standby, monitoring) is on."""
        profiles = [s.profile for s in self.specs if s.profile is not None]
        unknown = sorted({p for p in profiles if not isinstance(getattr(settings.stack, p, None), bool)})
        if unknown:
            raise StackError(f"a service's profile {unknown[0]!r} is no [stack] switch (stack.{unknown[0]} = true "
                             f"would add it): add it to config.StackSettings")
        return Catalogue(tuple(s for s in self.specs if s.profile is None or getattr(settings.stack, s.profile)))

    def for_contract(self, contract: Contract) -> "Catalogue":
        """The catalogue with the backend its contract runs (its own command and image, or the
        reference backend's), spoken to as the contract says."""
        from .backend import for_contract
        return Catalogue(tuple(for_contract(contract) if s.name == "backend" else s for s in self.specs))

    def commands(self) -> dict[str, str]:
        """Every program the services run on the local stack, with its Debian package."""
        return {command: package for spec in self.specs for command, package in spec.commands.items()}

    def check_settings(self, settings: Settings) -> None:
        """Settings that name services must name services of this catalogue."""
        unknown = sorted(set(settings.docker.images) - set(self.names))
        if unknown:
            raise ConfigError(f"docker.images.{unknown[0]}: not a service of the stack ({', '.join(self.names)})")

    def with_specs(self, *extra: ServiceSpec) -> "Catalogue":
        return Catalogue(self.specs + extra)


def discover(package: str = __name__) -> Catalogue:
    """Every spec the modules of ``package`` define (``SPEC``, or ``SPECS`` for several), in start order."""
    module = importlib.import_module(package)
    specs = []
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.startswith("_"):  # __main__: the catalogue's command line
            continue
        found = importlib.import_module(f"{package}.{info.name}")
        specs += [s for s in (getattr(found, "SPEC", None), *getattr(found, "SPECS", ())) if isinstance(s, ServiceSpec)]
    unordered = Catalogue(tuple(specs))
    order = [n for group in unordered.start_groups for n in group]
    return Catalogue(tuple(sorted(specs, key=lambda s: order.index(s.name))))


# Every service, those of a profile included (a stack runs CATALOGUE.for_settings(settings)).
CATALOGUE = discover()

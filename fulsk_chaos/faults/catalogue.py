"""The fault catalogue: every kind of fault the framework can inflict, grouped by family.

A fault kind is one function that injects the fault and returns the rollback that undoes it;
registering it in its family (``@family.kind("name", condition=...)``) is the one entry that makes
it available to every scenario, journaled and always rolled back by the injector. Its condition
(conditions.py) says what the fault exists to create and measures, from the stack, that it did.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlparse
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from ..errors import FaultError
from .conditions import Condition

if TYPE_CHECKING:
    from ..stack import Stack

Rollback = Callable[[], None]


def is_loopback(address: str) -> bool:
    """``address``: a URL, a DSN or host:port."""
    host = urlparse(address if "://" in address else f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
Inject = Callable[..., Rollback]  # (stack, target, **params) -> the rollback


@dataclass(frozen=True)
class FaultKind:
    name: str
    family: str
    inject: Inject
    summary: str
    # A service fault's target is a service (otherwise, e.g., a proxy's edge).
    on_service: bool = True
    # Portable: built on what every provider's services offer (kill, stop, pause, start...). A kind
    # that is not needs a provider that lists it in its services' ``fault_kinds`` (volume loss).
    portable: bool = True
    # The states of its service a service fault acts on (``Service.state()``); None: any. As
    # ``docker pause`` refuses a stopped container, pausing a service another fault stopped is
    # not a fault but a mistake, whose "failure" would be the framework's.
    acts_on: tuple[str, ...] | None = ("running",)
    # What the fault exists to create, measured from the stack while it is active (conditions.py):
    # a fault that never reached it is no evidence, and the verdict is error, never pass.
    condition: Condition | None = None
    # What a service must serve to be a target (a protocol: "redis", "mqtt", "live-feed"; see
    # ServiceSpec.serves); None: any service under test.
    needs: str | None = None
    # The schedule search draws every kind on every target it declares, with these parameters,
    # except a kind that destroys data (that is a recovery drill's, with a backup to restore) or
    # that is not searched (its condition needs what a schedule does not run).
    search_params: Mapping[str, Any] = field(default_factory=dict)
    destroys_data: bool = False
    searched: bool = True

    def __call__(self, stack: "Stack", target: str, **params: Any) -> Rollback:
        return self.inject(stack, target, **params)

    def targets(self, stack: "Stack") -> list[str]:
        """What this kind can act on in ``stack``: each proxied edge between parts under test, or
        each service under test that serves what the kind needs. The proxy and the monitoring are
        the instruments, never a target (ServiceSpec.instrument)."""
        if not self.on_service:
            return [name for name, edge in stack.topology.edges.items()
                    if not any(stack.catalogue.instrument(end) for end in (edge.client, edge.upstream))]
        return [name for name, service in stack.services.items()
                if not service.spec.instrument and (self.needs is None or self.needs in service.spec.serves)]

    @property
    def drawn(self) -> bool:
        """Whether the schedule search draws this kind."""
        return self.searched and not self.destroys_data

    def subjects(self, target: str) -> tuple[str, ...]:
        """What the fault holds while active: its service, or each edge it names."""
        return tuple(t.strip() for t in target.split(",")) if not self.on_service else (target,)

    def check_target(self, stack: "Stack", target: str) -> None:
        """Safety: a fault touches only what this run started, and only on loopback unless the
        configuration allows more (``faults.allow_non_loopback``)."""
        allow_remote = stack.settings.faults.allow_non_loopback
        if self.on_service:
            service = stack.service(target)  # refuses a name this stack did not start
            if self.needs is not None and self.needs not in service.spec.serves:
                raise FaultError(f"{self.name} acts on a service that serves {self.needs}, and {target} does not; "
                                 f"its targets in this stack: {', '.join(self.targets(stack)) or 'none'}")
            addresses = [service.address]
        else:
            edges = stack.topology.edges
            unknown = [e for e in self.subjects(target) if e not in edges]
            if unknown or not target:
                raise FaultError(f"{self.name}: {', '.join(unknown) or 'no edge'} is not an edge of this stack "
                                 f"(its edges: {', '.join(edges)})")
            proxies = stack.endpoints.proxies
            addresses = [proxies[e]["upstream_address"] for e in self.subjects(target)]
        for address in addresses:
            if not allow_remote and not is_loopback(address):
                raise FaultError(f"{self.name} on {target} refused: {address} is not on loopback "
                                 f"(set faults.allow_non_loopback = true to allow it)")

    def refusal(self, target: str, state: str) -> str | None:
        """Why the fault cannot act on ``target`` in ``state`` (``Service.state()``); None: it can."""
        if self.acts_on is None or state in self.acts_on:
            return None
        return (f"{self.name} of {target} refused: {target} is {state}, and {self.name} acts only on a service "
                f"that is {' or '.join(self.acts_on)}; heal whatever left it {state} first")


class Family:
    """One family of faults (process, network, cache, ...): a module's worth of fault kinds.
    ``needs``: what its kinds' targets must serve, unless a kind says otherwise."""

    def __init__(self, name: str, needs: str | None = None) -> None:
        self.name = name
        self.needs = needs
        self._kinds: dict[str, FaultKind] = {}

    def kind(self, name: str, *, on_service: bool = True, portable: bool = True,
             acts_on: tuple[str, ...] | None = ("running",), condition: Condition | None = None,
             needs: str | None = None, search_params: Mapping[str, Any] | None = None, destroys_data: bool = False,
             searched: bool = True) -> Callable[[Inject], Inject]:
        def register(inject: Inject) -> Inject:
            if name in self._kinds:
                raise FaultError(f"fault kind {name!r} is defined twice in the {self.name} family")
            summary = (inject.__doc__ or "").strip().splitlines()[0] if inject.__doc__ else ""
            self._kinds[name] = FaultKind(name, self.name, inject, summary, on_service, portable, acts_on, condition,
                                          needs or self.needs, dict(search_params or {}), destroys_data, searched)
            return inject
        return register

    @property
    def kinds(self) -> Mapping[str, FaultKind]:
        return dict(self._kinds)


class Catalogue(Mapping[str, FaultKind]):
    def __init__(self, *families: Family) -> None:
        self._kinds: dict[str, FaultKind] = {}
        for family in families:
            for name, kind in family.kinds.items():
                if name in self._kinds:
                    raise FaultError(f"fault kind {name!r} is in both the {self._kinds[name].family} and "
                                     f"the {family.name} families")
                self._kinds[name] = kind

    def __getitem__(self, name: str) -> FaultKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise FaultError(f"no fault kind {name!r}; the catalogue has: {', '.join(sorted(self._kinds))}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

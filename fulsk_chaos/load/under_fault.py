"""Capacity under fault: the stress search run while a catalogue fault holds (``--under-fault``),
its capacity compared with the healthy one.

    --under-fault latency:backend-postgres,latency_ms=100   100 ms more on every backend->postgres packet
    --under-fault flushall:redis,every=step                  Redis emptied as every step begins
    --under-fault kill:backend,scale=3                       one of three backend instances killed

``KIND:TARGET[,KEY=VALUE...]``: KEY=VALUE are the fault kind's parameters (numbers where they read
as numbers); an item without ``=`` belongs to the target, which may name several edges
(``latency:backend-postgres,backend-redis``). Two keys are the search's own: ``every=step`` injects
the fault anew as each step's judged window begins (the injection before rolled back first), for
one-shot faults such as flushall; ``scale=N`` runs N instances of the target service through the
search, scaled back to one after it. The fault goes through the FaultInjector: journaled, and
rolled back however the search ends.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import FaultError
from ..figures import StressFigures
from ..faults import CATALOGUE, Fault, FaultInjector

EVERY_STEP = "step"


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    every_step: bool = False
    scale: int | None = None

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        kind, sep, rest = text.strip().partition(":")
        items = [i.strip() for i in rest.split(",") if i.strip()]
        target = ",".join(i for i in items if "=" not in i)
        if not sep or not kind or not target:
            raise FaultError(f"--under-fault is KIND:TARGET[,KEY=VALUE...] (e.g. latency:backend-postgres,"
                             f"latency_ms=100 or flushall:redis,every=step), got {text!r}")
        fault_kind = CATALOGUE[kind]  # an unknown kind names the catalogue's
        params = {k.strip(): _value(v.strip()) for k, _, v in (i.partition("=") for i in items if "=" in i)}
        every = params.pop("every", None)
        if every not in (None, EVERY_STEP):
            raise FaultError(f"--under-fault {text}: every={every} - the only repetition is every={EVERY_STEP}")
        scale = params.pop("scale", None)
        if scale is not None and (not isinstance(scale, int) or scale < 1 or not fault_kind.on_service):
            raise FaultError(f"--under-fault {text}: scale=N is a number of instances (1 or more) of the service "
                             f"the fault acts on; {kind} acts on {'a service' if fault_kind.on_service else 'edges'}")
        return cls(kind, target, params, every == EVERY_STEP, scale)

    def __str__(self) -> str:
        extra = [f"{k}={v}" for k, v in self.params.items()]
        extra += [f"every={EVERY_STEP}"] if self.every_step else []
        extra += [f"scale={self.scale}"] if self.scale else []
        return ",".join([f"{self.kind}:{self.target}", *extra])

    def to_json(self) -> dict[str, Any]:
        return {"fault": f"{self.kind}:{self.target}", "params": self.params, "every_step": self.every_step,
                "scale": self.scale}


def _value(text: str) -> Any:
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


@dataclass
class UnderFault:
    """The fault a stress search runs under, and the healthy capacity it is compared with when one
    is known (this run's healthy search; else the stored stress baseline, looked up by the search)."""
    spec: FaultSpec
    injector: FaultInjector
    healthy: dict[str, Any] | None = None  # capacity_rps, capacity_bracket_rps, source

    @contextlib.contextmanager
    def holding(self, note: Callable[[str], None]) -> Iterator[Callable[[], None] | None]:
        """Hold the fault through the block (scaled first, if asked); yields what to call as each
        step begins when the fault repeats every step (else None)."""
        spec, stack = self.spec, self.injector.stack
        held: list[Fault] = []

        def inject() -> None:
            if held:
                held.pop().rollback()
            held.append(self.injector.inject(spec.kind, spec.target, **spec.params))

        try:
            if spec.scale:
                stack.scale(spec.target, spec.scale)
                note(f"{spec.target} scaled to {spec.scale} instances")
            if not spec.every_step:
                inject()
            note(f"under fault: {spec}")
            yield inject if spec.every_step else None
        finally:
            try:
                while held:
                    held.pop().rollback()
            finally:
                if spec.scale:
                    stack.scale(spec.target, 1)


def compare(capacity: float | None, bracket: list[float | None], under: UnderFault,
            stored: dict[str, Any] | None, stored_why_not: str = "") -> StressFigures:
    """The measurements of a search under fault: the fault, the healthy capacity it is compared
    with (this run's healthy search, else ``stored``: the stored baseline's; ``stored_why_not``:
    why there is none to use), and the ratio."""
    healthy = under.healthy or stored
    spec = under.spec.to_json()
    if healthy is None or not healthy.get("capacity_rps"):
        return StressFigures(under_fault=spec, capacity_ratio_not_computed=(
            f"no healthy capacity to compare with: no healthy search ran before it in this run (test_stress, "
            f"deselected by -k?) and {stored_why_not or 'none is stored'}" if healthy is None
            else f"the healthy capacity ({healthy.get('source')}) is {healthy.get('capacity_rps')}"))
    if under.spec.scale:
        healthy = {**healthy, "note": f"the healthy search ran one {under.spec.target} instance; "
                                      f"this one ran {under.spec.scale}"}
    if capacity is None:
        return StressFigures(under_fault=spec, healthy_capacity=healthy)
    held, broken = healthy.get("capacity_bracket_rps") or (None, None)
    return StressFigures(under_fault=spec, healthy_capacity=healthy,
                         capacity_ratio=round(capacity / healthy["capacity_rps"], 3),
                         capacity_ratio_bracket=[_ratio(bracket[0], broken), _ratio(bracket[1], held)])


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None

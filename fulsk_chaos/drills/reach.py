"""States a thorough fault search should reach at least once ("sometimes" properties, after
Antithesis): named conditions on the stack as a schedule left it, each observed from what the
schedule runner already knows after every step (the faults active, the one just healed, the
readings waiting to be stored, the answers users got), each scored 0..1 (1: reached; between: how
close, e.g. the backlog reached over the backlog wanted) and each with a hint of which next step
moves toward it, which the guided search (drills.guide) follows.

The Fulsk stack's states are declared in one place, drills.states; a conftest adds one with
the same decorator,

    @REACHABLE.item("cache-out-during-restore", "the cache out while ...")
    def _(m: Moment) -> float: ...

A search reports each item reached or not, with the first schedule that reached it: what a drill
explored, not only what it found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import FulskChaosError
from .steps import ScheduleStep

if TYPE_CHECKING:
    from ..stack import Stack

# What each kind does to what it hits, as the catalogue's states see it: "out" (it answers
# nothing, or drops what it is sent), "slow" (every answer late, however small), "throttle" (bulk
# slowed, a small answer barely: bandwidth, slicing, a slow close), "blip" (back at once, or only
# its contents changed), "load" (more work than usual). A kind not listed is "other": a test keeps
# every catalogue kind listed, so a new kind is placed here when it is added.
EFFECTS: dict[str, str] = {
    "kill": "out", "stop": "out", "pause": "out", "restart-empty": "out", "volume-loss": "out",
    "down": "out", "blackhole": "out", "reset-peer": "out", "limit-data": "out",
    "duplicate-client-id": "out",   # the impostor takes the backend's session from it, again and again
    "latency": "slow", "bandwidth": "throttle", "slicer": "throttle", "slow-close": "throttle",
    "restart": "blip", "flushall": "blip", "memory-pressure": "blip",
    "flood": "load", "malformed": "load", "connection-storm": "load", "stuck-websockets": "load",
}


@dataclass(frozen=True)
class Roles:
    """Which service plays which part in the Fulsk stack: found from what each serves, so a stack
    with other names (or another backend) is described alike."""
    backend: str
    database: str
    cache: str
    broker: str

    @classmethod
    def of(cls, stack: "Stack") -> "Roles":
        specs = [s for s in stack.catalogue.specs if not s.instrument]

        def serving(protocol: str) -> str:
            return next((s.name for s in specs if protocol in s.serves), "")
        database = stack.database
        backend = next((e.client for e in stack.topology.edges.values() if e.upstream == database), "")
        return cls(backend=backend, database=database, cache=serving("redis"), broker=serving("mqtt"))


@dataclass(frozen=True)
class FaultView:
    """A fault as the states see it: what it does (``effect``) to which services (``hits``: its
    service, or the upstream of its edge as the edge's client sees it) and on whose behalf
    (``client``: the edge's client; empty for a service fault)."""
    kind: str
    target: str
    effect: str
    hits: frozenset[str]
    client: str = ""

    @classmethod
    def of(cls, stack: "Stack", kind: str, target: str) -> "FaultView":
        edge = stack.topology.edges.get(target) if getattr(stack, "topology", None) else None
        effect = EFFECTS.get(kind, "other")
        if edge is not None:
            return cls(kind, target, effect, frozenset({edge.upstream}), edge.client)
        return cls(kind, target, effect, frozenset({target}))

    def does(self, effects: str | tuple[str, ...], service: str, *, by: str = "") -> bool:
        """This fault has one of ``effects`` on ``service`` (as ``by``, its client, sees it, for an
        edge; a service fault affects every client)."""
        effects = (effects,) if isinstance(effects, str) else effects
        return self.effect in effects and service in self.hits and (not by or not self.client or self.client == by)


@dataclass(frozen=True)
class Moment:
    """The stack as one step of a schedule left it."""
    schedule: tuple[ScheduleStep, ...]  # the steps so far, this one last
    active: tuple[FaultView, ...]         # faults still active after the step, oldest first
    roles: Roles
    healed: FaultView | None = None       # the fault this step healed
    backlog: int | None = None            # readings sent over a second before the heal, not stored (None: unknown)
    answered: int = 0                     # users' latest-reading answers (2xx) while the step lasted
    after_partial_heal: bool = False      # the step before healed a fault while others stayed active

    def any(self, effects: str | tuple[str, ...], service: str, *, by: str = "") -> bool:
        return any(f.does(effects, service, by=by) for f in self.active)

    def ingest_out(self, fault: FaultView | None = None) -> bool:
        """The path readings take to the database is cut at the backend or the broker (or between)."""
        r = self.roles
        faults = self.active if fault is None else (fault,)
        return any(f.does("out", r.backend) or f.does("out", r.broker, by=r.backend) or
                   (f.does("out", r.broker) and not f.client) for f in faults)

    def cache_out(self) -> bool:
        """Users' reads miss the cache: it answers nothing, or slower than the backend waits for it."""
        return self.any(("out", "slow"), self.roles.cache, by=self.roles.backend)

    def database_slow(self) -> bool:
        return self.any("slow", self.roles.database, by=self.roles.backend)


Score = Callable[[Moment], float]
Hint = Callable[[Moment, "FaultView | None"], bool]   # does this next step (None: a heal) move toward it?


@dataclass(frozen=True)
class Reachable:
    name: str
    description: str
    score: Score
    hint: Hint | None = None

    def measure(self, moment: Moment) -> float:
        return max(0.0, min(1.0, float(self.score(moment))))


@dataclass
class ReachCatalogue:
    """The named states a search should reach; ``item`` declares one."""
    items: dict[str, Reachable] = field(default_factory=dict)

    def item(self, name: str, description: str, *, hint: Hint | None = None) -> Callable[[Score], Score]:
        def register(score: Score) -> Score:
            if name in self.items:
                raise FulskChaosError(f"reachable state {name!r} is declared twice")
            self.items[name] = Reachable(name, description, score, hint)
            return score
        return register

    def __iter__(self) -> Iterator[Reachable]:
        return iter(self.items.values())

    def __len__(self) -> int:
        return len(self.items)

    def copy(self) -> "ReachCatalogue":
        return ReachCatalogue(dict(self.items))


REACHABLE = ReachCatalogue()

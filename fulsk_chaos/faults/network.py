"""Network faults, through the Toxiproxy on every edge: one kind per toxic, and a link cut.

A target is one edge (``backend-postgres``) or several at once (``backend-postgres,backend-redis``).
``stream`` picks the direction - ``downstream`` (server to client), ``upstream`` (client to
server) or ``both`` - and ``toxicity`` the fraction of connections affected. The rollback removes
exactly the toxics it added (and re-enables what it disabled); the injector then checks that no
proxy carries a toxic or is disabled.
"""
from __future__ import annotations

import secrets
from statistics import median
from typing import TYPE_CHECKING, Any

from ..errors import FaultError, InstrumentError
from ..verdict import Expectation
from .canary import Canary, Exchange, canary_for
from .catalogue import Family, Rollback
from .conditions import Watch, condition, reached

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("network")
STREAMS = {"downstream": ("downstream",), "upstream": ("upstream",), "both": ("upstream", "downstream")}
CANARY = "a canary through the edge's proxy, in its upstream's own protocol (no server sees a toxic: our client's view)"


def _edges(target: str) -> list[str]:
    return [e.strip() for e in target.split(",") if e.strip()]


# --- conditions: what each toxic does to a connection through the edge ------------------------------
class EdgeWatch(Watch):
    """A canary through each edge of the target, compared with what it saw just before the toxic;
    reached once every edge shows it."""
    what = ""

    def __init__(self, stack: "Stack", target: str, params: dict[str, Any]) -> None:
        super().__init__(stack, target, params)
        self.canaries: dict[str, Canary] = {}
        for edge in _edges(target):
            canary = canary_for(stack, edge=edge)
            if canary is None:
                raise FaultError(f"no canary speaks the protocol of {stack.topology.edges[edge].upstream} "
                                 f"(the upstream of {edge})")
            self.canaries[edge] = canary
        self.before: dict[str, Any] = {}
        self.shown: dict[str, Expectation] = {}

    @property
    def upstream_too(self) -> bool:
        return self.params.get("stream") in ("upstream", "both")

    def baseline(self) -> None:
        self.before = {edge: self.calm(canary) for edge, canary in self.canaries.items()}

    def calm(self, canary: Canary) -> Any:
        """What the edge does without the toxic (what ``judge`` compares with)."""
        return None

    def probe(self, canary: Canary) -> Exchange:
        raise NotImplementedError

    def judge(self, seen: Exchange, before: Any) -> Expectation:
        raise NotImplementedError

    def check(self, handle: Any) -> Expectation | None:
        if handle is None:
            return None  # the toxic is being added
        results = dict(self.shown)
        for edge, canary in self.canaries.items():
            if edge not in self.shown:
                results[edge] = judged = self.judge(self.probe(canary), self.before[edge])
                if judged.held:
                    self.shown[edge] = judged
        if len(results) == 1:
            return next(iter(results.values()))
        return reached(f"edges where {self.what}", len(self.shown), ">=", len(results),
                       detail="; ".join(f"{edge}: {e.describe()}" for edge, e in results.items()))


def _answered(seen: Exchange, what: str) -> Exchange:
    if not seen.complete:
        raise FaultError(f"the canary's {what} was not answered before the fault ({seen.describe()}): "
                         f"there is nothing to compare with")
    return seen


@condition("every connection through the edge is slower by the toxic's latency: a canary's round trip "
           "grew by at least half of latency_ms", CANARY)
class Slower(EdgeWatch):
    what = "the round trip grew by half the latency"

    def calm(self, canary: Canary) -> float:
        return median(_answered(canary.ping(), "ping").answered_ms for _ in range(3))

    def probe(self, canary: Canary) -> Exchange:
        return canary.ping(timeout_s=5 + 8 * self.params["latency_ms"] / 1000)

    def judge(self, seen: Exchange, before: float) -> Expectation:
        growth = round(seen.answered_ms - before, 1) if seen.answered_ms is not None else None
        return reached("growth of a canary's round trip through the edge", growth, ">=",
                       self.params["latency_ms"] / 2, "ms", detail=f"{before:.1f} ms before; now {seen.describe()}")


@condition("the edge carries at most the toxic's rate: a canary's answer came at most 1.5 x rate_kb_s", CANARY)
class Throttled(EdgeWatch):
    what = "the throughput fell to the rate"

    @property
    def size(self) -> int:
        return max(4096, int(self.params["rate_kb_s"] * 1024 / 2))  # half a second's worth at the rate

    def calm(self, canary: Canary) -> float:
        return self._rate(_answered(self.probe(canary), "bulk request"))

    def probe(self, canary: Canary) -> Exchange:
        return canary.bulk(self.size, self.size if self.upstream_too else 0,
                           timeout_s=5 + 8 * self.size / (self.params["rate_kb_s"] * 1024))

    @staticmethod
    def _rate(seen: Exchange) -> float:
        return round(seen.received / 1024 / max(seen.done_ms or 0.0, 0.001) * 1000, 1)

    def judge(self, seen: Exchange, before: float) -> Expectation:
        return reached("a canary's throughput through the edge", self._rate(seen) if seen.complete else None, "<=",
                       1.5 * self.params["rate_kb_s"], "KB/s", detail=f"{before:g} KB/s before; now {seen.describe()}")


@condition("the edge slices what it carries into small delayed pieces: a canary's bulk answer took at least "
           "half the toxic's delays (bytes / average_size x delay_us) longer", CANARY)
class Sliced(EdgeWatch):
    what = "answers were slowed by slicing"
    size = 8 * 1024  # 512 slices of 16 bytes: a quarter second at the default delay (more, as timers go)

    def calm(self, canary: Canary) -> Exchange:
        return min((_answered(self.probe(canary), "bulk request") for _ in range(3)), key=lambda e: e.done_ms or 0.0)

    def probe(self, canary: Canary) -> Exchange:
        return canary.bulk(self.size, self.size if self.upstream_too else 0, timeout_s=30)

    def judge(self, seen: Exchange, before: Exchange) -> Expectation:
        stream = self.params.get("stream", "downstream")
        sliced = (before.received if stream != "upstream" else 0) + (self.size if self.upstream_too else 0)
        delays_ms = sliced / self.params["average_size"] * self.params["delay_us"] / 1000
        growth = round(seen.done_ms - before.done_ms, 1) if seen.complete and seen.done_ms is not None else None
        return reached("growth of a canary's bulk answer through the edge", growth, ">=", round(delays_ms / 2, 1),
                       "ms", detail=f"{before.done_ms:.1f} ms for {before.received} bytes before; "
                                    f"now {seen.describe()}")


@condition("closing a connection through the edge is delayed: a canary's close came at least half of "
           "delay_ms later", CANARY)
class SlowClose(EdgeWatch):
    what = "closes were delayed"

    def calm(self, canary: Canary) -> float:
        seen = _answered(canary.goodbye(), "goodbye")
        return seen.close_ms or 0.0

    def probe(self, canary: Canary) -> Exchange:
        return canary.goodbye(timeout_s=5 + 2 * self.params["delay_ms"] / 1000)

    def judge(self, seen: Exchange, before: float) -> Expectation:
        growth = round(seen.close_ms - before, 1) if seen.close_ms is not None else None
        return reached("delay of a canary's close through the edge", growth, ">=", self.params["delay_ms"] / 2,
                       "ms", detail=f"closed {before:.1f} ms after its answer before; now {seen.describe()}")


@condition("the edge closes a connection once it carried limit_bytes: a canary's bigger answer was cut "
           "after at most that many bytes", CANARY)
class Cut(EdgeWatch):
    what = "answers were cut at the limit"

    @property
    def size(self) -> int:
        return 4 * self.params["limit_bytes"]

    def calm(self, canary: Canary) -> int:
        seen = _answered(self.probe(canary), "bulk request")
        if seen.received <= self.params["limit_bytes"]:
            raise FaultError(f"the canary's answer ({seen.received} bytes) is within the limit: it cannot show a cut")
        return seen.received

    def probe(self, canary: Canary) -> Exchange:
        return canary.bulk(self.size, self.size if self.upstream_too else 0)

    def judge(self, seen: Exchange, before: int) -> Expectation:
        cut = not seen.complete or seen.received < 0.9 * before
        return reached("bytes of a canary's answer through the edge", seen.received if cut or seen.complete else None,
                       "<=", self.params["limit_bytes"], "bytes",
                       detail=f"{before} bytes before; now {'cut: ' if cut else ''}{seen.describe()}")


HOLD_S = 1.0  # a canary unanswered this long on an open connection: the edge swallows what it carries


@condition(f"what the edge carries vanishes: a canary's request got no answer for {HOLD_S:g} s on a "
           f"connection that stayed open", CANARY)
class Swallowed(EdgeWatch):
    what = "requests went unanswered"

    def calm(self, canary: Canary) -> float:
        return _answered(canary.ping(), "ping").answered_ms or 0.0

    def probe(self, canary: Canary) -> Exchange:
        return canary.ping(timeout_s=HOLD_S)

    def judge(self, seen: Exchange, before: float) -> Expectation:
        return reached("a canary's wait for an answer through the edge", round(seen.silent_ms or 0.0), ">=",
                       0.95 * HOLD_S * 1000, "ms", detail=f"answered in {before:.1f} ms before; now {seen.describe()}")


@condition("connections through the edge are reset: a canary's connection ended with a TCP RST", CANARY)
class Reset(EdgeWatch):
    what = "connections were reset"

    def calm(self, canary: Canary) -> float:
        return _answered(canary.ping(), "ping").answered_ms or 0.0

    def probe(self, canary: Canary) -> Exchange:
        return canary.ping(timeout_s=2 + self.params["after_ms"] / 1000, until_close=True)

    def judge(self, seen: Exchange, before: float) -> Expectation:
        return reached("canary connections reset", int(seen.reset), ">=", 1, detail=f"now {seen.describe()}")


@condition("the edge is cut: the kernel refuses a connection to its listen port",
           "a connection to the edge's listen port (the kernel's refusal)")
class Refused(EdgeWatch):
    what = "connections were refused"

    def probe(self, canary: Canary) -> Exchange:
        return canary.ping(timeout_s=2)

    def judge(self, seen: Exchange, before: Any) -> Expectation:
        return reached("connections to the edge refused", int(seen.refused), ">=", 1, detail=f"now {seen.describe()}")


def add_toxic(stack: "Stack", target: str, toxic: str, attributes: dict[str, Any], stream: str,
              toxicity: float) -> Rollback:
    """Add one toxic per edge and direction; the rollback removes each of them (and only them)."""
    if stream not in STREAMS:
        raise FaultError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    if not 0 < toxicity <= 1:
        raise FaultError(f"toxicity is the fraction of connections affected, in (0, 1]; got {toxicity!r}")
    proxy = stack.toxiproxy
    if proxy is None:
        raise FaultError("this stack has no Toxiproxy: network faults need one on every edge")
    added: list[tuple[str, str]] = []

    def rollback() -> None:
        errors = []
        for edge, name in reversed(added):
            try:
                proxy.remove_toxic(edge, name)
            except InstrumentError:
                raise  # the instrument, not the stack: the others wait for the heal's restart of it
            except Exception as exc:  # noqa: BLE001 - remove the others; the check reports what is left
                if "404" not in str(exc):  # already gone: someone (a runbook's fix) removed it first
                    errors.append(f"{edge}/{name}: {exc}")
        if errors:
            raise FaultError("could not remove toxics: " + "; ".join(errors))
    try:
        for edge in _edges(target):
            for direction in STREAMS[stream]:
                name = f"fulsk-chaos-{toxic}-{direction}-{secrets.token_hex(3)}"  # two faults may share an edge
                proxy.add_toxic(edge, toxic, attributes, stream=direction, toxicity=toxicity, name=name)
                added.append((edge, name))
    except BaseException:
        rollback()  # half-injected on several edges: undo what was added before failing
        raise
    return rollback


@family.kind("latency", on_service=False, condition=Slower, search_params={"latency_ms": 300, "jitter_ms": 50})
def latency(stack: "Stack", target: str, latency_ms: int = 300, jitter_ms: int = 50, stream: str = "downstream",
            toxicity: float = 1.0) -> Rollback:
    """Delay data by latency ± jitter on every connection of the edge."""
    return add_toxic(stack, target, "latency", {"latency": latency_ms, "jitter": jitter_ms}, stream, toxicity)


@family.kind("bandwidth", on_service=False, condition=Throttled)
def bandwidth(stack: "Stack", target: str, rate_kb_s: int = 16, stream: str = "downstream",
              toxicity: float = 1.0) -> Rollback:
    """Limit the edge to rate_kb_s kilobytes per second."""
    return add_toxic(stack, target, "bandwidth", {"rate": rate_kb_s}, stream, toxicity)


@family.kind("blackhole", on_service=False, condition=Swallowed)
def blackhole(stack: "Stack", target: str, stream: str = "both", toxicity: float = 1.0) -> Rollback:
    """Connections stay open and data vanishes (a timeout toxic that never closes them): the
    failure that hangs every client without its own timeouts."""
    return add_toxic(stack, target, "timeout", {"timeout": 0}, stream, toxicity)


@family.kind("reset-peer", on_service=False, condition=Reset)
def reset_peer(stack: "Stack", target: str, after_ms: int = 0, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Reset connections (TCP RST) after_ms after they carry data: a peer crash, a firewall cutting in."""
    return add_toxic(stack, target, "reset_peer", {"timeout": after_ms}, stream, toxicity)


@family.kind("slow-close", on_service=False, condition=SlowClose)
def slow_close(stack: "Stack", target: str, delay_ms: int = 2000, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Delay the closing of connections by delay_ms."""
    return add_toxic(stack, target, "slow_close", {"delay": delay_ms}, stream, toxicity)


@family.kind("slicer", on_service=False, condition=Sliced)
def slicer(stack: "Stack", target: str, average_size: int = 16, size_variation: int = 8, delay_us: int = 100,
           stream: str = "downstream", toxicity: float = 1.0) -> Rollback:
    """Slice data into small packets with delays between them: every protocol's framing is tested."""
    return add_toxic(stack, target, "slicer",
                     {"average_size": average_size, "size_variation": size_variation, "delay": delay_us},
                     stream, toxicity)


@family.kind("limit-data", on_service=False, condition=Cut)
def limit_data(stack: "Stack", target: str, limit_bytes: int = 4096, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Close each connection after it has carried limit_bytes bytes."""
    return add_toxic(stack, target, "limit_data", {"bytes": limit_bytes}, stream, toxicity)


@family.kind("down", on_service=False, condition=Refused)
def down(stack: "Stack", target: str) -> Rollback:
    """Cut the edge: its listener is closed and its connections dropped (connection refused)."""
    proxy = stack.toxiproxy
    if proxy is None:
        raise FaultError("this stack has no Toxiproxy: network faults need one on every edge")
    edges = _edges(target)
    cut: list[str] = []

    def rollback() -> None:
        for edge in cut:
            proxy.set_enabled(edge, True)
    try:
        for edge in edges:
            proxy.set_enabled(edge, False)
            cut.append(edge)
    except BaseException:
        rollback()
        raise
    return rollback

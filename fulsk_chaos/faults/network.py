"""Network faults, through the Toxiproxy on every edge: one kind per toxic, and a link cut.

A target is one edge (``backend-postgres``) or several at once (``backend-postgres,backend-redis``).
``stream`` picks the direction - ``downstream`` (server to client), ``upstream`` (client to
server) or ``both`` - and ``toxicity`` the fraction of connections affected. The rollback removes
exactly the toxics it added (and re-enables what it disabled); the injector then checks that no
proxy carries a toxic or is disabled.
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from ..errors import FaultError
from .catalogue import Family, Rollback

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("network")
STREAMS = {"downstream": ("downstream",), "upstream": ("upstream",), "both": ("upstream", "downstream")}


def _edges(target: str) -> list[str]:
    return [e.strip() for e in target.split(",") if e.strip()]


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


@family.kind("latency", on_service=False)
def latency(stack: "Stack", target: str, latency_ms: int = 300, jitter_ms: int = 50, stream: str = "downstream",
            toxicity: float = 1.0) -> Rollback:
    """Delay data by latency ± jitter on every connection of the edge."""
    return add_toxic(stack, target, "latency", {"latency": latency_ms, "jitter": jitter_ms}, stream, toxicity)


@family.kind("bandwidth", on_service=False)
def bandwidth(stack: "Stack", target: str, rate_kb_s: int = 16, stream: str = "downstream",
              toxicity: float = 1.0) -> Rollback:
    """Limit the edge to rate_kb_s kilobytes per second."""
    return add_toxic(stack, target, "bandwidth", {"rate": rate_kb_s}, stream, toxicity)


@family.kind("blackhole", on_service=False)
def blackhole(stack: "Stack", target: str, stream: str = "both", toxicity: float = 1.0) -> Rollback:
    """Connections stay open and data vanishes (a timeout toxic that never closes them): the
    failure that hangs every client without its own timeouts."""
    return add_toxic(stack, target, "timeout", {"timeout": 0}, stream, toxicity)


@family.kind("reset-peer", on_service=False)
def reset_peer(stack: "Stack", target: str, after_ms: int = 0, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Reset connections (TCP RST) after_ms after they carry data: a peer crash, a firewall cutting in."""
    return add_toxic(stack, target, "reset_peer", {"timeout": after_ms}, stream, toxicity)


@family.kind("slow-close", on_service=False)
def slow_close(stack: "Stack", target: str, delay_ms: int = 2000, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Delay the closing of connections by delay_ms."""
    return add_toxic(stack, target, "slow_close", {"delay": delay_ms}, stream, toxicity)


@family.kind("slicer", on_service=False)
def slicer(stack: "Stack", target: str, average_size: int = 16, size_variation: int = 8, delay_us: int = 100,
           stream: str = "downstream", toxicity: float = 1.0) -> Rollback:
    """Slice data into small packets with delays between them: every protocol's framing is tested."""
    return add_toxic(stack, target, "slicer",
                     {"average_size": average_size, "size_variation": size_variation, "delay": delay_us},
                     stream, toxicity)


@family.kind("limit-data", on_service=False)
def limit_data(stack: "Stack", target: str, limit_bytes: int = 4096, stream: str = "downstream",
               toxicity: float = 1.0) -> Rollback:
    """Close each connection after it has carried limit_bytes bytes."""
    return add_toxic(stack, target, "limit_data", {"bytes": limit_bytes}, stream, toxicity)


@family.kind("down", on_service=False)
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

"""The observers an experiment watches the stack through, as users and inverters meet it: the
fleet publishing through its proxied edge, the probe asking through the frontend, a dashboard's
live feed; and the least evidence a verdict rests on."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import Settings
from ..contract import Contract
from ..probes import Fleet, LiveFeed, Probe, Target
from ..stack import Stack


@dataclass(frozen=True)
class Needs:
    """The least evidence a verdict rests on; below it the verdict is ``error``, never ``pass``."""
    samples_per_window: int = 10   # probe samples of each target, and API answers, in each window
    acked_per_window: int = 10     # readings the broker acknowledged in each steady window
    judged_per_window: int = 5     # latest-reading answers that could be judged for freshness
    acked_during_fault: int = 10   # readings the broker acknowledged while the fault was active
    samples_during_fault: int | None = None  # API samples while it was active (default: samples_per_window)


HISTORY_S = 30.0  # how far back the probe asks for an inverter's readings, as a dashboard chart does
BOUND_S = 1800.0  # observers stop by themselves after this long: longer than any scenario without a budget


def bound_s(budget_s: float | None = None) -> float:
    """How long the observers run before they stop by themselves: half an hour, and for a search
    with a time budget that budget twice over too (the round under way when it is spent, the
    shrinking and the replays follow it). Bounded at 15 minutes, the fleet of a 15-minute explore
    run stopped before its steady state after: no evidence, an error."""
    return BOUND_S + 2 * (budget_s or 0.0)


def user_targets(settings: Settings, inverter_ids: list[str], contract: Contract = Contract()) -> list[Target]:
    """What the probe asks for through the frontend, on the paths the backend's contract names:
    its health, the API (the inverter list, unless ``probe.api_path`` names another path), for
    each inverter in turn its latest reading and its recent history, and the per-site totals."""
    ids = tuple(inverter_ids)
    reads = contract.reads
    api_path = settings.probe.api_path or reads.listing.path
    listing = api_path == reads.listing.path  # its answer is then judged for completeness
    return [Target("health", contract.health.path, json=True, meta={"health": asdict(contract.health)}),
            Target("api", api_path, json=listing, meta={"listing": True} if listing else {}),
            Target("latest", reads.latest.path, json=True, inverters=ids),
            Target("history", reads.history.path, json=True, inverters=ids, span_s=HISTORY_S,
                   time_format=reads.history.units.timestamp),
            *([Target("generation", reads.generation.path, json=True)] if reads.generation.path else [])]


def make_fleet(stack: Stack, settings: Settings, max_duration_s: float = BOUND_S) -> Fleet:
    """Simulated inverters publishing through their own proxied edge (not started)."""
    endpoints, fleet = stack.endpoints, settings.fleet
    return Fleet(endpoints.mqtt_host, endpoints.mqtt_port, inverters=fleet.inverters, sites=fleet.sites,
                 interval_s=fleet.interval_s, contract=stack.contract, max_duration_s=max_duration_s)


def make_probe(stack: Stack, settings: Settings, fleet: Fleet, max_duration_s: float = BOUND_S) -> Probe:
    """The user-side probe through the frontend, asking for the fleet's readings (not started)."""
    return Probe(stack.endpoints.frontend_url, user_targets(settings, fleet.inverter_ids, stack.contract),
                 interval_s=settings.probe.interval_s, timeout_s=settings.probe_timeout_s,
                 max_duration_s=max_duration_s)


def make_feed(stack: Stack, max_duration_s: float = BOUND_S) -> LiveFeed:
    """A dashboard's live-feed client through the frontend (not started)."""
    return LiveFeed(stack.endpoints.live_feed_url, contract=stack.contract, max_duration_s=max_duration_s)

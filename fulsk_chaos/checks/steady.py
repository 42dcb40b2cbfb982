"""The steady-state hypothesis, as numbers: what 'the stack is fine' means to its users, from the
ops guide - answers in time and without errors, fresh and correct data, a live feed that delivers
within its baseline - each a reusable expectation, judged over one observation window.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..config import Settings
from ..figures import SteadyFigures
from ..probes import FleetRecord, Key, Samples
from ..probes.http import READS, quantile
from ..verdict import Evidence, Expectation, at_most, none_of
from .users import Served, answered_ok, judge_answer

LIVE_GRACE_S = 1.0  # readings acknowledged this close to a window's end may still be on their way
# The latency percentiles of the hypothesis. Over one short window a single stall of the host breaks
# them (the live feed's p95 over 3 s at 50 readings/s: any 150 ms stall), so an "after" window that
# fails on them alone is extended (``percentiles_only``); one that broke anything else is not.
API_P95, LIVE_P95 = "api p95", "live feed delay p95"


@dataclass(frozen=True)
class Observation:
    """What users and inverters saw in one window (``start``..``end``, monotonic seconds)."""
    phase: str
    start: float
    end: float
    samples: Samples             # the probe's samples started in the window, hangs included
    fleet: FleetRecord           # what the fleet sent and the broker acknowledged (at judging time)
    arrivals: dict[Key, float]   # first arrival of each reading on the live feed

    @cached_property
    def served(self) -> list[Served]:
        """Every data answer of the window that could be judged (latest reading, history, list)."""
        judged = (judge_answer(s, self.fleet) for s in self.samples)
        return [s for s in judged if s is not None]

    @cached_property
    def live_delays_ms(self) -> tuple[int, list[float]]:
        """(readings acknowledged in the window, early enough to have arrived; their feed delays)."""
        due = self.fleet.acked_between(self.start, self.end - LIVE_GRACE_S)
        delays = [(self.arrivals[m.key] - m.sent_at) * 1000 for m in due if m.key in self.arrivals]
        return len(due), delays


def steady_state(obs: Observation, settings: Settings, *, judge_health: bool = True) -> list[Expectation]:
    """``judge_health=False`` while a dependency is known to be faulted: /health should then say so (the
    fault window judges that), and only what users get is held to the steady state."""
    p = f"{obs.phase}: "
    api, health = obs.samples.target("api"), obs.samples.target("health")
    reads = obs.samples.target(*READS)
    served = obs.served
    stale = [s for s in served if s.wrong is None and not s.fresh(settings.steady_state.max_staleness_s)]
    staleness = [s.staleness_s for s in served if s.staleness_s is not None]
    due, delays = obs.live_delays_ms
    judged = len([s for s in served if s.wrong is None])
    health_check = [at_most(p + "health not ok", health.error_rate(), settings.alerts.error_rate,
                            evidence={"samples": len(health)})] if judge_health else []
    return [
        at_most(p + API_P95, api.quantile_ms(0.95), settings.baselines.api_response_ms, "ms",
                evidence={"samples": len(api)}),
        at_most(p + "api error rate", reads.error_rate(answered_ok), settings.alerts.error_rate,
                evidence={"samples": len(reads)}),
        *health_check,
        no_unanswered(p, obs.samples),
        at_most(p + f"stale answers (newest reading > {settings.steady_state.max_staleness_s:g} s behind the broker)",
                len(stale) / judged if judged else None, settings.alerts.error_rate,
                evidence={"judged": judged, "p95_staleness_s": _round(quantile(staleness, 0.95)),
                          "max_staleness_s": _round(max(staleness, default=float("nan")))},
                detail=f"{len(stale)} of {judged} answers stale, the worst "
                       f"{max(staleness, default=0):.1f} s behind" if stale else ""),
        no_wrong_answers(p, served),
        contract_fits(p, served),
        at_most(p + "live feed missed", (due - len(delays)) / due if due else None, settings.alerts.error_rate,
                evidence={"due": due, "arrived": len(delays)},
                detail=f"{due - len(delays)} of {due} readings never reached the live feed" if due > len(delays) else ""),
        at_most(p + LIVE_P95, quantile(delays, 0.95), settings.baselines.websocket_latency_ms, "ms",
                evidence={"arrived": len(delays)}),
    ]


def percentiles_only(phase: str, expectations: list[Expectation]) -> list[Expectation]:
    """The latency percentiles of ``phase`` that failed, when nothing else of the window did; else none."""
    failed = [e for e in expectations if e.held is False]
    percentiles = [e for e in failed if e.name in (f"{phase}: {API_P95}", f"{phase}: {LIVE_P95}")]
    return percentiles if percentiles and len(percentiles) == len(failed) else []


def no_unanswered(prefix: str, samples: Samples) -> Expectation:
    """No request left without an answer for the alert threshold (in flight that long included)."""
    missing = [s for s in samples if not s.answered]
    return none_of(prefix + "unanswered (no answer within the alert threshold)", len(missing),
                   evidence={"samples": len(samples)},
                   detail="; ".join(f"{s.target}: {s.error}" for s in missing[:3]))


def contract_fits(prefix: str, served: list[Served]) -> Expectation:
    """Each read's answers can be read as the backend's contract says, at least once: a read none
    of whose answers can be is a contract that does not describe the backend (a wrong JSON path,
    a field's name), an error of the drill's set-up, not a finding about the stack."""
    by_read: dict[str, list[Served]] = {}
    for s in served:
        by_read.setdefault(s.sample.target, []).append(s)
    unfit = sorted(read for read, answers in by_read.items() if all(a.unreadable for a in answers))
    return Expectation(prefix + "reads the contract cannot read (none of their answers)", len(unfit), "==", 0,
                       evidence={"reads": len(by_read)}, kind="contract",
                       detail="; ".join(f"{read}: {next(a.wrong for a in by_read[read])}" for read in unfit[:3]))


def no_wrong_answers(prefix: str, served: list[Served]) -> Expectation:
    """No data answer that is not the truth: wrong data is never acceptable, not even mid-fault."""
    wrong = [s for s in served if s.wrong is not None]
    return none_of(prefix + "wrong answers (not the reading that was sent)", len(wrong),
                   evidence={"judged": len(served)}, detail="; ".join(s.wrong for s in wrong[:3]))


def steady_evidence(obs: Observation, *, samples: int, acked: int, judged: int) -> list[Evidence]:
    p = f"{obs.phase}: "
    per_target = min((len(obs.samples.target(t)) for t in ("health", "api", "latest", "history")), default=0)
    return [
        Evidence(p + "probe samples per target", per_target, samples),
        Evidence(p + "API answers", sum(s.answered for s in obs.samples.target("api")), samples),
        Evidence(p + "readings acknowledged by the broker", len(obs.fleet.acked_between(obs.start, obs.end)), acked),
        Evidence(p + "data answers judged (latest, history, list)", len([s for s in obs.served if s.wrong is None]),
                 judged),
    ]


def steady_figures(obs: Observation, **more: Any) -> SteadyFigures:
    """The window's figures; ``more``: what the experiment adds (the host's pressure, ...)."""
    api = obs.samples.target("api")
    staleness = [s.staleness_s for s in obs.served if s.staleness_s is not None]
    _, delays = obs.live_delays_ms
    return SteadyFigures(obs.phase, p95_ms=api.quantile_ms(0.95), error_rate=api.error_rate(),
                         staleness_p95_s=quantile(staleness, 0.95), live_delay_p95_ms=quantile(delays, 0.95), **more)


def _round(value: float) -> float | None:
    return None if value != value else round(value, 3)

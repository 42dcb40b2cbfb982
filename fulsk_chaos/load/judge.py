"""A load window's figures judged against the ops guide: its performance baselines, its alert
thresholds, and the generator's own honesty.

Baselines are judged on p95 (a baseline most users get), the HTTP response-time alert on p99
(what an alert on a latency histogram fires on); error rates over every HTTP request; CPU as the
mean share of the machine and memory as the peak share, per service.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..figures import LoadFigures, LoadWindowFigures
from ..verdict import Evidence, Expectation, at_most
from .resources import UsageSummary
from .run import LoadResult
from .samples import Figures

# Which groups of samples the profile's users produce, and so which must have evidence.
_PRODUCED_BY = {"page load": "dashboard", "api": "api", "websocket": "viewers", "mqtt publish": "inverters"}


@dataclass(frozen=True)
class Judged:
    expectations: list[Expectation]
    evidence: list[Evidence]
    figures: list[LoadWindowFigures | LoadFigures]

    @property
    def load(self) -> dict[str, Any]:
        """The first window's figures per request group."""
        return next(f.load for f in self.figures if isinstance(f, LoadWindowFigures))


def _p(name: str, phase: str) -> str:
    return f"{phase}: {name}" if phase else name


def baseline_expectations(figures: dict[str, Figures], settings: Settings, phase: str = "") -> list[Expectation]:
    """The ops guide's baselines and application alert thresholds on the groups measured."""
    b, a = settings.baselines, settings.alerts
    found = []
    for group, label, limit in (("page load", "page load p95 (baseline)", b.page_load_ms),
                                ("api", "API response p95 (baseline)", b.api_response_ms),
                                ("websocket", "WebSocket latency p95 (baseline)", b.websocket_latency_ms)):
        if group in figures:
            f = figures[group]
            found.append(at_most(_p(label, phase), f.p95_ms, limit, "ms",
                                 evidence={"requests": f.count, "failures": f.failures},
                                 detail=f"p50 {f.p50_ms} ms, p99 {f.p99_ms} ms"))
    if "http" in figures:
        f = figures["http"]
        evidence = {"requests": f.count, "failures": f.failures}
        found.append(at_most(_p("HTTP response p99 (alert threshold)", phase), f.p99_ms, a.http_response_ms, "ms",
                             evidence=evidence))
        found.append(at_most(_p("HTTP error rate (alert threshold)", phase), f.error_rate, a.error_rate,
                             evidence=evidence))
    if "websocket" in figures and figures["websocket"].failures:
        f = figures["websocket"]
        found.append(at_most(_p("live feed error rate (alert threshold)", phase), f.error_rate, a.error_rate,
                             evidence={"events": f.count, "failures": f.failures}))
    if "mqtt publish" in figures:
        f = figures["mqtt publish"]
        found.append(at_most(_p("MQTT publishes unacknowledged or refused (error alert)", phase), f.error_rate,
                             a.error_rate, evidence={"publishes": f.count, "failures": f.failures}))
    return found


def resource_expectations(usage: dict[str, UsageSummary], settings: Settings, phase: str = "") -> list[Expectation]:
    found = []
    for name, u in sorted(usage.items()):
        if name.startswith("generator"):
            continue
        found.append(at_most(_p(f"{name} CPU, mean share of the machine (alert threshold)", phase),
                             round(u.cpu_mean_percent, 1), settings.alerts.cpu_percent, "%",
                             evidence={"samples": u.samples}, detail=f"peak {u.cpu_max_cores:.2f} cores"))
        found.append(at_most(_p(f"{name} memory, peak share of the machine (alert threshold)", phase),
                             round(u.memory_max_percent, 2), settings.alerts.memory_percent, "%",
                             evidence={"samples": u.samples}))
    return found


def generator_validity(usage: dict[str, UsageSummary], settings: Settings, phase: str = "") -> list[Expectation]:
    """Each generator process (single-threaded gevent) must have had CPU to spare: one that was
    busy, or runnable and waiting for a core (on a machine it shares with the stack), sends late
    and times late, and its figures describe itself."""
    limit = 100 * settings.load.generator_max_cpu
    name = _p("load generator CPU demand (used + waited for), busiest process", phase)
    workers = {n: u for n, u in usage.items() if n.startswith("generator")}
    if not workers:
        return [Expectation(name, None, "<=", limit, "% of a core", kind="validity",
                            detail="the generator's CPU was not sampled")]
    busiest_name, busiest = max(workers.items(), key=lambda kv: kv[1].demand_mean_cores)
    return [Expectation(name, round(100 * busiest.demand_mean_cores, 1), "<=", limit, "% of a core", kind="validity",
                        evidence={n: {"used": round(100 * u.cpu_mean_cores, 1), "demand": round(100 * u.demand_mean_cores, 1)}
                                  for n, u in workers.items()},
                        detail=f"{busiest_name} was saturated (used {100 * busiest.cpu_mean_cores:.0f} % of a core): "
                               f"the figures measure the generator, not the stack; use more workers (--workers), "
                               f"fewer users, or a generator on a machine of its own")]


def db_expectation(result: LoadResult, settings: Settings) -> Expectation:
    times = result.db_times()
    name = "database query time, slowest statement's mean (baseline)"
    if times is None:
        return at_most(name, None, settings.baselines.db_query_ms, "ms",
                       detail="pg_stat_statements could not be read")
    if not times:
        return at_most(name, None, settings.baselines.db_query_ms, "ms", detail="no statement of the stack ran")
    slowest = times[0]
    return at_most(name, round(slowest.mean_ms, 3), settings.baselines.db_query_ms, "ms",
                   evidence={"statements": len(times), "calls": sum(t.calls for t in times)},
                   detail=f"{slowest.calls}x {slowest.query}")


def evidence(figures: dict[str, Figures], result: LoadResult, minimum: int, phase: str = "") -> list[Evidence]:
    profile = result.profile
    driven = {"dashboard": profile.dashboard.users, "api": profile.api.users if profile.api.rate or profile.api.steps
              else 0, "viewers": profile.viewers.users, "inverters": profile.inverters.users}
    found = []
    for group, source in _PRODUCED_BY.items():
        if driven[source] or (group == "api" and profile.dashboard.users):
            count = figures[group].count if group in figures else 0
            found.append(Evidence(_p(f"{group} samples", phase), count, minimum))
    return found


def window(result: LoadResult, settings: Settings, start: float, end: float, phase: str = "",
           minimum: int = 10, resources: bool = True, finished: bool = False) -> Judged:
    """Judge one window of the run (time.time() bounds; ``finished``: only requests answered
    within it, see ``LoadSamples.window``)."""
    duration = max(end - start, 1e-9)
    samples = result.samples.window(start, end, finished=finished)
    figures = samples.figures(duration)
    usage = result.resources.summaries(start, end)
    expectations = baseline_expectations(figures, settings, phase)
    if resources:
        expectations += resource_expectations(usage, settings, phase)
    expectations += generator_validity(usage, settings, phase)
    measured = LoadWindowFigures(phase, load={g: f.to_json() for g, f in figures.items()},
                                 resources={n: u.to_json() for n, u in usage.items()}, load_window_s=round(duration, 2))
    return Judged(expectations, evidence(figures, result, minimum, phase), [measured])


def figures_for_history(result: LoadResult) -> dict[str, Any]:
    """What a run stores in its history and is compared on: per group and per request name."""
    samples = result.samples.window(result.measured_from, result.measured_to)
    return {"profile": result.profile.name, "fingerprint": result.profile.fingerprint,
            "duration_s": round(result.duration_s, 1),
            "groups": {g: f.to_json() for g, f in samples.figures(result.duration_s).items()},
            "requests": {n: f.to_json() for n, f in samples.by_name(result.duration_s).items()}}


def around_faults(result: LoadResult, settings: Settings, faults: list[tuple[str, float, float | None]],
                  steady: list[float], recovered_at: float | None = None, minimum: int = 5) -> Judged:
    """Chaos under load: the baselines before the first fault and after the stack is steady again
    are expectations; during each fault window they are shown (the scenario's own fault-window
    expectations say what users may suffer meanwhile). "Before" starts with the scenario's first
    steady window, "after" with its first steady window once every fault was rolled back (else
    when it recovered, else at the last rollback): where its hypothesis says the stack is steady.
    ``steady`` are the starts of the scenario's steady windows. Times are time.time()."""
    end = result.measured_to
    first = min((f[1] for f in faults), default=end)
    last = max((f[2] or end for f in faults), default=result.measured_from)
    start = max(result.measured_from, min(steady, default=0.0))
    after = min((t for t in steady if t >= last), default=max(last, recovered_at or last))
    expectations, found_evidence, measured = [], [], []
    phases = [("before", start, first, True)]
    seen: dict[str, int] = {}
    for label, s, e in faults:  # a schedule may fault the same target the same way again
        seen[label] = seen.get(label, 0) + 1
        phases.append((f"during {label}" + (f" #{seen[label]}" if seen[label] > 1 else ""), s, e or end, False))
    phases.append(("after", after, end, True))
    shown = {}
    for phase, a, b, judged in phases:
        if b - a < 1.0:
            if judged:  # no time under load on that side of the fault: nothing to judge it on
                found_evidence.append(Evidence(f"{phase}: seconds under load", 0, 1))
            continue
        part = window(result, settings, a, b, phase, minimum=minimum, finished=phase == "before")
        measured += part.figures
        if judged:
            expectations += part.expectations
            found_evidence += part.evidence
        else:
            shown[phase] = {e.name.split(": ", 1)[1]: {"measured": e.measured, "threshold": e.threshold,
                                                       "held": e.held} for e in part.expectations}
    return Judged(expectations, found_evidence, [*measured, LoadFigures(load_baselines_during_faults=shown)])

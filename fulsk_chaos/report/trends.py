"""trends.html: how each scenario's figures moved across runs (API p95, error rate, recovery
time, readings lost, capacity, RTO and RPO), read from the runs kept in the report directory
(each run's results.json is its entry in the history). Written beside the runs after each run;
``fulsk-chaos trends REPORT_DIR`` writes it again. Self-contained, like index.html."""
from __future__ import annotations

import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Callable

from ..figures import (BlindSpotFigures, FaultWindowFigures, Figures, IncidentFigures, LedgerFigures, LoadWindowFigures, Measured, RecoveryFigures,
                       RestoreFigures, RpoFigures, StressFigures)
from .svg import STYLE, inline, pyplot

FILENAME = "trends.html"
# figure -> (label, unit, how to read it from a scenario's figures)
FIGURES: dict[str, tuple[str, str, Callable[[Measured], Any]]] = {
    "p95": ("API p95", "ms", lambda m: _of(m, FaultWindowFigures, "p95_ms") or _api(m, "p95_ms")),
    "error_rate": ("API error rate", "", lambda m: v if (v := _of(m, FaultWindowFigures, "error_rate")) is not None
                   else _api(m, "error_rate")),
    "recovery": ("recovery", "s", lambda m: _of(m, RecoveryFigures, "recovery_s")),
    "lost": ("readings lost", "", lambda m: _of(m, LedgerFigures, "lost")),
    "capacity": ("capacity", "req/s", lambda m: _of(m, StressFigures, "capacity_rps")),
    "rto": ("RTO", "s", lambda m: _of(m, RestoreFigures, "rto_s")),
    "rpo": ("RPO", "s", lambda m: _of(m, RpoFigures, "rpo_s")),
    "unpaged": ("harm no page covered", "s", lambda m: _unpaged(m)),
    # an incident replay: the fault to the page, and to the alert resolved by its runbook
    "detect": ("time to detect", "s", lambda m: _of(m, IncidentFigures, "detect_s")),
    "resolve": ("time to resolve", "s", lambda m: _of(m, IncidentFigures, "resolve_s")),
}


def _unpaged(m: Measured) -> float | None:
    """Seconds of harm no page covered, over the scenario's faults (checks.blindspots)."""
    found = m.get(BlindSpotFigures)
    rows = [r for r in (found.blind_spots if found else None) or [] if r.get("unpaged_s") is not None]
    return round(sum(max(r["unpaged_s"].values(), default=0.0) for r in rows), 2) if rows else None


def _of(m: Measured, family: type[Figures], name: str) -> Any:
    found = m.get(family)
    return None if found is None else getattr(found, name)


def _api(m: Measured, name: str) -> Any:
    """A load run's API figure (the whole run's window)."""
    load = m.get(LoadWindowFigures)
    return (((load.load if load else None) or {}).get("api") or {}).get(name)


RUNS = 60  # the newest runs shown


def history(report_dir: Path, runs: int = RUNS) -> dict[str, list[dict[str, Any]]]:
    """scenario -> its runs (of the newest ``runs``), oldest first: when, the run, its verdict and figures."""
    found: dict[str, list[dict[str, Any]]] = {}
    for results in sorted(report_dir.glob("*/results.json"))[-runs:]:
        try:
            run = json.loads(results.read_text())
            when = datetime.fromisoformat(str(run["started_at"]))
        except (ValueError, KeyError, OSError):
            continue  # a run still being written, or not one of ours
        for s in run.get("scenarios") or []:
            m = Measured.read(s.get("measurements") or {})
            figures = {k: read(m) for k, (_, _, read) in FIGURES.items()}
            found.setdefault(s["name"], []).append({"when": when, "run": run.get("run_id"), "verdict": s.get("verdict"),
                                                    **{k: v for k, v in figures.items() if isinstance(v, (int, float))}})
    for runs in found.values():
        runs.sort(key=lambda r: r["when"])
    return found


def render(report_dir: Path) -> str:
    runs = history(report_dir)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>fulsk-chaos trends</title>"
             f"<style>{STYLE}</style></head><body><h1>fulsk-chaos trends</h1>",
             f"<p class=meta>{len(runs)} scenarios, from the runs in {escape(str(report_dir))}</p>"]
    for name, entries in sorted(runs.items()):
        shown = [k for k in FIGURES if any(k in e for e in entries)]
        verdicts = " ".join(f"<span class='verdict v-{escape(str(e['verdict']))}' title='{escape(str(e['run']))}'>"
                            f"{escape(str(e['verdict'])[:1])}</span>" for e in entries[-30:])
        parts.append(f"<section class=scenario><h2>{escape(name)}</h2><p class=meta>{len(entries)} runs · "
                     f"latest verdicts {verdicts}</p>")
        if shown:
            parts.append(f"<figure class=trend>{_chart(entries, shown)}</figure>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _chart(entries: list[dict[str, Any]], shown: list[str]) -> str:
    plt = pyplot(8)
    fig, axes = plt.subplots(1, len(shown), figsize=(2.8 * len(shown), 2.2), squeeze=False)
    for ax, key in zip(axes[0], shown):
        label, unit, _ = FIGURES[key]
        points = [(e["when"], e[key], e["verdict"]) for e in entries if key in e]
        ax.plot([p[0] for p in points], [p[1] for p in points], color="#0969da", lw=1)
        for when, value, verdict in points:
            ax.plot([when], [value], "o", ms=3, color="#1f883d" if verdict == "pass" else "#cf222e")
        ax.set_title(f"{label} ({unit})" if unit else label)
        ax.tick_params(axis="x", labelrotation=30, labelsize=6)
        ax.grid(alpha=0.25)
    fig.tight_layout()
    return inline(fig)


def write(report_dir: Path) -> Path:
    out = report_dir / FILENAME
    out.write_text(render(report_dir))
    return out

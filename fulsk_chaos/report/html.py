"""index.html: the run for people. Drawn from results.json alone (``fulsk-chaos report
PATH/results.json`` draws it again), self-contained: charts are inline SVG (matplotlib), styles
inline, nothing fetched, so it opens from disk, from a CI artifact, offline.

First a summary table (scenario, verdict, recovery against its target, readings lost, p99 while
faulted, alerts); then each scenario: its hypothesis, the verdict's reason, a timeline of what
users and inverters experienced (API latency, errors, readings acknowledged and delivered,
staleness) with the faults shaded, the alerts' fire and resolve marks and the moment of
recovery; its expectations, measured against their thresholds; its evidence; links to its logs.
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from ..figures import (AlertFigures, BlindSpotFigures, FaultWindowFigures, LedgerFigures, Measured, RecoveryFigures,
                       ScheduleFigures, StressFigures,
                       TimelineFigures)
from . import trends
from .svg import STYLE, inline, pyplot
from .writers import FromResults

FILENAME = "index.html"
_OPS = {"<=": "≤", "<": "<", ">=": "≥", ">": ">", "==": "=", "!=": "≠"}



def render_file(results: Path, out: Path | None = None) -> Path:
    """Write index.html beside ``results`` (or to ``out``) from results.json alone."""
    data = json.loads(results.read_text())
    out = out or results.parent / FILENAME
    out.write_text(render(data, results.parent))
    return out


def render(data: dict[str, Any], report_dir: Path | None = None) -> str:
    scenarios = data.get("scenarios") or []
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>fulsk-chaos {escape(str(data.get('run_id')))}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>fulsk-chaos run {escape(str(data.get('run_id', '')))} {_badge(data.get('verdict'))}</h1>",
             f"<p class=meta>provider <b>{escape(str(data.get('provider', '')))}</b> · started "
             f"{escape(str(data.get('started_at', '')))} · finished {escape(str(data.get('finished_at') or '—'))} · "
             f"{len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''}</p>"]
    if data.get("error"):
        parts.append(f"<p class=held-false>The run failed: {escape(str(data['error']))}</p>")
    parts.append(_summary(scenarios))
    if (c := data.get("monitoring")):
        parts.append(f"<p class=meta>runbook coverage: {len(c.get('with_runbook') or [])} of {c.get('rules')} alert "
                     f"rules link a runbook; paged in this run: {escape(', '.join(c.get('paged_in_run') or []) or 'none')}"
                     f"; faults no page covered: "
                     f"<b>{escape(', '.join(c.get('faults_no_page_covered') or []) or 'none')}</b></p>")
        if c.get("replayed"):
            parts.append(f"<p class=meta>incidents replayed: {escape(', '.join(c['replayed']))}; cleared by their "
                         f"runbook in time: <b>{escape(', '.join(c.get('cleared_by_runbook_in_time') or []) or 'none')}"
                         f"</b>; alerts without a runbook: {escape(', '.join(c.get('without_runbook') or []) or 'none')}"
                         f"; runbooks no alert links to: "
                         f"{escape(', '.join(c.get('runbooks_no_alert_links') or []) or 'none')}</p>")
    parts += [_scenario(i, s, report_dir) for i, s in enumerate(scenarios)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _badge(status: Any) -> str:
    status = str(status or "running")
    return f"<span class='verdict v-{escape(status)}'>{escape(status)}</span>"


def _summary(scenarios: list[dict[str, Any]]) -> str:
    rows = []
    for i, s in enumerate(scenarios):
        m = Measured.read(s.get("measurements") or {})
        rec, ledger, window = m.get(RecoveryFigures), m.get(LedgerFigures), m.get(FaultWindowFigures)
        alerts = m.get(AlertFigures)
        recovery = (f"{rec.recovery_s:.1f} s / {rec.recovery_target_s or 0:g} s"
                    if rec is not None and isinstance(rec.recovery_s, (int, float)) else "—")
        lost = f"{ledger.lost} of {ledger.acked}" if ledger is not None and ledger.acked is not None else "—"
        p99 = f"{window.p99_ms:.0f} ms" if window is not None and isinstance(window.p99_ms, (int, float)) else "—"
        rows.append(f"<tr><td><a href='#scenario-{i}'>{escape(s['name'])}</a></td><td>{_badge(s.get('verdict'))}</td>"
                    f"<td class=num>{recovery}</td><td class=num>{lost}</td><td class=num>{p99}</td>"
                    f"<td>{_alerts_line((alerts.alerts if alerts else None) or {})}</td>"
                    f"<td>{_monitoring_line(m)}</td></tr>")
    return ("<table class=summary><thead><tr><th>scenario</th><th>verdict</th><th>recovery / target</th>"
            "<th>lost</th><th>p99 during fault</th><th>alerts</th><th>monitoring</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _monitoring_line(m: Measured) -> str:
    """Each fault's status in the blind-spot table (checks.blindspots)."""
    found = m.get(BlindSpotFigures)
    rows = (found.blind_spots if found else None) or []
    return "<br>".join(f"<span class='{'held-false' if r.get('status') == 'blind spot' else ''}'>"
                       f"{escape(str(r.get('status')))}</span>" for r in rows) or "—"


def _blind_spots(m: Measured) -> str:
    """Fault, the harm it did, the pages it raised and what that says (checks.blindspots)."""
    found = m.get(BlindSpotFigures)
    rows = (found.blind_spots if found else None) or []
    if not rows:
        return ""

    def harm(h: dict[str, Any]) -> str:
        return f"{escape(h['kind'])}: {h['lasted_s']:g} s from +{h['onset_s']:g} s (worst {h['worst']:.0%})"

    def page(p: dict[str, Any]) -> str:
        return f"{escape(p['alert'])} ({escape(p.get('severity') or '—')}) +{p['fired_after_s']:g} s"
    body = "".join(
        f"<tr><td>{escape(str(r['fault']))}</td><td>{'<br>'.join(harm(h) for h in r.get('harms') or []) or '—'}</td>"
        f"<td>{'not monitored' if r.get('pages') is None else '<br>'.join(page(p) for p in r['pages']) or '—'}</td>"
        f"<td class='{'held-false' if r.get('status') == 'blind spot' else ''}'>{escape(str(r['status']))}</td>"
        f"<td>{escape(str(r.get('why', '')))}</td></tr>" for r in rows)
    return ("<table class=blind><caption>monitoring: harm against pages (a rule may take "
            f"{rows[0].get('bound_s', 0):g} s to page)</caption><thead><tr><th>fault</th><th>harm</th><th>pages</th>"
            "<th>status</th><th>why</th></tr></thead><tbody>" + body + "</tbody></table>")


def _search(m: Measured) -> str:
    """A schedule search: its failure beside how often it reproduced, and the reachable states
    it reached, each with the first schedule that did (drills.reach)."""
    found = m.get(ScheduleFigures)
    if found is None or not found.coverage:
        return ""
    c, schedule = found.coverage, found.schedule
    head = ""
    if schedule.get("minimal_failing_schedule"):
        nondeterministic = " (nondeterministic)" if schedule.get("nondeterministic") else ""
        head = (f"<p class=meta>smallest failing schedule: <b>{escape(', '.join(schedule['minimal_failing_schedule']))}"
                f"</b>, reproduces {escape(str(schedule.get('reproduced')))}{nondeterministic}</p>")

    def first(state: dict[str, Any]) -> str:
        return escape(", ".join(state["first_schedule"])) if state["reached"] else f"not reached (best {state['best']:.2f})"
    rows = "".join(
        f"<tr><td class='{'' if st['reached'] else 'held-false'}'>{escape(name)}</td><td>{escape(st['description'])}</td>"
        f"<td>{first(st)}</td><td class=num>{st['first_example'] if st['reached'] else '—'}</td></tr>"
        for name, st in c["states"].items())
    return (head + f"<table class=blind><caption>reachable states: {c['reached']} of {c['declared']} reached in "
            f"{c['schedules']} schedules ({c['guided_schedules']} guided)</caption><thead><tr><th>state</th>"
            "<th>what</th><th>first schedule that reached it</th><th>schedule #</th></tr></thead><tbody>"
            + rows + "</tbody></table>")


def _alerts_line(alerts: dict[str, Any]) -> str:
    out = []
    for name, t in alerts.items():
        fired, resolved = t.get("fired_after_s"), t.get("resolved_after_recovery_s")
        out.append(f"{escape(name)}: " + (f"fired +{fired:g} s" if fired is not None else
                                          "<span class=held-false>never fired</span>")
                   + (f", resolved +{resolved:g} s" if resolved is not None else ""))
    return "<br>".join(out) or "—"


def _scenario(i: int, s: dict[str, Any], report_dir: Path | None) -> str:
    m = Measured.read(s.get("measurements") or {})
    parts = [f"<section class=scenario id='scenario-{i}' data-verdict='{escape(str(s.get('verdict')))}'>",
             f"<h2>{escape(s['name'])} {_badge(s.get('verdict'))}</h2>",
             f"<p class=hypothesis>{escape(s.get('hypothesis') or '')}</p>"]
    if s.get("reason"):
        parts.append(f"<p class=reason>{escape(s['reason'])}</p>")
    if (series := m.get(TimelineFigures)) is not None and isinstance(series.series, dict):
        parts.append(f"<figure class=chart>{chart(s, series.series, m.get(AlertFigures))}<figcaption class=meta>API latency, error rate, readings "
                     f"and staleness per second; faults shaded, alerts marked, recovery dashed</figcaption></figure>")
    if (stress := m.get(StressFigures)) is not None and stress.capacity_bracket_rps is not None:
        parts.append(_stress(stress))
    parts.append(_expectations(s.get("expectations") or []))
    parts.append(_blind_spots(m))
    parts.append(_search(m))
    evidence = s.get("evidence") or []
    if evidence:
        parts.append("<details><summary>evidence</summary><table><tr><th>of</th><th>count</th><th>needed</th></tr>"
                     + "".join(f"<tr><td>{escape(e['name'])}</td><td class=num>{e['count']}</td>"
                               f"<td class=num>{e['minimum']}</td></tr>" for e in evidence) + "</table></details>")
    faults = s.get("faults") or []
    if faults:
        parts.append("<details><summary>faults</summary><table><tr><th>kind</th><th>target</th><th>from</th>"
                     "<th>to</th><th>its condition</th></tr>" + "".join(
                         f"<tr><td>{escape(str(f.get('kind')))}</td><td>{escape(str(f.get('target')))}</td>"
                         f"<td>{escape(str(f.get('started_at')))}</td><td>{escape(str(f.get('ended_at')))}</td>"
                         f"<td>{escape(_condition(f))}</td></tr>" for f in faults) + "</table></details>")
    logs = _logs(s, report_dir)
    if logs:
        parts.append(f"<p class=meta>logs: {logs}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _stress(m: StressFigures) -> str:
    """The stress search: the capacity with its bracket, why the search ended, every step."""
    def rps(v: Any) -> str:
        return "—" if v is None else f"{v:g}"
    held, broken = m.capacity_bracket_rps or (None, None)
    line = (f"capacity {rps(m.capacity_rps)} req/s, knee in [{rps(held)}, {rps(broken)}] req/s "
            f"(resolution {m.knee_resolution or 0:.0%}): {m.search_ended or ''}")
    if m.capacity_ratio is not None:
        line += (f"; {m.capacity_ratio:.0%} of the healthy capacity "
                 f"({(m.healthy_capacity or {}).get('source', '')})")
    rows = "".join(f"<tr><td class=num>{st.get('step')}</td><td>{escape(str(st.get('phase', '')))}</td>"
                   f"<td class=num>{rps(st.get('rate_rps'))}</td>"
                   f"<td class=num>{_value(st.get('api_p95_ms'), 'ms')}</td>"
                   f"<td>{escape((st.get('broken') or st.get('invalid') or st.get('short') or [''])[0])}</td></tr>"
                   for st in m.steps or [])
    return (f"<p class=meta>{escape(line)}</p><details><summary>steps</summary><table><tr><th>step</th><th>phase</th>"
            f"<th>req/s</th><th>API p95</th><th>broke</th></tr>{rows}</table></details>")


def _expectations(expectations: list[dict[str, Any]]) -> str:
    rows = []
    for e in expectations:
        held = e.get("held")
        state = {True: "ok", False: "violated", None: "not measured"}[held]
        rows.append(f"<tr><td>{escape(e['name'])}</td><td class=num>{_value(e.get('measured'), e.get('unit', ''))}</td>"
                    f"<td class=num>{_OPS.get(e['op'], e['op'])} {_value(e['threshold'], e.get('unit', ''))}</td>"
                    f"<td class='held-{str(held).lower()}'>{state}</td>"
                    f"<td>{escape(e.get('detail') or '') if held is not True else ''}</td></tr>")
    return ("<h3>expectations</h3><table class=expectations><tr><th>expectation</th><th>measured</th>"
            "<th>must be</th><th></th><th>detail</th></tr>" + "".join(rows) + "</table>")


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = "never" if math.isinf(value) else f"{value:.4g}"
    else:
        text = str(value)
    return escape(f"{text} {unit}".strip())


def _condition(fault: dict[str, Any]) -> str:
    """Whether and when the fault reached the condition it exists to create, and what showed it."""
    entry = (fault.get("details") or {}).get("condition")
    if not entry:
        return "not measured"
    measured = entry.get("measured") or {}
    shown = f"{measured.get('name')} = {measured.get('measured')} {measured.get('unit') or ''}".rstrip()
    when = f"reached after {entry.get('reached_after_s')} s" if entry.get("reached") else "NOT reached"
    return f"{when}: {shown} ({entry.get('source')})" if measured else f"{when} ({entry.get('source')})"


def _logs(s: dict[str, Any], report_dir: Path | None) -> str:
    """Links to the scenario's service logs: its own stack's, else the shared stack's."""
    if report_dir is None:
        return ""
    name = str(s.get("nodeid", "")).rpartition("::")[2]
    folder = next((p for p in (report_dir / "logs" / name, report_dir / "logs") if name and p.is_dir()), None)
    if folder is None:
        return ""
    where = escape(str(folder.relative_to(report_dir)))
    return " ".join(f"<a href='{where}/{escape(p.name)}'>{escape(p.name)}</a>" for p in sorted(folder.iterdir())
                    if p.is_file())


def _epoch(stamp: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def chart(s: dict[str, Any], series: dict[str, Any], alerts: AlertFigures | None) -> str:
    """The scenario's timeline as inline SVG: three panels on one time axis."""
    plt = pyplot()
    t0, t = series["t0"], series["t"]
    fig, (lat, err, rate) = plt.subplots(3, 1, figsize=(11, 5.2), sharex=True,
                                         gridspec_kw={"height_ratios": [1.4, 1, 1.2]})
    lat.plot(t, _nan(series["api_p50_ms"]), label="API p50", color="#0969da")
    lat.plot(t, _nan(series["api_p95_ms"]), label="API p95", color="#8250df")
    if "live_delay_p95_ms" in series:  # results.json written before it was recorded have none
        lat.plot(t, _nan(series["live_delay_p95_ms"]), label="live feed p95", color="#2da44e", linestyle=":")
    lat.set_ylabel("ms")
    err.plot(t, [v * 100 if v is not None else math.nan for v in series["error_rate"]], color="#cf222e",
             label="read errors")
    err.set_ylabel("errors %")
    err.set_ylim(bottom=0)
    rate.plot(t, series["acked_per_s"], color="#1f883d", label="acked by the broker /s")
    rate.plot(t, series["delivered_per_s"], color="#2da44e", linestyle=":", label="on the live feed /s")
    rate.set_ylabel("readings /s")
    rate.set_xlabel("seconds from the scenario's start")
    stale = rate.twinx()
    stale.plot(t, _nan(series["staleness_p95_s"]), color="#bf8700", label="staleness p95")
    stale.set_ylabel("staleness s")
    for f in s.get("faults") or []:
        start, end = _epoch(f.get("started_at")), _epoch(f.get("ended_at"))
        if start is None:
            continue
        for ax in (lat, err, rate):
            ax.axvspan(start - t0, (end or start) - t0, color="#fd8c73", alpha=0.25, lw=0)
        lat.annotate(f"{f.get('kind')} {f.get('target')}", (start - t0, 1), xycoords=("data", "axes fraction"),
                     va="bottom", fontsize=8, color="#a40e26")
    for name, times in (((alerts.alerts if alerts else None) or {}).items()):
        for key, marker, color in (("fired_at", "^", "#cf222e"), ("resolved_at", "v", "#1f883d")):
            if times.get(key):
                x = times[key] - t0
                lat.axvline(x, color=color, lw=0.8, alpha=0.7)
                lat.plot([x], [1.0], marker=marker, color=color, transform=lat.get_xaxis_transform(), clip_on=False)
                lat.annotate(name, (x, 0.92), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                             color=color, ha="right", va="top")
    if series.get("recovered_s") is not None:
        for ax in (lat, err, rate):
            ax.axvline(series["recovered_s"], color="#57606a", linestyle="--", lw=1)
        rate.annotate("recovered", (series["recovered_s"], 0.95), xycoords=("data", "axes fraction"), fontsize=8,
                      color="#57606a", ha="left", va="top")
    for ax in (lat, err):
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    handles = rate.get_legend_handles_labels()
    extra = stale.get_legend_handles_labels()
    rate.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper left", fontsize=7, frameon=False, ncol=3)
    for ax in (lat, err, rate):
        ax.grid(alpha=0.25)
        ax.set_xlim(t[0], t[-1] + series.get("bucket_s", 1))
    fig.tight_layout()
    return inline(fig)


def _nan(values: list[Any]) -> list[float]:
    return [math.nan if v is None else v for v in values]


class HtmlReport(FromResults):
    """index.html when the run is over (charts take a moment each), and trends.html beside the runs."""

    def from_results(self, results: Path) -> None:
        render_file(results)
        trends.write(results.parent.parent)  # the runs kept beside this one are the history

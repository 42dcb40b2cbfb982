"""Report writers behind one interface: results.json, JUnit XML, the terminal summary.

A writer is told when a scenario starts, when it has its verdict, and when the run is over;
files are rewritten atomically at each step, so what is on disk is always a whole report (and
says ``interrupted`` for a run that died). An HTML report or any other format is one more writer.
"""
from __future__ import annotations

import json
import os
from collections import Counter
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol
from xml.etree import ElementTree as ET

from ..figures import (BlindSpotFigures, FaultWindowFigures, IncidentFigures, LedgerFigures, LoadWindowFigures, Measured, RecoveryFigures,
                       StressFigures)
from .records import RunRecord, ScenarioRecord


class ReportWriter(Protocol):
    def scenario_started(self, run: RunRecord, scenario: ScenarioRecord) -> None: ...

    def scenario_finished(self, run: RunRecord, scenario: ScenarioRecord) -> None: ...

    def run_finished(self, run: RunRecord) -> None: ...


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


class FileWriter:
    """Rewrites its one file at every step."""

    filename = ""

    def render(self, run: RunRecord) -> str:
        raise NotImplementedError

    def _write(self, run: RunRecord) -> None:
        write_atomically(run.dir / self.filename, self.render(run))

    def scenario_started(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        self._write(run)

    def scenario_finished(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        self._write(run)

    def run_finished(self, run: RunRecord) -> None:
        self._write(run)


class FromResults:
    """A writer that makes its files from results.json once the run is over (written before it)."""

    def from_results(self, results: Path) -> None:
        raise NotImplementedError

    def scenario_started(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        pass

    def scenario_finished(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        pass

    def run_finished(self, run: RunRecord) -> None:
        results = run.dir / "results.json"
        if results.is_file():
            self.from_results(results)


class ResultsJson(FileWriter):
    """results.json; ``update`` may add fields before each write (the plugin's hook does)."""

    filename = "results.json"

    def __init__(self, update: Callable[[dict[str, Any]], None] = lambda data: None) -> None:
        self.update = update

    def render(self, run: RunRecord) -> str:
        data = run.to_json()
        self.update(data)
        return json.dumps(data, indent=2) + "\n"


class JUnitXml(FileWriter):
    """junit.xml for CI dashboards: a test case per scenario, its verdict and measurements as properties."""

    filename = "junit.xml"

    def render(self, run: RunRecord) -> str:
        counts = {s: sum(1 for sc in run.scenarios if sc.status == s) for s in ("fail", "error", "skipped")}
        counts["error"] += sum(1 for sc in run.scenarios if sc.status in ("interrupted", "invalid"))
        suite = ET.Element("testsuite", name="fulsk-chaos", tests=str(len(run.scenarios)),
                           failures=str(counts["fail"]), errors=str(counts["error"]),
                           skipped=str(counts["skipped"]), timestamp=run.started_at)
        if run.error:
            ET.SubElement(suite, "system-err").text = run.error
        for scenario in run.scenarios:
            module, _, name = scenario.nodeid.rpartition("::")
            case = ET.SubElement(suite, "testcase", classname=module.removesuffix(".py").replace("/", "."),
                                 name=name or scenario.name)
            properties = ET.SubElement(case, "properties")
            data = scenario.to_json()
            for key, value in [("verdict", data["verdict"]), *data["measurements"].items()]:
                ET.SubElement(properties, "property", name=key, value="" if value is None else str(value))
            message = data["reason"] or ""
            details = "\n".join(e.describe() for e in scenario.judged[0])
            if scenario.status == "fail":
                ET.SubElement(case, "failure", message=message).text = details
            elif scenario.status in ("error", "interrupted", "invalid"):
                ET.SubElement(case, "error", message=f"{scenario.status}: {message}").text = details
            elif scenario.status == "skipped":
                ET.SubElement(case, "skipped", message=message)
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


class TerminalSummary:
    """The lines printed at the end of a pytest run (or by any other front end)."""

    def __init__(self, write_line: Callable[[str], None]) -> None:
        self.write_line = write_line

    def scenario_started(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        pass

    def scenario_finished(self, run: RunRecord, scenario: ScenarioRecord) -> None:
        pass

    def run_finished(self, run: RunRecord) -> None:
        if run.error:
            self.write_line(f"ERROR the run: {run.error}")
        for s in run.scenarios:
            parts = [f"{s.status.upper():5} {s.name}", *figures_line(s.figures)]
            self.write_line("  ".join(parts))
            if s.status != "pass" and s.reason:
                failed = s.verdict.failed if s.verdict else []
                for line in [e.describe() for e in failed][:6] or [s.reason]:
                    self.write_line(f"        {line[:300]}")
            elif lacking := [e for e in (s.verdict.expectations if s.verdict else ()) if e.skipped]:
                for e in lacking[:6]:  # judged without them: the backend cannot be held to them
                    self.write_line(f"        {e.describe()[:300]}")
            for row in blind_spot_rows(s.figures):
                self.write_line(f"        {row['status']}: {row['fault']}: {row['why'][:300]}")
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in run.stack.items() if isinstance(v, float))
        images = [f"{n}={s['image']}" for n, s in run.stack.get("services", {}).items() if s.get("image")]
        if images:
            self.write_line("images: " + " ".join(images))
        verdict = f"verdict {run.verdict}" if run.scenarios or run.error else "no scenario ran"
        skipped = sum(e.skipped != "" for s in run.scenarios if s.verdict for e in s.verdict.expectations)
        if skipped:  # what the backend lacks was not judged: said, never counted as passed
            verdict += f" ({skipped} expectation{'s' if skipped != 1 else ''} skipped: the backend lacks what they need)"
        rows = [r for s in run.scenarios for r in ((s.figures.get(BlindSpotFigures).blind_spots or [])
                                                   if s.figures.get(BlindSpotFigures) else [])]
        if rows:
            counts = Counter(r["status"] for r in rows)
            self.write_line(f"monitoring, over {len(rows)} fault{'s' if len(rows) != 1 else ''}: "
                            + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
        if run.monitoring:
            c = run.monitoring
            self.write_line(f"runbook coverage: {len(c['with_runbook'])} of {c['rules']} alert rules link a runbook; "
                            f"{len(c['paged_in_run'])} paged in this run; faults no page covered: "
                            f"{', '.join(c['faults_no_page_covered']) or 'none'}")
            if c.get("replayed"):
                self.write_line(f"incidents replayed: {len(c['replayed'])}, cleared by their runbook in time: "
                                f"{len(c['cleared_by_runbook_in_time'])}; alerts without a runbook: "
                                f"{', '.join(c['without_runbook']) or 'none'}; runbooks no alert links to: "
                                f"{', '.join(c.get('runbooks_no_alert_links') or []) or 'none'}")
            for line in c.get("linked_not_replayable") or []:
                self.write_line(f"  not replayable: {line}")
        backend = (run.stack.get("backend") or {}).get("name")
        self.write_line(f"{verdict}; provider {run.provider}" + (f"; backend {backend}" if backend else "")
                        + (f"; stack {timing}" if timing else ""))


def figures_line(m: Measured) -> list[str]:
    """A scenario's headline figures, for the terminal's summary line."""
    parts = []
    rec, ledger, window = m.get(RecoveryFigures), m.get(LedgerFigures), m.get(FaultWindowFigures)
    if rec is not None and rec.recovery_s is not None:
        parts.append(f"recovery {rec.recovery_s:.1f} s (target {rec.recovery_target_s or 0:g} s)")
    if ledger is not None and ledger.acked is not None:
        parts.append(f"lost {ledger.lost} of {ledger.acked} acked")
    if window is not None and window.p99_ms is not None:
        parts.append(f"p99 {window.p99_ms:.0f} ms during fault")
    load = m.get(LoadWindowFigures)
    api = ((load.load if load else None) or {}).get("api") or {}
    if api.get("p95_ms") is not None:
        parts.append(f"API p95 {api['p95_ms']:.0f} ms at {api['throughput_rps']:.0f} req/s")
    incident = m.get(IncidentFigures)
    if incident is not None:
        t = incident.incident_targets or {}
        parts.append(", ".join(f"{link} {_seconds(getattr(incident, f'{link}_s'))}/{t.get(f'{link}_s', 0):g} s"
                               for link in ("detect", "diagnose", "recover", "resolve"))
                     + f" ({incident.incident_severity}: measured/target)")
    stress = m.get(StressFigures)
    if stress is not None and stress.capacity_bracket_rps is not None:
        broken = stress.first_broken
        parts.append(f"capacity {stress.capacity_rps} req/s" if stress.capacity_rps is not None else "capacity unknown")
        held, above = stress.capacity_bracket_rps  # the knee lies between them (above None: above the ladder)
        parts.append(f"knee in [{held:g}, {'-' if above is None else f'{above:g}'}] req/s")
        if stress.capacity_ratio is not None:
            parts.append(f"{stress.capacity_ratio:.0%} of the healthy capacity")
        if broken:
            parts.append(f"first broken at {broken['rate_rps']:g} req/s: {broken['baselines'][0]}")
    return parts


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def blind_spot_rows(m: Measured, statuses: tuple[str, ...] = ("blind spot", "noise")) -> list[dict[str, Any]]:
    """A scenario's faults whose monitoring needs an engineer's eye: harm nobody was paged for,
    pages for no harm (checks.blindspots)."""
    found = m.get(BlindSpotFigures)
    return [r for r in (found.blind_spots if found else None) or [] if r.get("status") in statuses]

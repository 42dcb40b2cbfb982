"""Each scenario as a Chaos Toolkit journal (journals/<scenario>.json), for ``chaos report`` and
the rest of Chaos Toolkit's tooling: the experiment (title, description, the steady-state
hypothesis as probes with their tolerances, the faults as the method, their rollbacks), the
steady states before and after with what was measured, the activities run, status and deviated.

Our expectations become probes whose tolerance is the threshold: a probe replays what was
measured (``recorded``), since what measured it - windows of probe samples, the ledger - is not
one call. A fault becomes the action that injects it: ``fulsk-chaos ctl`` for a process fault, an
HTTP call to Toxiproxy for a network fault, ``recorded`` for the others.
"""
from __future__ import annotations

import json
import math
import platform
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from .writers import FromResults, write_atomically

CHAOSLIB_VERSION = "1.44.0"  # the journal format written (chaostoolkit-lib's)
BIG = 1e300  # an open end of a range tolerance (JSON has no infinity)
_STATUS = {"pass": "completed", "fail": "failed"}  # else: aborted (no verdict could be reached)
_CTL = {"kill", "stop", "restart", "pause"}


def recorded(name: str, value: Any = None) -> Any:
    """What fulsk-chaos measured for ``name``: the journal's probes replay it."""
    return value


def _tolerance(e: dict[str, Any]) -> Any:
    t = e["threshold"]
    if e["op"] == "==":
        return t
    if e["op"] in ("<=", "<"):
        return {"type": "range", "range": [-BIG, t]}
    if e["op"] in (">=", ">"):
        return {"type": "range", "range": [t, BIG]}
    return {"type": "range", "range": [-BIG, BIG]}


def _value(v: Any) -> Any:
    return None if isinstance(v, float) and (math.isinf(v) or math.isnan(v)) else v


def _probe(e: dict[str, Any]) -> dict[str, Any]:
    return {"type": "probe", "name": e["name"], "tolerance": _tolerance(e),
            "provider": {"type": "python", "module": __name__, "func": "recorded",
                         "arguments": {"name": e["name"], "value": _value(e.get("measured"))}}}


def _action(fault: dict[str, Any], stack: dict[str, Any]) -> dict[str, Any]:
    kind, target, params = fault.get("kind"), str(fault.get("target")), fault.get("params") or {}
    name = f"{kind} {target}"
    proxies = stack.get("proxies") or {}
    if kind in _CTL and stack.get("dir"):
        provider = {"type": "process", "path": "fulsk-chaos",
                    "arguments": f"ctl --socket {stack['dir']}/control.sock {kind} {target}"}
    elif target in proxies and stack.get("toxiproxy_url"):
        provider = {"type": "http", "url": f"{stack['toxiproxy_url']}/proxies/{target}/toxics", "method": "POST",
                    "arguments": {"type": kind, "attributes": params}}
    else:
        provider = {"type": "python", "module": __name__, "func": "recorded",
                    "arguments": {"name": name, "value": {"kind": kind, "target": target, **params}}}
    return {"type": "action", "name": name, "provider": provider}


def _rollback(fault: dict[str, Any]) -> dict[str, Any]:
    name = f"roll back {fault.get('kind')} {fault.get('target')}"
    return {"type": "action", "name": name,
            "provider": {"type": "python", "module": __name__, "func": "recorded",
                         "arguments": {"name": name, "value": fault.get("rollback_error") or "verified"}}}


def _run(activity: dict[str, Any], start: str, end: str, output: Any, ok: bool | None,
         tolerance_met: bool | None = None) -> dict[str, Any]:
    run = {"activity": activity, "output": output, "status": "succeeded" if ok is not False else "failed",
           "start": start, "end": end, "duration": _seconds(start, end)}
    if tolerance_met is not None:
        run["tolerance_met"] = tolerance_met
    return run


def _seconds(start: Any, end: Any) -> float:
    try:
        return round((datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds(), 3)
    except ValueError:
        return 0.0


def journal(run: dict[str, Any], scenario: dict[str, Any]) -> dict[str, Any]:
    """One scenario of a run's results.json as a Chaos Toolkit journal."""
    start, end = scenario.get("started_at") or run.get("started_at"), scenario.get("finished_at") or run.get("finished_at")
    start, end = str(start), str(end or start)
    expectations = scenario.get("expectations") or []
    before = [e for e in expectations if e["name"].startswith("before")]
    after = [e for e in expectations if not e["name"].startswith("before")]
    faults = scenario.get("faults") or []
    stack = dict(run.get("stack") or {})
    experiment = {
        "version": "1.0.0", "title": scenario["name"],
        "description": scenario.get("hypothesis") or scenario["name"],
        "tags": ["fulsk-chaos", str(run.get("provider") or "local")],
        "steady-state-hypothesis": {"title": scenario.get("hypothesis") or scenario["name"],
                                    "probes": [_probe(e) for e in before + after]},
        "method": [_action(f, stack) for f in faults],
        "rollbacks": [_rollback(f) for f in faults],
        "extensions": [{"name": "fulsk-chaos", "verdict": scenario.get("verdict"), "reason": scenario.get("reason"),
                        "evidence": scenario.get("evidence") or [], "run_id": run.get("run_id")}],
    }

    def state(selected: list[dict[str, Any]]) -> dict[str, Any]:
        probes = [_run(_probe(e), start, end, _value(e.get("measured")), e.get("held") is not None, e.get("held") is True)
                  for e in selected]
        return {"steady_state_met": all(e.get("held") is True for e in selected), "probes": probes}
    status = _STATUS.get(str(scenario.get("verdict")), "aborted")
    return {
        "chaoslib-version": CHAOSLIB_VERSION, "platform": platform.platform(), "node": platform.node(),
        "experiment": experiment, "start": start, "end": end, "duration": _seconds(start, end),
        "status": status, "deviated": scenario.get("verdict") == "fail",
        "steady_states": {"before": state(before) if before else None, "after": state(after) if after else None,
                          "during": []},
        "run": [_run(_action(f, stack), str(f.get("started_at")), str(f.get("ended_at") or f.get("started_at")),
                     f.get("details") or None, True) for f in faults],
        "rollbacks": [_run(_rollback(f), str(f.get("ended_at") or f.get("started_at")),
                           str(f.get("ended_at") or f.get("started_at")), f.get("rollback_error") or "verified",
                           not f.get("rollback_error")) for f in faults],
    }


def filename(scenario: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", scenario["name"]).strip("_") + ".json"


def write_journals(results: Path) -> list[Path]:
    """journals/<scenario>.json beside ``results`` (a run's results.json)."""
    data = json.loads(results.read_text())
    written = []
    for scenario in data.get("scenarios") or []:
        path = results.parent / "journals" / filename(scenario)
        write_atomically(path, json.dumps(journal(data, scenario), indent=2, default=str) + "\n")
        written.append(path)
    return written


class ChaosToolkitJournals(FromResults):
    """The journals, when the run is over, from results.json."""

    def from_results(self, results: Path) -> None:
        write_journals(results)

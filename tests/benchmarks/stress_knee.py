"""Benchmark: the stress search's knee of the API beside wrk's, on one local stack, side by side.

A sanity anchor for the capacity the stress test reports. Both clients read the same list of API
paths (the stress profile's mix: the inverter list, latest readings, recent readings, the fleet's
generation) while the same 20 inverters publish in the background:

- the stress search (fulsk_chaos.load.knee, as loadtests/test_stress.py runs it; Locust, open
  model) with the stress profile's API arrivals alone - no dashboards or viewers, so that the API
  is what is judged (API p95, HTTP p99 and errors, CPU, the generator's validity) - finds the knee
  and its bracket; the concurrency it had there is the mean number of requests in flight at its
  highest step that held (Little's law: their latencies summed over the window);
- wrk (C, closed loop: each connection sends its next request when the last is answered; wrk2's
  open model is not packaged by Debian) with 1, 2, 4 ... connections and with the search's
  concurrency, SECONDS each, until a point breaks the API baseline (p95) or the error rate: its
  throughput and p95 (printed by a Lua done() hook: wrk prints no p95 itself). wrk's knee is the
  most it answered within them.

The backend is restarted between the two: an overload can leave the reference backend unable to
answer for good (its database pool exhausted), and neither figure may measure what the other left.

The open-model knee lies below the closed-loop ceiling: near saturation, arrivals that do not
wait for answers queue and the p95 grows, while a closed loop never has more requests out than
connections. A knee far below wrk's would say the generator, not the stack, was the limit.

Usage: python tests/benchmarks/stress_knee.py [STEP_SECONDS] [WRK_SECONDS] [WORKERS]
(`nox -s loadbench -- knee [...]`; `bash scripts/bootstrap.sh --bench` installs wrk).
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fulsk_chaos.config import load
from fulsk_chaos.drills.load import LoadDrill
from fulsk_chaos.figures import StressFigures
from fulsk_chaos.load import LoadTest, knee, load_profile
from fulsk_chaos.load.profile import from_mapping
from fulsk_chaos.report import ScenarioRecord
from fulsk_chaos.stack import Stack

CONNECTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FULSK requests=%d errors=%d seconds=%f p50=%f p95=%f p99=%f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def api_paths(frontend: str, n: int = 200, seed: int = 2026) -> list[str]:
    """The stress profile's mix of reads (the locustfile's Reads), of the inverters the API lists."""
    with urllib.request.urlopen(frontend + "/api/inverters", timeout=10) as response:
        listed = json.load(response).get("inverters", [])
    ids = [i["inverter_id"] if isinstance(i, dict) else i for i in listed][:200]
    if not ids:
        raise SystemExit("the API lists no inverter: the background inverters did not publish")
    rng, end = random.Random(seed), time.time()
    paths = []
    for _ in range(n):
        inverter, kind = rng.choice(ids), rng.choice(("latest", "latest", "readings", "generation"))
        paths.append("/api/inverters" if rng.random() < 0.1 else f"/api/inverters/{inverter}/latest"
                     if kind == "latest" else f"/api/inverters/{inverter}/readings?from={end - 30:.3f}&to={end:.3f}"
                     if kind == "readings" else "/api/generation")
    return paths


def wrk(frontend: str, paths: list[str], connections: int, seconds: float, script: Path) -> dict[str, float]:
    script.write_text("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\nlocal i = 0\n"
                      "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n" + DONE)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", str(script), frontend], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    found = dict(re.findall(r"(\w+)=([\d.]+)", out[out.index("FULSK"):]))
    figures = {k: float(v) for k, v in found.items()}
    figures["rps"] = figures["requests"] / figures["seconds"]
    figures["error_rate"] = figures["errors"] / max(figures["requests"], 1)
    return figures


def main() -> None:
    step_s = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    wrk_s = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: bash scripts/bootstrap.sh --bench")
    settings = load()
    resolution, baseline_ms = settings.load.knee_resolution, settings.baselines.api_response_ms
    load_before = os.getloadavg()
    with Stack(settings, "local") as stack, tempfile.TemporaryDirectory() as tmp:
        frontend = stack.endpoints.frontend_url
        stress = load_profile("stress")
        inverters = from_mapping({"inverters": {"users": stress.inverters.users, "interval_s": 1.0},
                                  "duration_s": 3600, "warmup_s": 3}, "bench-inverters")
        with LoadTest(stack, inverters, Path(tmp) / "inverters", run_s=3600):
            paths = api_paths(frontend)
            profile = stress.with_(name="stress-api", dashboard__users=0, viewers__users=0, inverters__users=0,
                                   api__paths=paths, api__step_s=step_s)
            record = ScenarioRecord("stress-api", "benchmark")
            search = LoadTest(stack, profile, Path(tmp) / "search", workers=workers,
                              run_s=knee.run_bound_s(profile, resolution))
            LoadDrill(stack, settings, record, search).ramp()
            m = record.figure(StressFigures)
            at_knee = next((s for s in m.steps if s["rate_rps"] == m.capacity_rps), None)
            same = max(1, math.ceil(at_knee["api_in_flight"])) if at_knee else 1
            stack.service("backend").restart()
            stack.wait_ready()
            sweep: dict[int, dict[str, float]] = {}
            for c in sorted({*CONNECTIONS, same}):
                sweep[c] = f = wrk(frontend, paths, c, wrk_s, Path(tmp) / "paths.lua")
                if (f["p95"] > baseline_ms or f["error_rate"] > settings.alerts.error_rate) and c >= same:
                    break  # past the knee: more connections only overload it
    load_after = os.getloadavg()

    print(f"\nthe API's knee on this machine, side by side (the stress profile's API reads over "
          f"{stress.inverters.users} inverters; steps of {step_s:g} s, knee_resolution {resolution:.0%}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} cores)")
    report(m, workers, sweep, same, wrk_s, baseline_ms, settings.alerts.error_rate)


def report(m: StressFigures, workers: int, sweep: dict[int, dict[str, float]], same: int, wrk_s: float, baseline_ms: float,
           error_rate: float) -> None:
    held, broken = m.capacity_bracket_rps
    print(f"\nLocust, open model (the stress search, {workers} worker): capacity {m.capacity_rps} req/s, "
          f"bracket [{held}, {broken}]; {m.search_ended}")
    print(f"{'step':>5} {'phase':>7} {'rate':>7} {'achieved':>9} {'p95 ms':>8} {'in flight':>10}  broke")
    for s in m.steps:
        broke = (s["broken"] or s["invalid"] or [""])[0][:70]
        print(f"{s['step']:>5} {s['phase']:>7} {s['rate_rps']:>7g} {s['achieved_api_rps'] or 0:>9.0f} "
              f"{s['api_p95_ms'] or 0:>8.1f} {s['api_in_flight']:>10.2f}  {broke}")
    print(f"\nwrk, closed loop (1 thread, {wrk_s:g} s each):")
    print(f"{'connections':>11} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for c, f in sweep.items():
        mark = "  <- the search's concurrency at its knee" if c == same else ""
        print(f"{c:>11} {f['rps']:>8.0f} {f['p50']:>8.1f} {f['p95']:>8.1f} {f['p99']:>8.1f} "
              f"{f['error_rate']:>7.1%}{mark}")
    within = {c: f for c, f in sweep.items() if f["p95"] <= baseline_ms and f["error_rate"] <= error_rate}
    best = max(within, key=lambda c: within[c]["rps"]) if within else None
    at_knee = next((s for s in m.steps if s["rate_rps"] == m.capacity_rps), None)
    print(f"\nthe search's knee: {m.capacity_rps} req/s (bracket [{held}, {broken}]), "
          f"{at_knee['api_in_flight'] if at_knee else '-'} requests in flight at it")
    print(f"wrk at the same concurrency ({same} connections): {sweep[same]['rps']:.0f} req/s, p95 "
          f"{sweep[same]['p95']:.1f} ms")
    if best is not None:
        capacity = m.capacity_rps
        ratio = f"; the search's knee is {capacity / within[best]['rps']:.2f} of it" if capacity else ""
        print(f"wrk's knee (the most answered within the {baseline_ms:g} ms API baseline): "
              f"{within[best]['rps']:.0f} req/s at {best} connections{ratio}")

if __name__ == "__main__":
    main()

"""Benchmark: does guidance find what chance does not? The drill profile's schedule search,
guided (its ``guidance``) and unguided (``guidance = 0``), side by side in one run, seed for seed:

- on the healthy reference backend: the reachable states reached (drills.reach) on the drill's
  budget, and any failure (there must be none);
- for each rare-state bug switch of the reference backend (backlog-shed, slow-miss-pins): found
  or not on the drill's budget, the schedules and the seconds until found (shrinking and replays
  off: the search stops where it first fails).

Prints medians and ranges, and writes every run's figures to --out. Nothing is asserted.
Usage: python tests/benchmarks/explore_guidance.py [--seeds 5] [--parallel 2] [--cases healthy,backlog-shed,...]
       [--stack local] [--out reports/explorebench.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = ["healthy", "backlog-shed", "slow-miss-pins"]
MODES = {"guided": None, "unguided": 0.0}  # None: the drill profile's own guidance


def config(case: str, guidance: float | None) -> str:
    lines = ["[schedules.drill]"]
    if guidance is not None:
        lines.append(f"guidance = {guidance}")
    if case != "healthy":  # finding is what is measured: stop where it first fails
        lines += ["shrink = false", "replays = 0", "[backend.env]", f'FULSK_BUGS = "{case}"']
    return "\n".join(lines) + "\n"


def run(case: str, mode: str, seed: int, stack: str, work: Path) -> dict:
    where = work / f"{case}-{mode}-{seed}"
    where.mkdir()
    (where / "drill.toml").write_text(config(case, MODES[mode]))
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "scenarios/test_schedules.py", "-p", "no:cacheprovider",
                           "--stack", stack, "--schedule-profile", "drill", "--schedule-seed", str(seed),
                           "--chaos-config", str(where / "drill.toml"), "--report-dir", str(where / "reports"),
                           "--no-html"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    row = {"case": case, "mode": mode, "seed": seed, "wall_s": round(time.monotonic() - t0, 1),
           "exit": done.returncode}
    found = list((where / "reports").glob("*/results.json"))
    if not found:
        return {**row, "error": done.stdout[-2000:] + done.stderr[-2000:]}
    scenario = json.loads(found[0].read_text())["scenarios"][0]
    m = scenario.get("measurements") or {}
    schedule, coverage = m.get("schedule") or {}, m.get("coverage") or {}
    return {**row, "verdict": scenario.get("verdict"), "failure": schedule.get("failure"),
            "found_after": schedule.get("found_after"), "found_at_s": schedule.get("found_at_s"),
            "schedules": schedule.get("examples"), "reached": coverage.get("reached"),
            "declared": coverage.get("declared"),
            "states": sorted(n for n, s in (coverage.get("states") or {}).items() if s["reached"])}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):g} [{min(values):g}-{max(values):g}]"


def summary(rows: list[dict], cases: list[str]) -> str:
    lines = []
    for case in cases:
        lines.append(f"\n{case}:")
        for mode in MODES:
            mine = [r for r in rows if r["case"] == case and r["mode"] == mode]
            if case == "healthy":
                failed = [r for r in mine if r.get("verdict") != "pass"]
                lines.append(f"  {mode:9} states reached {spread([r['reached'] for r in mine if r.get('reached') is not None])}"
                             f" of {mine[0].get('declared') if mine else '?'}; failures {len(failed)} of {len(mine)}")
                continue
            hits = [r for r in mine if r.get("found_after")]
            lines.append(f"  {mode:9} found in {len(hits)} of {len(mine)} seeds; schedules until found "
                         f"{spread([r['found_after'] for r in hits])}; seconds {spread([r['found_at_s'] for r in hits])}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2, help="searches at once (each on a stack of its own)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--stack", default="local", choices=["local", "docker"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "explorebench.json")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(c, m, s) for s in seeds for c in cases for m in MODES]  # guided and unguided of a seed side by side
    with tempfile.TemporaryDirectory(prefix="explorebench-") as tmp, ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(run, c, m, s, args.stack, Path(tmp)) for c, m, s in jobs]
        rows = []
        for future in futures:
            rows.append(future.result())
            r = rows[-1]
            print(f"{r['case']:15} {r['mode']:9} seed {r['seed']}: "
                  + (r.get("error", "")[:300] if "error" in r else
                     f"{r['verdict']}, states {r['reached']}/{r['declared']}, found after {r['found_after']} "
                     f"schedules ({r['found_at_s']} s), wall {r['wall_s']} s"), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(summary(rows, cases))
    print(f"\nevery run: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

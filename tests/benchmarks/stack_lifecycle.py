"""Benchmark: how long the stack takes to start healthy and to tear down, and where the time goes.

Every stack runs in a fresh subprocess of its checkout, one start and one stop; each round runs
every kind once, the checkouts compared one after the other (first and last in turn), and the
figures compared are medians measured side by side in one run: timings on a shared 2-core
machine are noisy.
This checkout's stacks also say where their time went (Stack.timings): each service's phases
and its share, and the stack's own steps.

Usage: python tests/benchmarks/stack_lifecycle.py [ROUNDS] [PROVIDER ...] [--no-monitoring] [--against COMMIT ...]
                                                   [--save FILE]
  ROUNDS            5 by default; PROVIDER local and docker by default
  --no-monitoring   no monitored stack (by default one of this checkout runs too: what monitoring adds)
  --against COMMIT  that commit's code too, from a git worktree (removed afterwards): both medians
                    and the ratios. On Docker it runs this checkout's images (its own build would
                    retag them): the comparison is of the framework's code.
  --save FILE       every run's timings, as JSON
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
THIS = "this checkout"

# One start and one stop, in the checkout given by the working directory and PYTHONPATH: only
# what every version of the framework has (load, Stack, start, stop, timings).
WORKER = """
import dataclasses, json, sys
from fulsk_chaos.config import load
from fulsk_chaos.stack import Stack
provider, overrides = sys.argv[1], json.loads(sys.argv[2])
settings = load()
for section, values in overrides.items():
    settings = dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **values)})
stack = Stack(settings, provider)
try:
    stack.start()
finally:
    stack.stop()
timings = stack.timings
print(json.dumps(timings.as_dict() if hasattr(timings, "as_dict") else timings))
"""

START_PHASES = ("prepare", "spawn", "healthy", "after_start", "ready")
STOP_PHASES = ("stop", "remove")


@dataclass
class Variant:
    """One kind of stack measured: a checkout's code, a provider, settings."""
    label: str
    root: Path
    provider: str
    overrides: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]] = field(default_factory=list)  # each run's timings

    @property
    def ours(self) -> bool:
        """This checkout's code, which says where its time went."""
        return self.root == ROOT

    @property
    def monitored(self) -> bool:
        return bool(self.overrides.get("stack", {}).get("monitoring"))

    def run(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(self.root), os.environ.get("PYTHONPATH")]))}
        result = subprocess.run([sys.executable, "-c", WORKER, self.provider, json.dumps(self.overrides)],
                                cwd=self.root, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"{self.label} on {self.provider}: the stack failed (exit {result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
        self.runs.append(json.loads(result.stdout.strip().splitlines()[-1]))

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    def spread(self, key: str) -> str:
        values = [r[key] for r in self.runs]
        return f"{statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})"


@contextmanager
def worktree(commit: str) -> Iterator[tuple[str, Path]]:
    """The commit's tree in a git worktree of this repository, removed afterwards."""
    sha = subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"fulsk-bench-{sha}-") as tmp:
        path = Path(tmp) / "checkout"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), sha], cwd=ROOT, check=True)
        try:
            yield sha, path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)


def current_images() -> dict[str, str]:
    """This checkout's offline image of each service of the base stack."""
    from fulsk_chaos.services import CATALOGUE
    return {spec.name: spec.offline_image for spec in CATALOGUE.specs}


def report(provider: str, variants: list[Variant], rounds: int) -> None:
    print(f"\n{provider}: {rounds} rounds, median (min-max)")
    print(f"  {'':30} {'start→healthy':>24} {'teardown':>24}")
    for v in variants:
        print(f"  {v.label:30} {v.spread('start_to_healthy_s'):>24} {v.spread('teardown_s'):>24}")
    this = variants[0]
    for v in variants[1:]:
        if v.ours and v.monitored:
            print(f"  {'monitoring adds':30} {v.median('start_to_healthy_s') - this.median('start_to_healthy_s'):>+22.2f} s "
                  f"{v.median('teardown_s') - this.median('teardown_s'):>+22.2f} s")
        else:
            print(f"  {'ratio ' + THIS + '/' + v.label:30} "
                  f"{this.median('start_to_healthy_s') / v.median('start_to_healthy_s'):>24.2f} "
                  f"{this.median('teardown_s') / v.median('teardown_s'):>24.2f}")
    for v in variants:
        if v.ours:
            shares(v)


def shares(v: Variant) -> None:
    """Each service's phases and share, and the stack's own steps (medians)."""
    start, teardown = v.median("start_to_healthy_s"), v.median("teardown_s")
    names = list(v.runs[0]["services"])

    def phase(name: str, key: str) -> float:
        return statistics.median(r["services"].get(name, {}).get(key, 0.0) for r in v.runs)

    print(f"\n  {v.label}, {v.provider}: each service's phases, s (a start group's services overlap: shares add up to more)")
    print("  " + f"{'service':18}" + "".join(f"{p:>12}" for p in START_PHASES) + f"{'of start':>9}"
          + "".join(f"{p:>8}" for p in STOP_PHASES) + f"{'of teardown':>12}")
    for name in names:
        up, down = [phase(name, p) for p in START_PHASES], [phase(name, p) for p in STOP_PHASES]
        print("  " + f"{name:18}" + "".join(f"{x:12.3f}" for x in up) + f"{sum(up) / start:9.0%}"
              + "".join(f"{x:8.3f}" for x in down) + f"{sum(down) / teardown:12.0%}")
    for what in ("start", "teardown"):
        print(f"  the stack's own steps, {what} (s):")
        for step in v.runs[0][what]:
            print(f"    {statistics.median(r[what].get(step, 0.0) for r in v.runs):6.3f}  {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=5)
    parser.add_argument("providers", nargs="*", default=["local", "docker"])
    parser.add_argument("--monitoring", action=argparse.BooleanOptionalAction, default=True,
                        help="a monitored stack of this checkout too (default)")
    parser.add_argument("--against", action="append", default=[], metavar="COMMIT",
                        help="that commit's code too, from a git worktree (repeatable)")
    parser.add_argument("--save", type=Path, metavar="FILE", help="every run's timings, as JSON")
    args = parser.parse_args()
    with ExitStack() as cleanup:
        others = [cleanup.enter_context(worktree(commit)) for commit in args.against]
        by_provider: dict[str, list[Variant]] = {}
        for provider in args.providers:
            variants = [Variant(THIS, ROOT, provider, {})]
            if args.monitoring:
                variants.append(Variant(f"{THIS}, monitored", ROOT, provider, {"stack": {"monitoring": True}}))
            pinned = {"docker": {"offline": False, "images": current_images()}} if provider == "docker" else {}
            variants += [Variant(sha, path, provider, pinned) for sha, path in others]
            by_provider[provider] = variants
        for i in range(args.rounds):
            for variants in by_provider.values():
                # the stacks compared one after the other, first and last in turn, the monitored one
                # after them: what runs just before each compared stack is alike
                compared = [v for v in variants if not v.monitored]
                for variant in [*(compared if i % 2 == 0 else reversed(compared)), *(v for v in variants if v.monitored)]:
                    variant.run()
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        for provider, variants in by_provider.items():
            report(provider, variants, args.rounds)
        if args.save:
            args.save.write_text(json.dumps([{"label": v.label, "provider": v.provider, "runs": v.runs}
                                             for variants in by_provider.values() for v in variants], indent=1))


if __name__ == "__main__":
    main()

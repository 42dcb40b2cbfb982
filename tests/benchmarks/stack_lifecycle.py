"""Benchmark: how long each provider's stack takes to start healthy and to tear down.

Runs the providers alternately, side by side in one process, and prints medians and the ratio:
timings on a shared 2-core machine are noisy, so only figures measured together are compared.
Usage: python tests/benchmarks/stack_lifecycle.py [ROUNDS] [PROVIDER ...]
"""
from __future__ import annotations

import statistics
import sys

from fulsk_chaos.config import load
from fulsk_chaos.stack import Stack


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    providers = sys.argv[2:] or ["local", "docker"]
    config = load()
    figures: dict[str, dict[str, list[float]]] = {p: {"start": [], "teardown": []} for p in providers}
    for _ in range(rounds):
        for provider in providers:
            stack = Stack(config, provider)
            try:
                figures[provider]["start"].append(stack.start())
            finally:
                figures[provider]["teardown"].append(stack.stop())
    print(f"{'provider':10} {'start→healthy median':>22} {'min':>7} {'max':>7} {'teardown median':>17}  ({rounds} rounds)")
    for provider, f in figures.items():
        print(f"{provider:10} {statistics.median(f['start']):>20.2f} s {min(f['start']):>6.2f}s {max(f['start']):>6.2f}s "
              f"{statistics.median(f['teardown']):>15.2f} s")
    if len(providers) == 2:
        a, b = (statistics.median(figures[p]["start"]) for p in providers)
        print(f"start ratio {providers[1]}/{providers[0]}: {b / a:.2f}")


if __name__ == "__main__":
    main()

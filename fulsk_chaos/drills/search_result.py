"""What a fault-schedule search found: its failure with how often it reproduced, the coverage of
the reachable states, and the corpus entries worth keeping (drills.corpus)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import CorpusEntry
from .steps import ScheduleStep


@dataclass
class SearchResult:
    profile: str
    seed: int
    examples: int
    steps_run: int
    minimal: list[ScheduleStep] | None = None   # the shrunk failing schedule, if one was found
    failure: str | None = None
    replays: int = 0
    replay_failures: int = 0
    replay_command: str = ""
    search_command: str = ""
    faults_reached: int = 0  # faults that reached their condition (ScheduleRunner.bites)
    faults_not_reached: list[str] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    budget_s: float | None = None
    elapsed_s: float = 0.0
    found_after: int | None = None      # schedules run until the first failure (it included)
    found_at_s: float | None = None     # seconds into the search when it failed
    flaky_rounds: int = 0               # rounds Hypothesis ended on an example it could not replay
    spoiled: int = 0                    # schedules the harness's instrument spoiled (no evidence either way)

    @property
    def reproduced(self) -> str:
        """The failure's reproduction probability as measured: failed replays of replays."""
        return f"{self.replay_failures} of {self.replays}" if self.minimal else ""

    @property
    def nondeterministic(self) -> bool:
        """Failed once in the search and in none of its replays: not reproduced, so not (yet) a
        finding about the stack."""
        return self.minimal is not None and self.replays > 0 and self.replay_failures == 0

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "seed": self.seed, "examples": self.examples, "steps_run": self.steps_run,
                "minimal_failing_schedule": [str(s) for s in self.minimal] if self.minimal else None,
                "failure": self.failure, "replays": self.replays, "replay_failures": self.replay_failures,
                "reproduced": self.reproduced or None, "nondeterministic": self.nondeterministic,
                "replay_command": self.replay_command, "search_command": self.search_command,
                "faults_reached_condition": self.faults_reached, "faults_not_reached": self.faults_not_reached,
                "budget_s": self.budget_s, "elapsed_s": round(self.elapsed_s, 1), "found_after": self.found_after,
                "flaky_rounds": self.flaky_rounds, "spoiled": self.spoiled,
                "found_at_s": None if self.found_at_s is None else round(self.found_at_s, 1)}


def found(result: SearchResult, origin: dict[str, Any]) -> list[CorpusEntry]:
    """What the search found worth keeping: its failing schedule, and the first schedule to reach
    each state (one entry per schedule, naming every state it reached first)."""
    entries = []
    if result.minimal:
        entries.append(CorpusEntry([str(s) for s in result.minimal], "failed", verdict="fail", failure=result.failure,
                                   reproduced=result.reproduced, **origin))
    firsts: dict[tuple[str, ...], list[str]] = {}
    for name, state in result.coverage.get("states", {}).items():
        if state["reached"] and state["first_schedule"]:
            firsts.setdefault(tuple(state["first_schedule"]), []).append(name)
    for steps, names in firsts.items():
        entries.append(CorpusEntry(list(steps), f"reached {names[0]}", reached=names, **origin))
    return entries


def coverage_lines(result: SearchResult, written: list[Path]) -> str:
    """What the terminal says of a search: the states reached, the first schedule of each, the corpus."""
    c = result.coverage
    lines = [f"\nreachable states: {c['reached']} of {c['declared']} reached in {c['schedules']} schedules "
             f"({c['guided_schedules']} guided, {result.elapsed_s:.0f} s)"]
    for name, state in c["states"].items():
        first = (f"first in schedule {state['first_example']} at {state['first_at_s']:.0f} s: "
                 f"{', '.join(state['first_schedule'])}" if state["reached"] else f"not reached (best {state['best']:.2f})")
        lines.append(f"  {'+' if state['reached'] else '-'} {name}: {first}")
    if result.spoiled:
        lines.append(f"spoiled by the harness (no evidence either way, not counted): {result.spoiled} schedules")
    if written:
        lines.append(f"corpus: {len(written)} entries written to {written[0].parent}")
    return "\n".join(lines)

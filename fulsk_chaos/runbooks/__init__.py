"""The ops guide's runbooks as data files operators edit (``fixtures/runbooks/*.yml``), executed
against the stack step by step, timed, and checked for drift from what the stack really is.

    runbook = load("service-restart")          # RunbookError, one line, for any unknown field
    run = Runner.for_stack(stack).run(runbook)  # each step: command, exit, output, verdict, drift
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..services import FIXTURES
from .model import Command, Correction, Runbook, RunbookError, Step, Trigger, parse, read
from .runner import PLACEHOLDERS, Runner, RunbookRun, StepRecord, check_local_mappings, run_in_terminal

RUNBOOK_DIR = FIXTURES / "runbooks"

__all__ = ["Command", "Correction", "PLACEHOLDERS", "RUNBOOK_DIR", "Runbook", "RunbookError", "RunbookRun", "Runner",
           "Step", "StepRecord", "Trigger", "load", "load_all", "names", "parse", "read", "run_in_terminal",
           "vocabulary"]


def vocabulary() -> dict[str, frozenset[str]]:
    """The names a runbook file may use: placeholders, fault kinds, conditions and checks."""
    from ..faults import CATALOGUE
    import_module(f"{__name__}.scaling")  # registers its condition and check (it needs the load package)
    from .drill import CHECKS, CONDITIONS
    return {"placeholders": PLACEHOLDERS, "faults": frozenset(CATALOGUE), "conditions": frozenset(CONDITIONS),
            "checks": frozenset(CHECKS)}


def names(directory: Path = RUNBOOK_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yml"))


def load(name: str, directory: Path = RUNBOOK_DIR) -> Runbook:
    """The runbook ``name`` (a file's stem, or a path to a .yml file), read and checked in full."""
    path = Path(name) if name.endswith((".yml", ".yaml")) else directory / f"{name}.yml"
    if not path.is_file():
        known = names(directory)
        raise RunbookError(f"no runbook {name!r}: choose one of {', '.join(known) or '(none)'} "
                           f"(files in {directory})")
    runbook = read(path, **vocabulary())
    check_local_mappings(runbook)
    return runbook


def load_all(directory: Path = RUNBOOK_DIR) -> list[Runbook]:
    return [load(name, directory) for name in names(directory)]

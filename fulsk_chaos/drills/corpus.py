"""The corpus: every schedule a search found worth keeping - one that failed, or the first to
reach a state of the catalogue (drills.reach) - saved with what replays it (its steps, as
``--schedule-replay`` takes them), where it came from (seed, profile, project commit, provider,
backend) and what it did (its verdict, how often it reproduced). After TigerBeetle's VOPR and
FoundationDB's simulation: a seed that found something is a regression case for good.

A search writes ``reports/corpus/*.json``; ``fulsk-chaos corpus add FILE`` promotes one (or the
entries of a results.json) into ``fixtures/corpus/``, which ``nox -s tests`` replays, each case
judged like a scenario (scenarios/test_corpus.py).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FulskChaosError

FORMAT = "fulsk-chaos/corpus/1"
COMMITTED = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"


@dataclass(frozen=True)
class CorpusEntry:
    steps: list[str]              # KIND:TARGET or heal, in order: what --schedule-replay takes
    why: str                      # "failed", or "reached STATE"
    seed: int | None = None
    profile: str = ""
    commit: str = ""
    provider: str = ""
    backend: dict[str, Any] = field(default_factory=dict)  # its contract, command and environment (bug switches)
    verdict: str = ""             # what the search saw: "fail" with failure, or "pass"
    failure: str | None = None
    reproduced: str = ""          # "k of n" for a failure
    reached: list[str] = field(default_factory=list)  # the states this schedule reached first

    @property
    def name(self) -> str:
        digest = hashlib.sha1(",".join(self.steps).encode()).hexdigest()[:10]
        slug = self.why.replace("reached ", "").replace(" ", "-")
        return f"{slug}-{digest}"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "") -> "CorpusEntry":
        if data.get("format") != FORMAT:
            raise FulskChaosError(f"{where or 'corpus entry'}: format {data.get('format')!r}, expected {FORMAT!r}: "
                                  "write it with a search (reports/corpus/) or `fulsk-chaos corpus add`")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known - {"format"})
        if unknown or not isinstance(data.get("steps"), list) or not data["steps"]:
            raise FulskChaosError(f"{where or 'corpus entry'}: " + (f"unknown keys {unknown}" if unknown else
                                                                     "steps must be a non-empty list"))
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def read(path: Path) -> CorpusEntry:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FulskChaosError(f"corpus entry {path}: {exc}") from None
    return CorpusEntry.from_json(data, str(path))


def entries(directory: Path = COMMITTED) -> list[tuple[Path, CorpusEntry]]:
    return [(p, read(p)) for p in sorted(Path(directory).glob("*.json"))]


def project_commit() -> str:
    """The commit the search ran on, and '+changes' when the work tree differed from it."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+changes" if head and dirty else "")


def from_results(path: Path) -> list[CorpusEntry]:
    """The corpus entries a run found: a corpus file itself, or every entry of a results.json."""
    data = json.loads(Path(path).read_text())
    if data.get("format") == FORMAT:
        return [CorpusEntry.from_json(data, str(path))]
    found = [CorpusEntry.from_json(e, f"{path}: {s.get('name', '?')}")
             for s in data.get("scenarios", []) for e in (s.get("measurements") or {}).get("corpus") or []]
    if not found:
        raise FulskChaosError(f"{path}: no corpus entry in it (a schedule search writes them; a run without one "
                              "found nothing to keep)")
    return found


def add(path: Path, directory: Path = COMMITTED, *, failed_only: bool = False) -> list[Path]:
    """Promote what ``path`` found into the committed corpus; return the files written."""
    return [e.write(directory) for e in from_results(path) if not failed_only or e.why == "failed"]

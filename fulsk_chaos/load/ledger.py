"""What the load's inverters sent and the broker acknowledged, read back from the Locust processes'
ledger files: the same promise the scenario's own fleet is held to (see checks.ledger)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checks.ledger import Key


class LoadLedger:
    """A sender for ``checks.ledger.settle``: every reading the load sent, and which were acknowledged."""

    def __init__(self, directory: Path) -> None:
        self._sent: dict[Key, dict[str, Any]] = {}
        self._acked: set[Key] = set()
        for path in sorted(Path(directory).glob("ledger-*.jsonl")):
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                key = (entry["k"][0], int(entry["k"][1]))
                if "v" in entry:
                    self._sent[key] = entry["v"]
                if entry.get("acked"):
                    self._acked.add(key)

    @property
    def inverter_ids(self) -> list[str]:
        return sorted({k[0] for k in self._sent})

    def sent(self) -> dict[Key, dict[str, Any]]:
        return dict(self._sent)

    def acked(self, before: float | None = None, after: float | None = None) -> set[Key]:
        return set(self._acked)

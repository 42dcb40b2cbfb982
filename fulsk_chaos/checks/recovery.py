"""Recovery, measured: from a dependency being back to the stack being in steady state again."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..probes import Fleet, Probe
from .ledger import read_stored


@dataclass(frozen=True)
class Recovery:
    api_s: float | None      # until /health and the API stay healthy for the streak
    ingest_s: float | None   # until every reading acknowledged before the return is stored

    @property
    def recovery_s(self) -> float | None:
        if self.api_s is None or self.ingest_s is None:
            return None
        return max(self.api_s, self.ingest_s)


def wait_for_recovery(probe: Probe, fleet: Fleet, dsn: str, since: float, *, target_s: float, streak_s: float,
                      poll_s: float = 0.2) -> Recovery:
    """Poll until both paths have recovered or ``target_s`` (plus the streak) has passed."""
    backlog = fleet.acked(before=since)
    deadline = since + target_s + streak_s
    api_at = ingest_at = None
    while True:
        if ingest_at is None:
            try:
                if backlog <= set(read_stored(dsn, fleet.inverter_ids, timeout_s=2)):
                    ingest_at = time.monotonic()
            except Exception:  # noqa: BLE001 - the database may still refuse us: not recovered yet
                pass
        if api_at is None:
            api_at = probe.samples.first_streak(since, streak_s)
        if (api_at is not None and ingest_at is not None) or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    return Recovery(api_s=None if api_at is None else api_at - since,
                    ingest_s=None if ingest_at is None else ingest_at - since)

"""The ledger check (Jepsen's set checker) for telemetry: what was promised against what is stored.

The contract with the backend under test: readings land in a table ``readings`` with columns
``inverter_id`` and ``seq``.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import psycopg

Key = tuple[str, int]


@dataclass(frozen=True)
class LedgerResult:
    sent: int
    acked: int
    stored: int
    lost: list[Key] = field(default_factory=list)        # acknowledged by the broker, not stored
    unexpected: list[Key] = field(default_factory=list)  # stored, never sent
    duplicates: list[Key] = field(default_factory=list)  # stored more than once
    unacked_stored: int = 0                              # sent, not acknowledged, stored anyway: allowed

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexpected

    def describe(self, limit: int = 5) -> str:
        def show(keys: list[Key]) -> str:
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            return ", ".join(f"{i}#{s}" for i, s in keys[:limit]) + more
        parts = [f"{self.acked} acknowledged, {self.stored} stored"]
        if self.lost:
            parts.append(f"{len(self.lost)} LOST ({show(self.lost)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} UNEXPECTED ({show(self.unexpected)})")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicated ({show(self.duplicates)})")
        return "; ".join(parts)


def check_ledger(sent: Iterable[Key], acked: Iterable[Key], stored: Mapping[Key, int]) -> LedgerResult:
    sent, acked = set(sent), set(acked)
    if not acked <= sent:
        raise ValueError(f"{len(acked - sent)} acknowledged keys were never sent: the fleet's record is broken")
    present = set(stored)
    return LedgerResult(
        sent=len(sent), acked=len(acked), stored=len(present),
        lost=sorted(acked - present),
        unexpected=sorted(present - sent),
        duplicates=sorted(k for k, n in stored.items() if n > 1),
        unacked_stored=len((sent - acked) & present),
    )


def read_stored(dsn: str, inverter_ids: Iterable[str], timeout_s: float = 10.0) -> Counter[Key]:
    """How many times each (inverter_id, seq) of these inverters is stored, read straight from PostgreSQL."""
    ids = list(inverter_ids)
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        rows = conn.execute(
            "SELECT inverter_id, seq, count(*) FROM readings WHERE inverter_id = ANY(%s) GROUP BY 1, 2",
            (ids,)).fetchall()
    return Counter({(inverter_id, int(seq)): int(n) for inverter_id, seq, n in rows})


def settle(sent: Callable[[], set[Key]], acked: Callable[[], set[Key]], dsn: str, inverter_ids: list[str], *,
           timeout_s: float, quiet_s: float = 2.0, poll_s: float = 0.2) -> LedgerResult:
    """The ledger once the pipeline has drained: nothing is missing, or nothing new was stored for
    ``quiet_s`` (what is missing then stays missing), or ``timeout_s`` passed.

    Readings acknowledged just before the fleet stopped may still be on their way to the database:
    reading the ledger at once would call them lost.
    """
    deadline = time.monotonic() + timeout_s
    last_count, last_change = -1, time.monotonic()
    while True:
        stored = read_stored(dsn, inverter_ids)
        result = check_ledger(sent(), acked(), stored)
        now = time.monotonic()
        if sum(stored.values()) != last_count:
            last_count, last_change = sum(stored.values()), now
        if not result.lost or now - last_change >= quiet_s or now >= deadline:
            return result
        time.sleep(poll_s)

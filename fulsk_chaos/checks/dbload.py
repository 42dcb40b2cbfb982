"""The database's load, measured in PostgreSQL itself (pg_stat_statements), not in the backend's
own counters: a cache that refills by hammering the database (a stampede) shows up here however
the backend counts.
"""
from __future__ import annotations

import re

import time
from dataclasses import dataclass, field

import psycopg

from ..figures import DbReadFigures
from ..probes import Samples
from ..probes.http import READS
from ..probes.truth import OURS
from ..verdict import Expectation, at_most

_WRITES = ("insert", "update", "delete", "create", "alter", "drop", "truncate", "copy")


def read_statement_stats(dsn: str, timeout_s: float = 5.0) -> dict[int, tuple[str, int, float]] | None:
    """{queryid: (query, calls, total execution ms)} of this database's statements; None without
    pg_stat_statements."""
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))) as conn:
            conn.execute(f"{OURS} SET statement_timeout = {int(timeout_s * 1000)}")
            rows = conn.execute(f"{OURS} SELECT queryid, query, calls, total_exec_time FROM pg_stat_statements "
                                f"WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                                ).fetchall()
    except psycopg.Error:
        return None
    return {r[0]: (r[1], r[2], float(r[3])) for r in rows}


def read_statement_calls(dsn: str, timeout_s: float = 5.0) -> dict[int, tuple[str, int]] | None:
    """{queryid: (query, calls)} of this database's statements; None without pg_stat_statements."""
    stats = read_statement_stats(dsn, timeout_s)
    return None if stats is None else {q: (text, calls) for q, (text, calls, _) in stats.items()}


@dataclass(frozen=True)
class StatementTime:
    query: str
    calls: int
    mean_ms: float


def query_times(before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]],
                min_calls: int = 1) -> list[StatementTime]:
    """The stack's statements run between two snapshots, slowest mean first (the framework's own left
    out). pg_stat_statements keeps means, not percentiles: the database-query baseline is judged on
    the slowest statement's mean."""
    times = []
    for queryid, (query, calls, total) in after.items():
        old_calls, old_total = before.get(queryid, (query, 0, 0.0))[1:]
        if OURS in query or calls - old_calls < min_calls:
            continue
        times.append(StatementTime(" ".join(query.split())[:120], calls - old_calls,
                                   (total - old_total) / (calls - old_calls)))
    return sorted(times, key=lambda t: -t.mean_ms)


def is_user_read(query: str) -> bool:
    """A statement reading the backend's tables for users, whatever they are called: not ours,
    not a write, not a bare ping (no FROM), not a read of PostgreSQL's own catalogue."""
    text = " ".join(query.lower().split())
    return (OURS not in query and " from " in f" {text} " and not any(w in text for w in _WRITES)
            and not re.search(r"\bfrom (pg_catalog\.|information_schema\.|pg_)", text))


@dataclass
class DbLoadWindow:
    """Statement calls between enter and exit (monotonic times ``start``..``end``)."""
    dsn: str
    start: float = 0.0
    end: float = 0.0
    before: dict[int, tuple[str, int]] | None = None
    after: dict[int, tuple[str, int]] | None = None
    per_statement: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> "DbLoadWindow":
        self.before = read_statement_calls(self.dsn)
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = time.monotonic()
        self.after = read_statement_calls(self.dsn)

    @property
    def reads(self) -> int | None:
        if self.before is None or self.after is None:
            return None
        self.per_statement = {}
        for queryid, (query, calls) in self.after.items():
            delta = calls - self.before.get(queryid, (query, 0))[1]
            if delta > 0 and is_user_read(query):
                self.per_statement[" ".join(query.split())[:80]] = delta
        return sum(self.per_statement.values())

    def expectation(self, phase: str, samples: Samples, max_per_read: float, other_user_reads: int = 0) -> Expectation:
        """``other_user_reads``: API reads other clients answered meanwhile (a background load's)."""
        probe = len(samples.window(self.start, self.end).target(*READS).where(
            lambda s: s.answered))
        users = probe + other_user_reads
        reads = self.reads
        ratio = None if reads is None or not users else reads / users
        top = sorted(self.per_statement.items(), key=lambda kv: -kv[1])[:3]
        return at_most(f"{phase}: database reads per user read (no stampede)", ratio, max_per_read,
                       evidence={"database_reads": reads, "user_reads": users, "of_them_background_load": other_user_reads},
                       detail="pg_stat_statements is not available" if reads is None else
                       "; ".join(f"{calls}x {q}" for q, calls in top))

    def figures(self, phase: str) -> DbReadFigures:
        return DbReadFigures(phase, db_reads=self.reads, db_reads_by_statement=dict(self.per_statement))

"""What the database holds, read beside what users are served: the record a restore drill's
checks judge (checks.answers, checks.restore). Reading only; nothing here decides anything."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

OURS = "/* fulsk-chaos */"  # marks the framework's own statements, which are not the stack's load


@dataclass(frozen=True)
class AnswerBeside:
    """One inverter's answers (latest reading, recent history) and what the database held around them."""
    inverter: str
    latest_status: int
    latest_seq: int | None               # the reading served as the latest
    served_ts: float | None              # the database's timestamp of that reading (None: it does not hold it)
    newest: tuple[int, float] | None     # the database's newest reading (seq, epoch)
    history_status: int
    history: frozenset[int] | None       # the history's readings (None: not answered)
    held_before: frozenset[int]          # the database's readings in the span, read before the history...
    held_after: frozenset[int]           # ...and after it (it may commit meanwhile)


def answers_beside_database(dsn: str, frontend_url: str, inverter_ids: Sequence[str], timeout_s: float,
                            span_s: tuple[float, float] = (30.0, 2.0)) -> list[AnswerBeside]:
    """Each inverter's latest reading and recent history as users get them (through the
    frontend), beside what the database holds."""
    import psycopg
    import requests
    now = time.time()
    start, end = round(now - span_s[0], 3), round(now - span_s[1], 3)
    found = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn, requests.Session() as http:
        for inverter in inverter_ids:
            newest = _latest(conn, inverter)
            latest = http.get(f"{frontend_url}/api/inverters/{inverter}/latest", timeout=timeout_s)
            seq = int(latest.json()["seq"]) if latest.status_code == 200 else None
            stored = None if seq is None else conn.execute(
                OURS + " SELECT extract(epoch FROM ts) FROM readings WHERE inverter_id = %s AND seq = %s",
                (inverter, seq)).fetchone()
            before = _seqs(conn, inverter, start, end)
            history = http.get(f"{frontend_url}/api/inverters/{inverter}/readings?from={start}&to={end}",
                               timeout=timeout_s)
            after = _seqs(conn, inverter, start, end)
            served = frozenset(int(r["seq"]) for r in history.json().get("readings", [])) if history.ok else None
            found.append(AnswerBeside(inverter, latest.status_code, seq, float(stored[0]) if stored else None, newest,
                                      history.status_code, served, before, after))
    return found


def _latest(conn: Any, inverter: str) -> tuple[int, float] | None:
    row = conn.execute(OURS + " SELECT seq, extract(epoch FROM ts) FROM readings WHERE inverter_id = %s "
                       "ORDER BY ts DESC LIMIT 1", (inverter,)).fetchone()
    return (int(row[0]), float(row[1])) if row else None


def _seqs(conn: Any, inverter: str, start: float, end: float) -> frozenset[int]:
    rows = conn.execute(OURS + " SELECT seq FROM readings WHERE inverter_id = %s AND ts >= to_timestamp(%s) "
                        "AND ts <= to_timestamp(%s)", (inverter, start, end)).fetchall()
    return frozenset(int(r[0]) for r in rows)


def schema(dsn: str) -> list[str]:
    """The public schema as comparable lines: every column with its type, every index."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        columns = conn.execute(
            OURS + " SELECT table_name || '.' || column_name || ' ' || data_type || "
            "CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1").fetchall()
        indexes = conn.execute(OURS + " SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "ORDER BY 1").fetchall()
    return [r[0] for r in columns] + [r[0] for r in indexes]


DIGEST = (OURS + " SELECT count(*), md5(string_agg(inverter_id || seq::text || power_w::text, ',' "
          "ORDER BY inverter_id, seq)) FROM readings WHERE ts < %s")


def live_state(dsn: str, redis_url: str) -> dict[str, Any]:
    """What a refused restore must not touch: when the servers started, and the rows stored a
    second ago (their count and digest, up to ``cutoff``)."""
    import psycopg
    import redis
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        cutoff = conn.execute("SELECT now() - interval '1 second'").fetchone()[0]
        rows, digest = conn.execute(DIGEST, (cutoff,)).fetchone()
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        run_id = client.info("server")["run_id"]
    finally:
        client.close()
    return {"postgres_started": started.isoformat(), "cutoff": cutoff, "rows": rows, "digest": digest,
            "redis_run_id": run_id}


def rows_until(dsn: str, cutoff: Any) -> tuple[int, str]:
    """The count and digest of the rows stored before ``cutoff``."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        rows, digest = conn.execute(DIGEST, (cutoff,)).fetchone()
    return rows, digest

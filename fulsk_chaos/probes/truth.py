"""What the database holds, read beside what users are served: the record a restore drill's
checks judge (checks.answers, checks.restore). Reading only; nothing here decides anything."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..contract import Contract, Read, from_epoch, to_epoch

OURS = "/* fulsk-chaos */"  # marks the framework's own statements, which are not the stack's load


@dataclass(frozen=True)
class AnswerBeside:
    """One inverter's answers (latest reading, recent history) and what the database held around them."""
    inverter: str
    latest_status: int
    latest_seq: int | None               # the reading served as the latest (its identity: seq, or ts in ms)
    served_ts: float | None              # the database's timestamp of that reading (None: it does not hold it)
    newest: tuple[int, float] | None     # the database's newest reading (identity, epoch)
    history_status: int
    history: frozenset[int] | None       # the history's readings (None: not answered)
    held_before: frozenset[int]          # the database's readings in the span, read before the history...
    held_after: frozenset[int]           # ...and after it (it may commit meanwhile)


def answers_beside_database(dsn: str, frontend_url: str, inverter_ids: Sequence[str], timeout_s: float,
                            span_s: tuple[float, float] = (30.0, 2.0), contract: Contract = Contract()
                            ) -> list[AnswerBeside]:
    """Each inverter's latest reading and recent history as users get them (through the
    frontend, on the contract's paths), beside what the database holds (its ledger query);
    readings are told apart by the contract's identity (seq, or timestamp in ms)."""
    import psycopg
    import requests
    reads = contract.reads
    now = time.time()
    start, end = round(now - span_s[0], 3), round(now - span_s[1], 3)
    form = reads.history.units.timestamp
    found = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn, requests.Session() as http:
        for inverter in inverter_ids:
            stored = _stored(conn, contract, inverter)  # identity -> epoch
            newest = max(stored.items(), key=lambda kv: kv[1], default=None)
            latest = http.get(frontend_url + reads.latest.path.format(inverter=inverter), timeout=timeout_s)
            served = _identities(contract, inverter, reads.latest, latest.json()) if latest.status_code == 200 else []
            seq = served[0] if served else None
            before = frozenset(k for k, ts in stored.items() if start <= ts <= end)
            history = http.get(frontend_url + reads.history.path.format(
                inverter=inverter, **{"from": from_epoch(start, form), "to": from_epoch(end, form)}), timeout=timeout_s)
            stored_after = _stored(conn, contract, inverter)
            after = frozenset(k for k, ts in stored_after.items() if start <= ts <= end)
            in_history = (frozenset(_identities(contract, inverter, reads.history, history.json())) if history.ok
                          else None)
            held = stored_after.get(seq) if seq is not None else None  # read after it was served: it holds it now
            found.append(AnswerBeside(inverter, latest.status_code, seq, held, newest, history.status_code, in_history,
                                      before, after))
    return found


def _identities(contract: Contract, inverter: str, read: Read, body: Any) -> list[int]:
    """The identities of the readings an answer carries (empty: none the contract can read)."""
    try:
        return [contract.key({"inverter_id": inverter, **row})[1] for row in read.rows(body)]
    except (KeyError, TypeError, ValueError, IndexError):
        return []


def _stored(conn: Any, contract: Contract, inverter: str) -> dict[int, float]:
    """The inverter's stored readings, identity -> timestamp (epoch), by the contract's ledger query."""
    identity = contract.ledger.identity
    column = "ts" if identity == "ts" else f"{identity}, ts"
    rows = conn.execute(f"{OURS} SELECT {column} FROM ({contract.ledger.query}) AS stored",
                        {"ids": [inverter]}).fetchall()
    found = {}
    for row in rows:
        ts = to_epoch(row[-1], "epoch_s")  # a timestamptz, ISO text or a number
        found[int(round(ts * 1000)) if identity == "ts" else int(row[0])] = ts
    return found


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


def _digest(conn: Any, contract: Contract, cutoff: Any) -> tuple[int, str]:
    """How many readings were stored before ``cutoff``, and a digest of them (by the contract's
    ledger query, over every inverter it lists)."""
    ids = [r[0] for r in conn.execute(f"{OURS} SELECT inverter_id FROM ({contract.ledger.inverters}) AS i").fetchall()]
    order = "inverter_id, ts" if contract.ledger.identity == "ts" else f"inverter_id, {contract.ledger.identity}"
    return conn.execute(
        f"{OURS} SELECT count(*), md5(string_agg(inverter_id || ts::text || power_w::text, ',' ORDER BY {order})) "
        f"FROM ({contract.ledger.query}) AS stored WHERE ts < %(cutoff)s", {"ids": ids, "cutoff": cutoff}).fetchone()


def live_state(dsn: str, redis_url: str, contract: Contract = Contract()) -> dict[str, Any]:
    """What a refused restore must not touch: when the servers started, and the rows stored a
    second ago (their count and digest, up to ``cutoff``)."""
    import psycopg
    import redis
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        cutoff = conn.execute("SELECT now() - interval '1 second'").fetchone()[0]
        rows, digest = _digest(conn, contract, cutoff)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        run_id = client.info("server")["run_id"]
    finally:
        client.close()
    return {"postgres_started": started.isoformat(), "cutoff": cutoff, "rows": rows, "digest": digest,
            "redis_run_id": run_id}


def rows_until(dsn: str, cutoff: Any, contract: Contract = Contract()) -> tuple[int, str]:
    """The count and digest of the rows stored before ``cutoff``."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return _digest(conn, contract, cutoff)

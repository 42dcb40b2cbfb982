"""The ledger check (Jepsen's set checker) for telemetry: what was promised against what is stored.

Every reading the broker acknowledged must be stored, once, with the values the inverter sent.
The contract with the backend under test: readings land in a table ``readings`` with columns
``inverter_id``, ``seq``, ``ts``, ``site_id``, ``power_w`` and ``energy_wh``.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

import psycopg

from ..contract import Contract
from ..errors import FulskChaosError
from ..figures import LedgerFigures
from ..verdict import Expectation, none_of, skipped
from .dbload import OURS

Key = tuple[str, int]
Values = Mapping[str, Any]
FIELDS = ("site_id", "ts", "power_w", "energy_wh")
TS_TOLERANCE_S = 0.0005  # readings carry millisecond timestamps; any backend stores those exactly


class ContractError(FulskChaosError, RuntimeError):
    """The backend's storage does not follow the contract the ledger reads."""


@dataclass(frozen=True)
class Alteration:
    key: Key
    field: str
    sent: Any
    stored: Any

    def describe(self) -> str:
        return f"{self.key[0]}#{self.key[1]} {self.field} sent {self.sent!r}, stored {self.stored!r}"


@dataclass(frozen=True)
class LedgerResult:
    sent: int
    acked: int
    stored: int
    lost: list[Key] = field(default_factory=list)        # acknowledged by the broker, not stored
    unexpected: list[Key] = field(default_factory=list)  # stored, never sent
    duplicates: list[Key] = field(default_factory=list)  # stored more than once
    altered: list[Alteration] = field(default_factory=list)  # stored with other values than sent
    unacked_stored: int = 0                              # sent, not acknowledged, stored anyway: allowed
    allow_duplicates: bool = False
    duplicates_skipped: str = ""  # why duplicates are not judged: the backend declares no idempotent writes

    @property
    def ok(self) -> bool:
        return all(e.held for e in self.expectations())

    def expectations(self) -> list[Expectation]:
        evidence = {"acked": self.acked, "sent": self.sent, "stored": self.stored}
        checks = [
            none_of("lost (acknowledged, not stored)", len(self.lost), evidence=evidence, detail=show_keys(self.lost)),
            none_of("unexpected (stored, never sent)", len(self.unexpected), evidence=evidence,
                    detail=show_keys(self.unexpected)),
            none_of("altered (stored with other values)", len(self.altered), evidence=evidence,
                    detail=", ".join(a.describe() for a in self.altered[:3])),
        ]
        if self.duplicates_skipped:
            checks.append(skipped("duplicates (stored more than once)", self.duplicates_skipped))
        elif not self.allow_duplicates:
            checks.append(none_of("duplicates (stored more than once)", len(self.duplicates), evidence=evidence,
                                  detail=show_keys(self.duplicates)))
        return checks

    def figures(self) -> LedgerFigures:
        return LedgerFigures(sent=self.sent, acked=self.acked, stored=self.stored, lost=len(self.lost),
                             unexpected=len(self.unexpected), duplicates=len(self.duplicates),
                             altered=len(self.altered), unacked_stored=self.unacked_stored)

    def describe(self) -> str:
        parts = [f"{self.acked} acknowledged, {self.stored} stored"]
        for name, keys in (("LOST", self.lost), ("UNEXPECTED", self.unexpected), ("duplicated", self.duplicates)):
            if keys:
                parts.append(f"{len(keys)} {name} ({show_keys(keys)})")
        if self.altered:
            parts.append(f"{len(self.altered)} ALTERED ({', '.join(a.describe() for a in self.altered[:3])})")
        return "; ".join(parts)


def show_keys(keys: Sequence[Key], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(f"{i}#{s}" for i, s in keys[:limit]) + more


def same_value(field_name: str, sent: Any, stored: Any) -> bool:
    if field_name == "ts":
        try:
            return abs(epoch(sent) - epoch(stored)) <= TS_TOLERANCE_S
        except (TypeError, ValueError, OverflowError):
            return False
    if isinstance(sent, float) or isinstance(stored, float):
        try:
            return math.isclose(float(sent), float(stored), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return sent == stored


def epoch(value: Any) -> float:
    """Epoch seconds of a timestamp as a backend may give it: a datetime, ISO 8601 text, or a number."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


def check_ledger(sent: Mapping[Key, Values], acked: Iterable[Key], stored: Mapping[Key, Sequence[Values]], *,
                 allow_duplicates: bool = False) -> LedgerResult:
    """``sent``: every reading sent, with its values; ``stored``: every row stored, per key."""
    acked = set(acked)
    if not acked <= set(sent):
        raise ValueError(f"{len(acked - set(sent))} acknowledged keys were never sent: the fleet's record is broken")
    present = {k for k, rows in stored.items() if rows}
    altered = []
    for key in sorted(present & set(sent)):
        for row in stored[key]:
            for name in FIELDS:
                if name in sent[key] and not same_value(name, sent[key][name], row.get(name)):
                    altered.append(Alteration(key, name, sent[key][name], row.get(name)))
                    break
            else:
                continue
            break
    return LedgerResult(
        sent=len(sent), acked=len(acked), stored=len(present),
        lost=sorted(acked - present),
        unexpected=sorted(present - set(sent)),
        duplicates=sorted(k for k in present if len(stored[k]) > 1),
        altered=altered,
        unacked_stored=len((set(sent) - acked) & present),
        allow_duplicates=allow_duplicates,
    )


def _identity(contract: Contract, inverter_id: Any, value: Any) -> Key:
    """A stored reading's key, as the contract identifies it (seq, or its timestamp in ms)."""
    if contract.ledger.identity == "ts":
        return str(inverter_id), int(round(epoch(value) * 1000))
    return str(inverter_id), int(value)


def _query(conn: psycopg.Connection, contract: Contract, sql: str, params: dict[str, Any]) -> list[Any]:
    """A query over the contract's ledger query (``stored``: its rows, under canonical names)."""
    try:
        return conn.execute(f"{OURS} {sql.format(stored=f'({contract.ledger.query}) AS stored')}", params).fetchall()
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable, psycopg.errors.SyntaxError) as exc:
        raise ContractError(f"the backend contract's ledger query ({contract.name}) does not read what the ledger "
                            f"needs ({str(exc).splitlines()[0]}): it must return inverter_id, "
                            f"{contract.ledger.identity}, {', '.join(FIELDS)} for the ids in %(ids)s") from None


def read_stored(dsn: str, inverter_ids: Iterable[str], timeout_s: float = 10.0, *,
                contract: Contract = Contract()) -> dict[Key, list[dict[str, Any]]]:
    """Every stored row of these inverters, per key, read straight from the database by the
    backend contract's ledger query."""
    identity = contract.ledger.identity
    columns = ", ".join(["inverter_id", *([identity] if identity != "ts" else []), *FIELDS])
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        rows = _query(conn, contract, f"SELECT {columns} FROM {{stored}}", {"ids": list(inverter_ids)})
    stored: dict[Key, list[dict[str, Any]]] = {}
    for inverter_id, *rest in rows:
        values = dict(zip(FIELDS, rest[-len(FIELDS):]))
        key = _identity(contract, inverter_id, values["ts"] if identity == "ts" else rest[0])
        stored.setdefault(key, []).append(values)
    return stored


def stored_keys(dsn: str, inverter_ids: Iterable[str], timeout_s: float = 2.0, *,
                contract: Contract = Contract()) -> Counter[Key]:
    """How many times each key is stored (cheap: for polling while the pipeline drains)."""
    identity = contract.ledger.identity
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        rows = _query(conn, contract, f"SELECT inverter_id, {identity}, count(*) FROM {{stored}} GROUP BY 1, 2",
                      {"ids": list(inverter_ids)})
    return Counter({_identity(contract, i, s): int(n) for i, s, n in rows})


class Sender(Protocol):
    inverter_ids: list[str]

    def sent(self) -> dict[Key, Values]: ...

    def acked(self, before: float | None = None, after: float | None = None) -> set[Key]: ...


def settle(fleet: Sender, dsn: str, *, timeout_s: float, allow_duplicates: bool = False, quiet_s: float = 2.0,
           poll_s: float = 0.2, contract: Contract = Contract()) -> LedgerResult:
    """The ledger once the pipeline has drained: nothing is missing, or nothing new was stored for
    ``quiet_s`` (what is missing then stays missing), or ``timeout_s`` passed.

    Readings acknowledged just before the fleet stopped may still be on their way to the database:
    reading the ledger at once would call them lost.
    """
    deadline = time.monotonic() + timeout_s
    last_count, last_change = -1, time.monotonic()
    acked = fleet.acked()
    while True:
        counts = stored_keys(dsn, fleet.inverter_ids, timeout_s=5, contract=contract)
        now = time.monotonic()
        if sum(counts.values()) != last_count:
            last_count, last_change = sum(counts.values()), now
        if acked <= set(counts) or now - last_change >= quiet_s or now >= deadline:
            break
        time.sleep(poll_s)
    return check_ledger(fleet.sent(), acked, read_stored(dsn, fleet.inverter_ids, contract=contract),
                        allow_duplicates=allow_duplicates)


def stored_with_prefix(dsn: str, prefix: str, timeout_s: float = 5.0, *, contract: Contract = Contract()
                       ) -> list[str]:
    """Inverter ids starting with ``prefix`` that have rows stored (e.g. ids only garbage carried),
    from the contract's list of stored inverters."""
    with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        rows = conn.execute(f"{OURS} SELECT DISTINCT inverter_id FROM ({contract.ledger.inverters}) AS stored "
                            f"WHERE starts_with(inverter_id, %(prefix)s)", {"prefix": prefix}).fetchall()
    return [r[0] for r in rows]


def never_stored(dsn: str, prefix: str, what: str, contract: Contract = Contract()) -> Expectation:
    """Nothing that was not a reading may be stored as one."""
    try:
        found = stored_with_prefix(dsn, prefix, contract=contract)
    except psycopg.Error as exc:
        return none_of(f"{what} stored", None, detail=f"could not be read: {exc}")
    return none_of(f"{what} stored", len(found), evidence={"prefix": prefix},
                   detail=", ".join(repr(i) for i in found[:5]))

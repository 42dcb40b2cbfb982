"""What users see, judged against what the inverters said: is what is served fresh, complete, and
the readings that were sent?

Every data answer is judged against the fleet's record of what the broker acknowledged:

- an inverter's latest reading must be that inverter's, one that was sent, with its values; it
  may lag the newest reading the broker had acknowledged by little (a 404 while the broker holds
  acknowledged readings lags by all of them);
- an inverter's history (the contract's ``reads.history``) must hold each reading of the range once, with
  its values; a reading the broker acknowledged that is missing from it makes the answer lag;
- the inverter list (``reads.listing``) must list each of the fleet's inverters, its
  ``last_seen`` close behind the newest reading acknowledged.

``staleness_s`` is how far an answer lags what the broker had acknowledged; ``wrong`` says why an
answer is not the truth at all.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..contract import Read, at, to_epoch
from ..probes import FleetRecord, Sample
from .ledger import FIELDS, same_value


@dataclass(frozen=True)
class Served:
    """A data answer that could be judged."""
    sample: Sample
    staleness_s: float | None  # None when the answer was wrong
    wrong: str | None = None
    # the answer could not be read as the backend's contract says at all (its path, its fields):
    # the contract's fault as likely as the backend's (see contract_fits)
    unreadable: bool = False

    def fresh(self, max_staleness_s: float) -> bool:
        return self.wrong is None and self.staleness_s is not None and self.staleness_s <= max_staleness_s


def answered_ok(sample: Sample) -> bool:
    """An answer that is not an error: 2xx, or a latest-reading 404 (judged for freshness instead)."""
    return sample.ok or (sample.target == "latest" and sample.status == 404)


def judge_answer(sample: Sample, fleet: FleetRecord) -> Served | None:
    """None when there is nothing to judge: not a data answer, no answer (an error, counted
    elsewhere), or nothing acknowledged yet that it should hold."""
    if sample.target == "latest":
        return judge_latest(sample, fleet)
    if sample.target == "history" and sample.ok:
        return judge_history(sample, fleet)
    if sample.meta.get("listing") and sample.ok:
        return judge_listing(sample, fleet)
    if sample.target == "generation" and sample.ok:
        return judge_generation(sample, fleet)
    return None


def _wrong_values(key: tuple[str, int], served: dict[str, Any], fleet: FleetRecord) -> str | None:
    message = fleet.by_key.get(key)
    if message is None:
        return f"served {key[0]}#{key[1]}, which was never sent"
    for name in FIELDS:
        if name in served and not same_value(name, message.values[name], served[name]):
            return f"served {key[0]}#{key[1]} with {name} {served[name]!r}, sent {message.values[name]!r}"
    return None


def _rows(read: Read, body: Any) -> list[dict[str, Any]] | None:
    """The answer's readings as the backend's contract reads them; None: not what it says."""
    try:
        return read.rows(body)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _key(fleet: FleetRecord, row: dict[str, Any]) -> tuple[str, int] | None:
    try:
        return fleet.contract.key(row)
    except (KeyError, TypeError, ValueError):
        return None


def judge_latest(sample: Sample, fleet: FleetRecord) -> Served | None:
    inverter = sample.meta.get("inverter_id")
    newest = fleet.newest_acked(inverter, sample.started)
    read = fleet.contract.reads.latest
    if sample.status == read.absent_status:
        first = fleet.first_acked(inverter)
        if newest is None or first is None:
            return None
        return Served(sample, max(0.0, sample.started - first.acked_at))
    if not sample.ok:
        return None
    rows = _rows(read, sample.body)
    carried = {} if read.fields.inverter_id else {"inverter_id": inverter}  # an answer that names no inverter
    key = _key(fleet, {**carried, **rows[0]}) if rows else None
    if key is None:
        return Served(sample, None, f"an answer without the reading's identity ({fleet.contract.ledger.identity}) "
                                    f"where the contract says: {str(sample.body)[:120]}", unreadable=True)
    body = rows[0]
    if key[0] != inverter:
        return Served(sample, None, f"asked for {inverter}, served {key[0]}#{key[1]}")
    if wrong := _wrong_values(key, body, fleet):
        return Served(sample, None, wrong)
    if newest is None:
        return Served(sample, 0.0)
    return Served(sample, max(0.0, newest.sent_at - fleet.by_key[key].sent_at))


def judge_history(sample: Sample, fleet: FleetRecord) -> Served | None:
    inverter, start, end = sample.meta["inverter_id"], sample.meta["from"], sample.meta["to"]
    rows = _rows(fleet.contract.reads.history, sample.body)
    if rows is None:
        return Served(sample, None, f"not a history where the contract says: {str(sample.body)[:120]}", unreadable=True)
    if any(row.get("inverter_id", inverter) != inverter for row in rows):
        return Served(sample, None, f"not {inverter}'s history: {str(sample.body)[:120]}")
    keys = [_key(fleet, {"inverter_id": inverter, **row}) for row in rows]
    if None in keys:
        return Served(sample, None, f"a reading of {inverter}'s history without its identity "
                                    f"({fleet.contract.ledger.identity})")
    if twice := [k for k, n in Counter(keys).items() if n > 1]:
        return Served(sample, None, f"served {twice[0][0]}#{twice[0][1]} twice in one history")
    for key, row in zip(keys, rows):
        if wrong := _wrong_values(key, row, fleet):
            return Served(sample, None, wrong)
        if not start - 0.001 <= fleet.by_key[key].values["ts"] <= end + 0.001:
            return Served(sample, None, f"served {key[0]}#{key[1]}, outside the range asked for")
    due = [m for m in fleet.acked_by(inverter, sample.started) if start <= m.values["ts"] <= end]
    if not due and not keys:
        return None
    missing = [m for m in due if m.key not in set(keys)]
    return Served(sample, max((sample.started - m.acked_at for m in missing), default=0.0))


def judge_listing(sample: Sample, fleet: FleetRecord) -> Served | None:
    read = fleet.contract.reads.listing
    try:
        entries = read.rows(sample.body)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return Served(sample, None, f"an inverter list not where the contract says ({read.items!r}: {exc}): "
                                    f"{str(sample.body)[:120]}", unreadable=True)
    listed = {e["inverter_id"]: e for e in entries if "inverter_id" in e}
    lags = []
    for inverter in fleet.inverters:
        newest = fleet.newest_acked(inverter, sample.started)
        if newest is None:
            continue
        entry = listed.get(inverter)
        if entry is None:  # left out although the broker holds its readings: it lags by all of them
            lags.append(sample.started - fleet.first_acked(inverter).acked_at)
        elif "last_seen" in entry:
            lags.append(newest.values["ts"] - entry["last_seen"])
    if not lags:
        return None
    return Served(sample, max(0.0, *lags))


def judge_generation(sample: Sample, fleet: FleetRecord) -> Served | None:
    """A per-site energy total has no one right value while readings stream in, but it has
    bounds. Above the energy of everything sent when it answered, it is wrong: energy counted
    twice or invented. Below what the broker had acknowledged, it lags, like any answer: by how
    long ago the first acknowledged reading it cannot hold was acknowledged, told from when it
    was computed (its ``as_of``, where the contract names one: a cached total is judged as of its
    computation) less the age the contract allows (``max_age_s``)."""
    read = fleet.contract.reads.generation
    rows = _rows(read, sample.body)
    if rows is None:
        return Served(sample, None, f"per-site totals not where the contract says ({read.items!r}): "
                                    f"{str(sample.body)[:120]}", unreadable=True)
    totals = {str(r["site_id"]): r.get("energy_wh") for r in rows if "site_id" in r}
    answered = sample.started + sample.latency_s
    as_of = sample.started
    if read.as_of:  # the answer says when it was computed (the backend's clock: this host's)
        try:
            as_of = to_epoch(at(sample.body, read.as_of), read.units.timestamp) - (time.time() - time.monotonic())
        except (KeyError, TypeError, ValueError, IndexError):
            return Served(sample, None, f"per-site totals without {read.as_of!r}, when they were computed")
    since = as_of - read.max_age_s
    lags = []
    for site in fleet.sites:
        high = fleet.energy_wh(site, sent_by=answered)
        slack = 1e-6 * max(1.0, high)  # summed in another order, in another precision
        total = totals.get(site, 0.0)
        if total > high + slack:
            return Served(sample, None, f"site {site} generated {total:.4f} Wh, more than the {high:.4f} Wh ever sent")
        missing = fleet.first_acked_beyond(site, total + slack)  # the first acknowledged reading it cannot hold
        if missing is not None and missing < since:
            lags.append(since - missing)
        elif fleet.energy_wh(site, acked_by=since) > 0:
            lags.append(0.0)
    return Served(sample, max(lags)) if lags else None

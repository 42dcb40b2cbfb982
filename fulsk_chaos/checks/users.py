"""What users see, judged against what the inverters said: is the newest reading served fresh,
and is it the reading that was sent?

A latest-reading answer is judged against the fleet's record: it must be the asked inverter's
reading, one that was sent, with the values it was sent with (correctness), and it may lag the
newest reading the broker had acknowledged for that inverter by little (freshness). A 404 while
the broker holds acknowledged readings is an answer that lags by all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..probes import FleetRecord, Sample
from .ledger import FIELDS, same_value


@dataclass(frozen=True)
class Served:
    """A latest-reading answer that could be judged."""
    sample: Sample
    staleness_s: float | None  # None when the answer was wrong
    wrong: str | None = None

    def fresh(self, max_staleness_s: float) -> bool:
        return self.wrong is None and self.staleness_s is not None and self.staleness_s <= max_staleness_s


def answered_ok(sample: Sample) -> bool:
    """An answer that is not an error: 2xx, or a latest-reading 404 (judged for freshness instead)."""
    return sample.ok or (sample.target == "latest" and sample.status == 404)


def judge_latest(sample: Sample, fleet: FleetRecord) -> Served | None:
    """None when there is nothing to judge: no answer (an error, counted elsewhere), or nothing of
    that inverter acknowledged yet."""
    inverter = sample.meta.get("inverter_id")
    newest = fleet.newest_acked(inverter, sample.started)
    if sample.status == 404:
        first = fleet.first_acked(inverter)
        if newest is None or first is None:
            return None
        return Served(sample, max(0.0, sample.started - first.acked_at))
    if not sample.ok:
        return None
    body = sample.body if isinstance(sample.body, dict) else {}
    try:
        key = (str(body["inverter_id"]), int(body["seq"]))
    except (KeyError, TypeError, ValueError):
        return Served(sample, None, f"answer without inverter_id and seq: {str(sample.body)[:120]}")
    if key[0] != inverter:
        return Served(sample, None, f"asked for {inverter}, served {key[0]}#{key[1]}")
    message = fleet.by_key.get(key)
    if message is None:
        return Served(sample, None, f"served {key[0]}#{key[1]}, which was never sent")
    for name in FIELDS:
        if name in body and not same_value(name, message.values[name], _value(name, body[name])):
            return Served(sample, None, f"served {key[0]}#{key[1]} with {name} {body[name]!r}, "
                                        f"sent {message.values[name]!r}")
    if newest is None:
        return Served(sample, 0.0)
    return Served(sample, max(0.0, newest.sent_at - message.sent_at))


def _value(name: str, value: Any) -> Any:
    if name == "ts" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value

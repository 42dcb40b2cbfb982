"""Users' answers held to what the database holds now (after a restore): each inverter's latest
reading (a cache entry that predates the restore names a reading the database no longer has, or
an older one) and its recent history. Judged over what probes.truth read."""
from __future__ import annotations

from typing import Sequence

from ..probes.truth import AnswerBeside
from ..verdict import Evidence, Expectation, none_of


def contradictions(found: Sequence[AnswerBeside], lag_s: float) -> list[str]:
    """What the database contradicts, one line per inverter and answer."""
    wrong: list[str] = []
    for a in found:
        if a.latest_status == 404:
            if a.newest is not None:
                wrong.append(f"{a.inverter}: no latest reading served; the database has #{a.newest[0]}")
            continue
        if a.latest_status != 200:
            wrong.append(f"{a.inverter}: latest answered {a.latest_status}")
            continue
        if a.served_ts is None:
            wrong.append(f"{a.inverter}: latest is #{a.latest_seq}, which the database does not hold")
        elif a.newest is not None and a.served_ts < a.newest[1] - lag_s:
            wrong.append(f"{a.inverter}: latest is #{a.latest_seq}, {a.newest[1] - a.served_ts:.1f} s older than "
                         f"the database's #{a.newest[0]}")
        if a.history is None:
            wrong.append(f"{a.inverter}: history answered {a.history_status}")
        elif not a.held_before <= a.history <= a.held_after:
            wrong.append(f"{a.inverter}: history serves {len(a.history)} readings, the database has "
                         f"{len(a.held_after)} ({len(a.history - a.held_after)} it does not hold, "
                         f"{len(a.held_before - a.history)} missing)")
    return wrong


def judge(found: Sequence[AnswerBeside], lag_s: float, phase: str) -> tuple[list[Expectation], list[Evidence]]:
    wrong = contradictions(found, lag_s)
    return ([none_of(f"answers the database contradicts ({phase})", len(wrong), evidence={"inverters": len(found)},
                     detail="; ".join(wrong[:3]))],
            [Evidence(f"inverters whose answers were compared ({phase})", len(found), 1)])

"""Per-site generation totals judged like every other answer. They have no single exact value
while readings stream in, but bounds: above the energy of everything sent when it answered is
wrong (counted twice, invented); below what the broker had acknowledged when it was computed, it
lags - by how long ago the first acknowledged reading it cannot hold was acknowledged."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from fulsk_chaos.checks.users import judge_answer
from fulsk_chaos.probes import Message, Sample
from fulsk_chaos.probes.fleet import FleetRecord

# Site s1: one reading of 1 Wh every second from t=100, each acknowledged 50 ms after it was sent.
SENT = [Message("inv", i, 100.0 + i, {"site_id": "s1", "ts": 1e9 + i, "power_w": 3600.0, "energy_wh": 1.0},
                acked_at=100.05 + i) for i in range(30)]
FLEET = FleetRecord(SENT)  # the reference contract: as of computed_at, less 0.5 s


def wall(monotonic: float) -> str:
    """The backend's computed_at for a monotonic moment (the same host's clock)."""
    return datetime.fromtimestamp(monotonic + time.time() - time.monotonic(), timezone.utc).isoformat()


def answer(total: float | None, started: float = 120.0, latency: float = 0.01, site: str = "s1",
           computed: float | None = None) -> Sample:
    body = {"sites": [] if total is None else [{"site_id": site, "energy_wh": total, "readings": 0}],
            "computed_at": wall(started if computed is None else computed)}
    return Sample("generation", started, latency, 200, body=body)


@pytest.mark.parametrize("total", [20.0, 20.5, 21.0])  # acked by 119.5 s: 20 Wh; sent by 120.01 s: 21 Wh
def test_a_total_of_everything_committed_is_fresh_and_right(total):
    served = judge_answer(answer(total), FLEET)
    assert served.wrong is None and served.staleness_s == 0.0


@pytest.mark.parametrize("total, lag", [(19.0, 119.5 - 119.05), (14.0, 119.5 - 114.05), (None, 119.5 - 100.05)])
def test_a_total_short_of_what_was_acknowledged_lags_by_the_first_reading_it_cannot_hold(total, lag):
    served = judge_answer(answer(total), FLEET)
    assert served.wrong is None and served.staleness_s == pytest.approx(lag, abs=1e-3)  # two readings of the clock


def test_a_total_above_everything_sent_is_wrong():
    assert "more than the 21.0000 Wh ever sent" in judge_answer(answer(22.0), FLEET).wrong


def test_a_cached_total_is_judged_as_of_when_it_was_computed():
    """Computed at 110 s, served from the cache at 120 s: fresh if it holds what was acknowledged by 109.5 s."""
    assert judge_answer(answer(10.0, computed=110.0), FLEET).staleness_s == 0.0
    assert judge_answer(answer(9.0, computed=110.0), FLEET).staleness_s == pytest.approx(109.5 - 109.05, abs=1e-3)
    body = {"sites": [{"site_id": "s1", "energy_wh": 18.0}]}  # no computed_at: the contract says it has one
    assert "computed" in judge_answer(Sample("generation", 120.0, 0.01, 200, body=body), FLEET).wrong


def test_nothing_is_judged_before_anything_is_due_or_of_an_error():
    assert judge_answer(answer(0.0, started=100.0), FLEET) is None  # nothing acknowledged by 99.5 s
    assert judge_answer(Sample("generation", 120.0, 0.01, 503), FLEET) is None  # an error: counted elsewhere


def test_totals_not_where_the_contract_says_are_wrong():
    served = judge_answer(Sample("generation", 120.0, 0.01, 200, body={"totals": []}), FLEET)
    assert "not where the contract says" in served.wrong

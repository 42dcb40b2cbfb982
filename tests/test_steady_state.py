"""The steady-state windows of an experiment, on the shared stack: a window after the method that
breaks a latency percentile alone is extended and judged over both windows, and a stack that stays
slow still fails; anything else a window breaks is never judged again."""
from __future__ import annotations

import pytest

from fulsk_chaos.checks.steady import percentiles_only
from fulsk_chaos.checks.timeline import timeline
from fulsk_chaos.probes import FleetRecord
from fulsk_chaos.probes.fleet import Message
from fulsk_chaos.verdict import at_most, none_of

SLOW_FEED_MS = 120  # on the frontend's edge to the backend: every feed message and API answer


@pytest.mark.serial  # a latency, judged: nothing beside it
def test_a_live_feed_that_stays_slow_after_the_method_fails_over_the_extended_window(experiment, stack):
    window_s = experiment.settings.steady_state.window_s
    with experiment:
        experiment.steady_state("before")
        experiment.begin_method()  # as after a fault rolled back: the stack itself stays slow
        toxic = stack.toxiproxy.add_toxic("frontend-backend", "latency", {"latency": SLOW_FEED_MS, "jitter": 0})
        try:
            expectations = experiment.steady_state("after")
        finally:
            stack.toxiproxy.remove_toxic("frontend-backend", toxic)
    failed = {e.name: e for e in expectations if e.held is False}
    assert list(failed) == ["after: live feed delay p95"], [e.describe() for e in expectations]
    assert failed["after: live feed delay p95"].measured >= SLOW_FEED_MS
    m = experiment.record.measurements
    assert [text.split(" = ")[0] for text in m["after_extended"]] == ["after: live feed delay p95"]
    # judged over both windows: twice the readings a window of its own is due
    acked = {e.name: e.count for e in experiment.record.evidence}["after: readings acknowledged by the broker"]
    per_window = experiment.settings.fleet.inverters / experiment.settings.fleet.interval_s * window_s
    assert acked > 1.5 * per_window


def test_only_a_window_that_broke_nothing_but_latency_percentiles_is_extended():
    slow_feed = at_most("after: live feed delay p95", 57.2, 50, "ms")
    slow_api = at_most("after: api p95", 612, 500, "ms")
    stale = at_most("after: stale answers (newest reading > 1 s behind the broker)", 0.2, 0.05)
    fine = none_of("after: wrong answers (not the reading that was sent)", 0)
    assert percentiles_only("after", [slow_feed, fine]) == [slow_feed]
    assert percentiles_only("after", [slow_api, slow_feed, fine]) == [slow_api, slow_feed]
    assert percentiles_only("after", [slow_feed, stale, fine]) == []  # stale data is never judged again
    assert percentiles_only("after", [fine]) == []
    # another phase's percentile is not this window's
    assert percentiles_only("during", [slow_feed]) == []


def test_the_timeline_shows_the_live_feeds_delay_second_by_second():
    """Where a window's live-feed p95 broke is on the report's chart: by when each reading was sent."""
    sent = [Message("inv", i, 100.05 + i * 0.1, {}, acked_at=100.06 + i * 0.1) for i in range(20)]
    arrivals = {m.key: m.sent_at + (0.3 if 10 <= m.seq < 12 else 0.02) for m in sent}  # a stall in the 2nd second
    series = timeline([], FleetRecord(sent), arrivals, start=100.0, end=102.0)
    first, second = series["live_delay_p95_ms"]
    assert round(first) == 20 and round(second) == 300
    assert series["delivered_per_s"] == [10, 10]

"""The statistics verdicts are made of."""
from __future__ import annotations

import math

from fulsk_chaos.probes import Sample, Samples


def health(t: float, ok: bool = True, postgres: str = "ok") -> Sample:
    body = {"status": "ok" if ok else "down", "dependencies": {"postgres": {"status": postgres}}}
    return Sample("health", t, 0.01, 200 if ok else 503, body=body)


def api(t: float, status: int | None = 200, latency_s: float = 0.01) -> Sample:
    return Sample("api", t, latency_s, status, error=None if status else "ConnectTimeout")


def test_quantiles_and_error_rate():
    samples = Samples([api(i, latency_s=(i + 1) / 1000) for i in range(100)])
    assert math.isclose(samples.quantile_ms(0.5), 50.5, rel_tol=0.02)
    assert 98 <= samples.quantile_ms(0.99) <= 100
    assert samples.max_ms() == 100
    mixed = Samples([api(0), api(1, 503), api(2, None), api(3)])
    assert mixed.error_rate() == 0.5
    assert mixed.unanswered() == 1


def test_health_is_ok_only_when_it_says_so():
    assert health(0).ok
    assert not health(0, ok=False).ok
    assert health(0, ok=False, postgres="down").dependency("postgres") == "down"
    assert api(0, None).dependency("postgres") is None


def test_empty_selections_give_nan_not_a_verdict():
    assert math.isnan(Samples([]).quantile_ms(0.99))
    assert math.isnan(Samples([]).error_rate())


def test_window_and_target():
    samples = Samples([api(1), health(2), api(3), health(4)])
    assert [s.started for s in samples.window(2, 3)] == [2, 3]
    assert len(samples.target("health")) == 2


def test_first_streak_needs_an_unbroken_healthy_run():
    timeline = [api(t / 10, 503 if t in (12, 25) else 200) for t in range(10, 60)]
    samples = Samples(timeline)
    # healthy from 1.3 but broken at 2.5; the first unbroken 2 s run starts at 2.6
    assert samples.first_streak(after=1.0, streak_s=1.0) == 1.3
    assert samples.first_streak(after=1.0, streak_s=2.0) == 2.6
    assert samples.first_streak(after=1.0, streak_s=5.0) is None

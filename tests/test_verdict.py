"""Verdicts as data: judged from named expectations and declared evidence, never pass without it."""
from __future__ import annotations

import math

import pytest

from fulsk_chaos.verdict import Evidence, Expectation, at_least, at_most, below, judge, none_of, skipped


def test_an_expectation_holds_by_its_comparison():
    assert at_most("p95", 499.0, 500, "ms").held is True
    assert at_most("p95", 501.0, 500, "ms").held is False
    assert below("p99", 2000.0, 2000, "ms").held is False
    assert at_least("reported down", 1, 1).held is True
    assert none_of("lost", 0).held is True and none_of("lost", 3).held is False


@pytest.mark.parametrize("measured", [None, math.nan])
def test_nothing_measured_is_neither_held_nor_violated(measured):
    expectation = at_most("p95", measured, 500, "ms")
    assert expectation.held is None
    assert "NOT MEASURED" in expectation.describe()


def test_describe_says_what_was_measured_against_what():
    text = none_of("lost", 3, detail="a#1, a#2, a#3").describe()
    assert text == "lost = 3 (must be exactly 0) VIOLATED: a#1, a#2, a#3"
    assert at_most("recovery", math.inf, 30, "s").describe().startswith("recovery = never")


def test_unknown_comparisons_are_refused():
    with pytest.raises(ValueError, match="unknown comparison"):
        Expectation("x", 1, "~", 1)


HYPOTHESIS = "users get fresh answers in time"
HELD = [at_most("api p95", 10.0, 500, "ms"), none_of("lost", 0)]
ENOUGH = [Evidence("readings acknowledged", 120, 10)]


def test_pass_needs_every_expectation_held_on_enough_evidence():
    verdict = judge(HYPOTHESIS, HELD, ENOUGH)
    assert verdict.status == "pass" and verdict.reason is None and verdict.hypothesis == HYPOTHESIS


def test_too_little_evidence_is_an_error_never_a_pass():
    verdict = judge(HYPOTHESIS, HELD, [Evidence("readings acknowledged", 0, 10)])
    assert verdict.status == "error"
    assert verdict.reason == "not enough evidence (readings acknowledged: 0 (needs at least 10))"


def test_an_unmeasured_expectation_is_an_error():
    verdict = judge(HYPOTHESIS, [*HELD, at_most("live feed delay p95", math.nan, 50, "ms")], ENOUGH)
    assert verdict.status == "error" and "live feed delay p95 could not be measured" in verdict.reason


def test_no_expectation_at_all_is_an_error():
    assert judge(HYPOTHESIS, [], ENOUGH).status == "error"


def test_a_measured_failure_outranks_missing_evidence_elsewhere():
    verdict = judge(HYPOTHESIS, [*HELD, none_of("duplicates", 4)], [Evidence("during: API samples", 2, 10)])
    assert verdict.status == "fail"
    assert verdict.reason.startswith("duplicates = 4 (must be exactly 0) VIOLATED")
    assert "also not enough evidence (during: API samples: 2" in verdict.reason
    assert [e.name for e in verdict.failed] == ["duplicates"]


def test_a_verdict_serialises_its_expectations_and_evidence():
    data = judge(HYPOTHESIS, HELD, ENOUGH).to_json()
    assert data["verdict"] == "pass"
    assert data["expectations"][0] == {"name": "api p95", "measured": 10.0, "op": "<=", "threshold": 500,
                                       "unit": "ms", "held": True, "evidence": {}, "detail": ""}
    assert data["evidence"] == [{"name": "readings acknowledged", "count": 120, "minimum": 10, "enough": True}]


def test_an_expectation_the_backend_cannot_meet_is_skipped_never_passed():
    """A capability the backend lacks: the expectation is skipped (with why), the rest judged."""
    lacking = skipped("during: /health reported postgres down", "backend declares no per-dependency health")
    mixed = judge("h", [lacking, none_of("lost", 0)])
    assert mixed.status == "pass" and lacking in mixed.expectations
    assert "SKIPPED (backend declares no per-dependency health)" in lacking.describe()
    assert lacking.to_json()["skipped"] and Expectation.from_json(lacking.to_json()) == lacking
    failing = judge("h", [lacking, none_of("lost", 2)])
    assert failing.status == "fail" and "health" not in failing.reason
    only = judge("h", [lacking])  # nothing else to judge: nothing was tested
    assert only.status == "skipped" and only.reason == "backend declares no per-dependency health"

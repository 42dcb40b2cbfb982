"""The blind-spot table from recorded data alone: harm read second by second against the alert
thresholds, pages against the rules' bound, and each fault's status (blind spot, ok, noise,
brief, quiet, unmonitored)."""
from __future__ import annotations

import pytest

from fulsk_chaos.checks.blindspots import (BLIND, BRIEF, NOISE, OK, QUIET, UNMONITORED, Harm, Page, classify,
                                           coverage, harms, pages, spans)
from fulsk_chaos.config import Settings
from fulsk_chaos.probes import Sample
from fulsk_chaos.probes.fleet import Message
from fulsk_chaos.services import FIXTURES
from fulsk_chaos.stack.alerts import Notification

SETTINGS = Settings()  # error rate 5 %, HTTP threshold 2 s, freshness 1 s


def reads(start: float, end: float, *, failing: tuple[float, float] = (0, 0), slow: tuple[float, float] = (0, 0),
          every: float = 0.1) -> list[tuple[Sample, None]]:
    out, t = [], start
    while t < end:
        failed = failing[0] <= t < failing[1]
        latency = 2.5 if slow[0] <= t < slow[1] else 0.01
        out.append((Sample("api", t, latency, 503 if failed else 200), None))
        t = round(t + every, 3)
    return out


def readings(start: float, end: float, *, held: tuple[float, float] = (0, 0), every: float = 0.1) -> list[Message]:
    out, t, seq = [], start, 0
    while t < end:
        acked = None if held[0] <= t < held[1] else t + 0.01
        out.append(Message("inv0", seq, t, {"site_id": "s"}, acked_at=acked))
        t, seq = round(t + every, 3), seq + 1
    return out


def test_reads_that_fail_past_the_error_rate_are_harm_from_their_first_second():
    found = harms(reads(100, 120, failing=(104, 110)), [], {}, 100, 120, SETTINGS)
    assert [h.kind for h in found] == ["errors"]
    assert found[0].episodes == ((4, 10),) and found[0].lasted_s == 6 and found[0].worst == 1.0


def test_one_failed_read_in_a_second_of_ten_is_past_the_error_rate_but_a_healthy_run_is_no_harm():
    assert harms(reads(100, 110), [], {}, 100, 110, SETTINGS) == []
    one = reads(100, 110)
    one[25] = (Sample("api", 102.5, 0.01, 500), None)
    assert [(h.kind, h.lasted_s) for h in harms(one, [], {}, 100, 110, SETTINGS)] == [("errors", 1.0)]


def test_slow_reads_and_readings_the_broker_held_back_are_harm_of_their_own():
    found = {h.kind: h for h in harms(reads(0, 20, slow=(5, 8)), readings(0, 20, held=(10, 18)), {}, 0, 20, SETTINGS,
                                      observed_until=30)}
    assert set(found) == {"slow", "unacknowledged", "live feed"}  # held back: never acknowledged, never on the feed
    assert found["slow"].episodes == ((5, 8),) and found["unacknowledged"].episodes == ((10, 18),)


def test_a_reading_still_within_its_freshness_bound_when_the_observers_stopped_is_not_yet_harm():
    late = readings(0, 10, held=(9.5, 10))
    assert [h.kind for h in harms([], late, {m.key: m.acked_at for m in late if m.acked_at}, 0, 10, SETTINGS,
                                  observed_until=10.2)] == []


def test_pages_are_each_firing_with_the_resolution_that_followed_it():
    notes = [Notification("PostgresDown", "firing", 12.0, 0, labels={"severity": "critical"}),
             Notification("PostgresDown", "firing", 14.0, 0, labels={"severity": "critical"}),  # a repeat
             Notification("PostgresDown", "resolved", 20.0, 0),
             Notification("RedisDown", "firing", 2.0, 0), Notification("RedisDown", "resolved", 5.0, 0),  # before
             Notification("HostHighCpu", "firing", 40.0, 0)]
    assert pages(notes, 10.0, 30.0) == [Page("PostgresDown", "critical", 2.0, 10.0)]


def test_a_page_on_several_channels_is_one_page_and_each_firing_after_a_resolution_is_another():
    critical = {"severity": "critical"}
    notes = [Notification("PostgresDown", status, at, 0, labels=critical, channel=channel)
             for status, at in (("firing", 12.0), ("resolved", 20.0), ("firing", 25.0))
             for channel in ("pagerduty", "phone")]
    assert pages(notes, 10.0, 30.0) == [Page("PostgresDown", "critical", 2.0, 10.0),
                                        Page("PostgresDown", "critical", 15.0, None)]


HARM = Harm("errors", episodes=((2.0, 14.0),), worst=0.9)


def test_long_harm_without_a_page_in_time_is_a_blind_spot_naming_the_harm():
    row = classify("kill backend", [HARM], [], bound_s=7.5)
    assert row.status == BLIND and "errors" in row.why and row.unpaged_s == {"errors": 4.5}
    late = classify("kill backend", [HARM], [Page("FulskBackendDown", "critical", 12.0)], bound_s=7.5)
    assert late.status == BLIND and "FulskBackendDown" in late.why and late.unpaged_s == {"errors": 2.5}


def test_long_harm_paged_within_the_bound_of_its_onset_is_ok():
    assert classify("kill backend", [HARM], [Page("FulskBackendDown", "critical", 9.0)], 7.5).status == OK
    assert classify("kill backend", [HARM], [Page("PostgresDown", "critical", -3.0)], 7.5).status == OK  # already


def test_harm_that_goes_on_after_every_page_resolved_is_a_blind_spot():
    """The database back and its page resolved, but ingest died with it: nobody is paged any more."""
    long = Harm("stale", episodes=((0.0, 40.0),), worst=1.0)
    row = classify("kill postgres", [long], [Page("PostgresDown", "critical", 3.0, 14.0)], 7.5)
    assert row.status == BLIND and row.unpaged_s == {"stale": 26.0}
    paged = [Page("PostgresDown", "critical", 3.0, 14.0), Page("FulskDataCollectionStopped", "critical", 13.0)]
    assert classify("kill postgres", [long], paged, 7.5).status == OK


def test_pages_without_harm_are_noise_and_harm_shorter_than_the_bound_is_brief():
    assert classify("pause redis", [], [Page("RedisDown", "high", 3.0)], 7.5).status == NOISE
    assert classify("kill mqtt", [Harm("stale", ((1.0, 3.0),), 0.5)], [], 7.5).status == BRIEF
    assert classify("latency redis", [], [], 7.5).status == QUIET


def test_without_monitoring_the_harm_is_listed_and_nothing_is_said_of_pages():
    row = classify("kill backend", [HARM], None, 7.5)
    assert row.status == UNMONITORED and row.to_json()["pages"] is None and row.to_json()["harms"][0]["kind"] == "errors"


@pytest.mark.slow
def test_an_ingest_that_dies_pages_data_collection_and_without_that_rule_is_a_blind_spot(run_scenario, tmp_path):
    """The database killed and back: an ingest that died on its first failed write stores nothing
    from then on. PostgresDown pages for the outage and resolves; FulskDataCollectionStopped pages
    for what goes on after it. With a copy of the rules that lacks it, the harm after PostgresDown
    resolved pages nobody: the table names the blind spot, with its harm."""
    bug = '[backend.env]\nFULSK_BUGS = "ingest-dies-on-error"\n[recovery]\ntarget_s = 15\n'
    select = "scenarios/test_db_loss.py -k kill --monitoring"
    run = run_scenario(select, bug)
    (row,) = run.scenario["measurements"]["blind_spots"]
    assert row["status"] == "ok", row
    assert "FulskDataCollectionStopped" in {p["alert"] for p in row["pages"]}, row

    rules = (FIXTURES / "monitoring" / "alerts.yml.template").read_text()
    start = rules.index("      - alert: FulskDataCollectionStopped")
    without = rules[:start] + rules[rules.index("      - alert:", start + 1):]
    (tmp_path / "rules.yml.template").write_text(without)
    run = run_scenario(select, bug + f'[monitoring]\nrules = "{tmp_path / "rules.yml.template"}"\n')
    (row,) = run.scenario["measurements"]["blind_spots"]
    assert row["status"] == "blind spot", row
    assert row["unpaged_s"]["stale"] >= 5, row  # answers behind what inverters sent, nobody paged
    assert "FulskDataCollectionStopped" not in {p["alert"] for p in row["pages"]}
    assert "blind spot: kill postgres" in run.output


def test_runbook_coverage_counts_the_rules_that_link_a_runbook_what_paged_and_what_nobody_covered():
    rules = (FIXTURES / "monitoring" / "alerts.yml.template").read_text()
    rows = [classify("kill postgres", [HARM], [Page("PostgresDown", "critical", 2.0)], 7.5).to_json(),
            classify("kill backend", [HARM], [], 7.5).to_json(),
            classify("latency redis", [], [], 7.5).to_json()]
    found = coverage(rules, rows, FIXTURES.parent)
    assert found["rules"] == 16 and "FulskDataCollectionStopped" in found["with_runbook"]
    assert found["paged_in_run"] == ["PostgresDown"] and "RedisDown" in found["never_paged_in_run"]
    assert found["faults_no_page_covered"] == ["kill backend"] and found["faults"] == 3
    broken = rules.replace("fixtures/runbooks/service-restart.yml", "fixtures/runbooks/no-such.yml")
    missing = coverage(broken, rows, FIXTURES.parent)["runbook_missing"]
    assert "FulskDataCollectionStopped: fixtures/runbooks/no-such.yml" in missing
    assert "RedisDown: fixtures/runbooks/no-such.yml" in missing  # the link's ?service_name=redis is no part of the file


def test_each_fault_owns_the_harm_until_its_recovery_or_the_next_fault_and_nothing_after_the_observers_stopped():
    # one fault: from its injection through the recovery measured after its rollback
    assert spans([("kill postgres", 10.0, 15.0)], 9.0, 30.0, 60.0) == [("kill postgres", 10.0, 30.0)]
    # a schedule: each until the next was injected (but at least until its own rollback), the last to the recovery
    assert spans([("kill mqtt", 10.0, 13.0), ("stop mqtt", 20.0, 23.0), ("restart postgres", 21.0, 25.0)], 9.0, 40.0,
                  60.0) == [("kill mqtt", 10.0, 20.0), ("stop mqtt", 20.0, 23.0), ("restart postgres", 21.0, 40.0)]
    # a method without faults (a restore), to its recovery; never past the observers' stop
    assert spans([], 9.0, None, 50.0) == [("the method", 9.0, 50.0)]
    assert spans([("kill backend", 10.0, None)], 9.0, None, 50.0) == [("kill backend", 10.0, 50.0)]
    assert spans([], None, None, 50.0) == []

"""Monitoring: the ops guide's alert rules as an operator deploys them, and alerts judged as
expectations from the notifications Alertmanager sent."""
from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from fulsk_chaos.checks.alerts import (AlertWindow, MonitoringError, UsersWindow, fire_within_s, follow_users, judge,
                                       inhibition, resolve_within_s, unexported)
from fulsk_chaos.config import AlertSettings, MonitoringSettings, Settings
from fulsk_chaos.stack.alerts import Notification
from fulsk_chaos.services import CATALOGUE, FIXTURES, ServiceContext, Topology

M = MonitoringSettings()
RULES = {"FulskDatabaseErrors", "PostgresDown", "RedisDown"}
WINDOW = AlertWindow(fire=("FulskDatabaseErrors",), silent=("RedisDown",), observed_from=100.0, began=110.0,
                     ended=115.0, recovered=117.0)


SEVERITY = {"FulskDatabaseErrors": "critical", "PostgresDown": "critical", "RedisDown": "high",
            "FulskSlowResponses": "high", "FulskFrontendErrors": "critical", "FulskHighErrorRate": "high"}


def note(alert: str, status: str, at: float, channel: str | None = None) -> Notification:
    """One notification; on each channel the ops guide escalates its severity to, unless ``channel``."""
    return Notification(alert, status, at, 1.8e9 + at, labels={"alertname": alert, "severity": SEVERITY[alert]},
                        channel=channel if channel is not None else "pagerduty")


def page(alert: str, status: str, at: float) -> list[Notification]:
    return [note(alert, status, at, c) for c in M.escalation[SEVERITY[alert]]]


def test_an_alert_whose_rule_reads_a_metric_no_target_exports_is_skipped_not_failed():
    rules = {"FulskDatabaseErrors": 'sum(rate(fulsk_db_query_duration_seconds_count{outcome="error"}[5s])) > 0',
             "PostgresDown": "pg_up == 0"}
    exported = {"fulsk_http_request_duration_seconds_count"}
    missing = unexported(rules, ["FulskDatabaseErrors", "PostgresDown"], exported)
    assert missing == {"FulskDatabaseErrors": ["fulsk_db_query_duration_seconds_count"]}  # pg_up: not the backend's
    found, figures = judge([], WINDOW, M, RULES, None, missing)
    ours = [e for e in found if "FulskDatabaseErrors" in e.name]
    assert len(ours) == 1 and "fulsk_db_query_duration_seconds_count" in ours[0].skipped and ours[0].held is None
    assert unexported(rules, ["FulskDatabaseErrors"], exported | {"fulsk_db_query_duration_seconds_count"}) == {}
    # exported, it is judged: never notified is a failure
    assert verdicts([])["alert FulskDatabaseErrors: fired, after the fault began"][0] is False


def test_a_symptom_sent_after_its_cause_stopped_firing_is_no_leak_though_the_causes_resolution_came_later():
    """PostgreSQL back at t=113.5 (its endsAt); Alertmanager says so at 114.5, a group interval on.
    Backend errors still in their rate window may page at 113.6: the inhibition had ended."""
    def at(alert: str, status: str, received: float, ends: float | None = None) -> Notification:
        ends_at = "0001-01-01T00:00:00Z" if ends is None else \
            datetime.fromtimestamp(1.8e9 + ends, timezone.utc).isoformat().replace("+00:00", "Z")
        return Notification(alert, status, received, 1.8e9 + received, ends_at=ends_at, channel="pagerduty")
    cause = [at("PostgresDown", "firing", 110.5), at("PostgresDown", "resolved", 114.5, ends=113.5)]
    late = inhibition([*cause, at("FulskDatabaseErrors", "firing", 113.6)], "FulskDatabaseErrors", "PostgresDown",
                      110.0, True)
    leaked = inhibition([*cause, at("FulskDatabaseErrors", "firing", 112.8)], "FulskDatabaseErrors", "PostgresDown",
                        110.0, True)
    assert [e.held for e in late] == [True, True]
    assert [e.held for e in leaked] == [True, False]


def verdicts(notes: list[Notification], window: AlertWindow = WINDOW) -> dict[str, tuple[bool | None, str]]:
    found, _ = judge(notes, window, M, RULES)
    return {e.name: (e.held, e.detail) for e in found}


def test_an_alert_that_fires_in_time_and_resolves_after_the_recovery_holds():
    found, measured = judge([*page("FulskDatabaseErrors", "firing", 113.0), *page("FulskDatabaseErrors", "resolved", 120.0)],
                            WINDOW, M, RULES)
    assert all(e.held for e in found), [e.describe() for e in found]
    assert measured.alerts["FulskDatabaseErrors"] == {
        "fired_after_s": 3.0, "resolved_after_recovery_s": 3.0, "fired_at": 1.8e9 + 113.0, "resolved_at": 1.8e9 + 120.0,
        "channels": ["pagerduty", "phone"]}


def test_a_page_that_misses_a_channel_of_its_severity_or_reaches_another_fails_naming_them():
    """A critical alert on Slack alone, or without the phone call, would let everyone sleep."""
    name = "alert FulskDatabaseErrors: channels not those of its severity (critical: pagerduty, phone)"
    assert verdicts(page("FulskDatabaseErrors", "firing", 113.0))[name] == (True, "")
    slack = verdicts([note("FulskDatabaseErrors", "firing", 113.0, "slack")])[name]
    assert slack == (False, "missing pagerduty, phone; also slack")
    assert verdicts([note("FulskDatabaseErrors", "firing", 113.0, "pagerduty")])[name] == (False, "missing phone")


INHIBITED = AlertWindow(fire=("PostgresDown",), silent=(), observed_from=100.0, began=110.0, ended=115.0,
                        recovered=117.0, inhibited=(("FulskDatabaseErrors", "PostgresDown"),))


def test_a_symptom_notified_while_its_cause_pages_fails_and_one_whose_rule_never_fired_proves_nothing():
    cause = [*page("PostgresDown", "firing", 112.0), *page("PostgresDown", "resolved", 119.0)]
    held_back = judge(cause, INHIBITED, M, RULES, {"FulskDatabaseErrors": True})[0]
    assert all(e.held for e in held_back), [e.describe() for e in held_back]
    # a moment before the cause arrived is the race Alertmanager allows; after it, a leak
    raced = judge([*page("FulskDatabaseErrors", "firing", 111.9), *cause], INHIBITED, M, RULES,
                  {"FulskDatabaseErrors": True})[0]
    assert all(e.held for e in raced), [e.describe() for e in raced]
    leaked = {e.name: e for e in judge([*cause, *page("FulskDatabaseErrors", "firing", 114.0)], INHIBITED, M, RULES,
                                       {"FulskDatabaseErrors": True})[0]}
    assert leaked["alert FulskDatabaseErrors: notified while PostgresDown paged (must be inhibited)"].held is False
    never = {e.name: e for e in judge(cause, INHIBITED, M, RULES, {"FulskDatabaseErrors": False})[0]}
    assert never["alert FulskDatabaseErrors: its rule fired (in Prometheus) during the fault"].held is False


def test_an_alert_that_never_fires_fails_measured_as_never_not_as_missing_evidence():
    judged = verdicts([])
    assert judged["alert FulskDatabaseErrors: fired, after the fault began"][0] is False
    assert judged["alert FulskDatabaseErrors: fired, after the fault began"][1].startswith("never notified")
    assert judged["alert FulskDatabaseErrors: resolved, after the stack recovered"] == (False, "never fired")


def test_an_alert_too_slow_to_fire_or_to_resolve_fails():
    late = WINDOW.began + fire_within_s(M) + 1
    judged = verdicts([note("FulskDatabaseErrors", "firing", late),
                       note("FulskDatabaseErrors", "resolved", WINDOW.recovered + resolve_within_s(M) + 1)])
    assert judged["alert FulskDatabaseErrors: fired, after the fault began"][0] is False
    assert judged["alert FulskDatabaseErrors: resolved, after the stack recovered"][0] is False


def test_an_alert_firing_before_the_fault_is_noise_and_a_silent_one_that_fires_fails():
    judged = verdicts([note("FulskDatabaseErrors", "firing", 105.0), note("RedisDown", "firing", 112.0)])
    assert judged["alert FulskDatabaseErrors: notifications before the fault (noise on a healthy stack)"][0] is False
    assert judged["alert RedisDown: notifications (must stay silent)"] == (False, "fired +2.0 s from the fault")


# A stress ramp's steps as users measured them (epoch seconds, as note() gives them).
HELD = UsersWindow("step 1", 1.8e9 + 100, 1.8e9 + 110, p95_ms=40.0, error_rate=0.0)
SLOW = UsersWindow("step 2", 1.8e9 + 110, 1.8e9 + 120, p95_ms=2600.0, error_rate=0.01)
FAILING = UsersWindow("step 2", 1.8e9 + 110, 1.8e9 + 120, p95_ms=300.0, error_rate=0.2)


def followed(notes: list[Notification], windows: list[UsersWindow]) -> dict[str, tuple[bool | None, str]]:
    found, _ = follow_users(notes, windows, AlertSettings(), M, ["FulskSlowResponses", "RedisDown"])
    return {e.name: (e.held, e.detail) for e in found}


def test_pages_under_a_ramp_follow_what_its_users_measured():
    # users past the HTTP threshold at step 2, paged 4 s into it: held; nothing while they were fine
    judged = followed([note("FulskSlowResponses", "firing", 114.0)], [HELD, SLOW])
    assert all(held for held, _ in judged.values()), judged
    assert "alert FulskSlowResponses: fired, after users measured it slow (step 2)" in judged
    # users past the error threshold: either the backend's error rate or the frontend's probe may page
    assert all(held for held, _ in followed([note("FulskFrontendErrors", "firing", 113.0)], [HELD, FAILING]).values())


def test_users_past_a_threshold_and_nobody_paged_fails_and_a_page_while_they_were_fine_fails():
    never = followed([], [HELD, SLOW])["alert FulskSlowResponses: fired, after users measured it slow (step 2)"]
    assert never[0] is False and never[1].startswith("never notified")
    noise = followed([note("RedisDown", "firing", 105.0)], [HELD])
    assert noise["alert RedisDown: notifications while users' figures were under the alert thresholds"] == (
        False, "fired 5.0 s into the load")
    # a ramp that never reached a threshold judges silence only, up to its end and a page's delay
    late = followed([note("FulskSlowResponses", "firing", 111.0)], [HELD])
    assert list(late) == [f"alert {a}: notifications while users' figures were under the alert thresholds"
                          for a in ("FulskSlowResponses", "RedisDown")]
    assert late["alert FulskSlowResponses: notifications while users' figures were under the alert thresholds"][0] is False


def test_a_declared_alert_without_a_rule_is_refused_by_name():
    with pytest.raises(MonitoringError, match="no alerting rule named FulskTypo"):
        judge([], AlertWindow(("FulskTypo",), (), 0, 1, 2, 3), M, RULES)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool comes with Debian's prometheus package")
def test_the_rendered_configuration_and_rules_pass_prometheus_and_alertmanager_checks(tmp_path: Path):
    """What the stack renders is what promtool and amtool accept (and the rules name the guide's thresholds)."""
    monitoring = [s for s in CATALOGUE.specs if s.profile == "monitoring"]
    names = [s.name for s in monitoring] + ["backend", "frontend", "postgres", "redis", "alert-receiver"]
    topology = Topology(ports={n: 20000 + i for i, n in enumerate(names)}, edges={}, db_password="x")
    for spec in monitoring:
        workdir = tmp_path / spec.name
        workdir.mkdir()
        spec.prepare(ServiceContext(spec.name, topology, Settings(), workdir, FIXTURES))
    prometheus, alertmanager = tmp_path / "prometheus", tmp_path / "alertmanager"
    checked = subprocess.run(["promtool", "check", "config", str(prometheus / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 16 rules found" in checked.stdout + checked.stderr
    rules = (prometheus / "alerts.yml").read_text()
    assert "> 0.05" in rules and "> 2" in rules and "> 80" in rules and "> 85" in rules and "< 0.10" in rules
    assert "> 0.8" in rules and "for: 1000ms" in rules and "[5000ms]" in rules
    # the database's view of data collection, in the backend contract's SQL
    assert "SELECT max(ts) FROM readings" in (tmp_path / "postgres-exporter" / "queries.yml").read_text()
    assert "time() - max(fulsk_readings_newest_timestamp_seconds) > 3" in rules
    amtool = subprocess.run(["amtool", "check-config", str(alertmanager / "alertmanager.yml")],
                            capture_output=True, text=True)
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr
    assert f"http://127.0.0.1:{topology.ports['alert-receiver']}/alerts" in (alertmanager / "alertmanager.yml").read_text()
    blackbox = subprocess.run(["prometheus-blackbox-exporter", "--config.check",
                               f"--config.file={tmp_path / 'blackbox-exporter' / 'blackbox.yml'}"],
                              capture_output=True, text=True)
    assert blackbox.returncode == 0, blackbox.stdout + blackbox.stderr


@pytest.mark.docker  # locally, db_loss --monitoring pages the same way (tests/test_reporting.py)
@pytest.mark.stack(monitoring=True)
def test_a_monitored_stack_on_docker_pages_through_its_own_webhook(stack):
    """Prometheus, in its container, scrapes every target; a hung Redis is notified firing, then
    resolved, to the stack's webhook - the whole path an engineer's page takes."""
    from fulsk_chaos.checks.alerts import Prometheus
    from fulsk_chaos.faults import process
    from fulsk_chaos.wait import wait_until
    prometheus = Prometheus(stack.service("prometheus").address)
    assert {r["metric"]["job"] for r in prometheus.query("up == 1")} == {"backend", "postgres", "redis", "node",
                                                                         "frontend"}
    # the blackbox exporter, in its container, reaches the frontend as users do: page and API
    assert {r["metric"]["probe"] for r in prometheus.query('probe_success{job="frontend"} == 1')} == {"page", "api"}
    assert {"FulskDatabaseErrors", "RedisDown", "HostDiskLow"} <= prometheus.rule_names()
    rollback = process.pause(stack, "redis")
    try:
        wait_until(lambda: next(n for n in stack.alerts.notifications() if n.alert == "RedisDown"), 15,
                   "RedisDown notified")
    finally:
        rollback()
    wait_until(lambda: next(n for n in stack.alerts.notifications()
                            if n.alert == "RedisDown" and n.status == "resolved" and n.channel == "slack"), 15,
               "RedisDown resolved")
    redis = [n for n in stack.alerts.notifications() if n.alert == "RedisDown"]
    assert [n.status for n in redis if n.channel == "slack"][:2] == ["firing", "resolved"]
    assert {n.channel for n in redis if n.status == "firing"} == {"email", "sms", "slack"}  # high, as the guide escalates


class RealAlertmanager:
    """Debian's Alertmanager with the stack's rendered configuration, and the framework's webhooks."""

    def __init__(self, tmp_path: Path, settings: Settings = Settings()) -> None:
        from fulsk_chaos.host.ports import free_ports
        from fulsk_chaos.services.alertmanager import ALERTMANAGER, RECEIVER
        from fulsk_chaos.stack.alerts import AlertReceiver
        am_port, hook_port = free_ports(2)
        topology = Topology(ports={"alertmanager": am_port, RECEIVER: hook_port}, edges={}, db_password="x")
        ctx = ServiceContext("alertmanager", topology, settings, tmp_path, FIXTURES)
        ALERTMANAGER.prepare(ctx)
        self.url = f"http://127.0.0.1:{am_port}"
        self.receiver = AlertReceiver(hook_port).start()
        self.process = subprocess.Popen(ALERTMANAGER.argv(ctx), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: requests.get(self.url + "/-/ready", timeout=1).status_code == 200, "Alertmanager ready")

    def post(self, *alerts: dict) -> None:
        requests.post(self.url + "/api/v2/alerts", json=list(alerts), timeout=5).raise_for_status()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.receiver.close()


def until(condition, what: str, timeout_s: float = 15) -> None:
    """wait_until waits on a check that raises, not on one that is false."""
    from fulsk_chaos.wait import wait_until

    def check() -> None:
        if not condition():
            raise AssertionError("not yet")
    wait_until(check, timeout_s, what)


@pytest.mark.skipif(not shutil.which("prometheus-alertmanager"), reason="Debian's prometheus-alertmanager")
def test_alertmanager_sends_one_alertnames_alerts_together_and_a_page_still_firing_again(tmp_path: Path):
    """Grouped by alert name: two inverters' sites failing at once are one notification, not two
    pages; a page still firing after repeat_interval is sent again (2 s here, 1 h deployed)."""
    from dataclasses import replace
    settings = Settings()
    settings = replace(settings, monitoring=replace(settings.monitoring, repeat_interval_s=2.0))
    am = RealAlertmanager(tmp_path, settings)
    try:
        am.post(*({"labels": {"alertname": "DrillGrouped", "severity": "low", "site": site}} for site in ("a", "b")))
        until(lambda: len(am.receiver.notifications()) >= 2, "both notified")
        first = am.receiver.notifications()[:2]
        assert {n.labels["site"] for n in first} == {"a", "b"} and first[0].group == first[1].group
        assert first[0].received == first[1].received  # one notification carried both
        until(lambda: len(am.receiver.notifications()) >= 4, "sent again after repeat_interval", 10)
        again = am.receiver.notifications()[2]
        assert again.received - first[0].received >= 2.0 and again.status == "firing"
    finally:
        am.close()


@pytest.mark.skipif(not shutil.which("prometheus-alertmanager"), reason="Debian's prometheus-alertmanager")
@pytest.mark.parametrize("severity, channels", [("critical", {"pagerduty", "phone"}), ("high", {"email", "sms", "slack"}),
                                                ("medium", {"email", "slack"}), ("low", {"slack"})])
def test_alertmanager_routes_each_severity_to_the_guides_channels_and_no_other(tmp_path: Path, severity, channels):
    """A real Alertmanager with the stack's rendered routes: an alert posted to it with a
    severity reaches, on the framework's webhooks, exactly the channels the ops guide escalates it
    to (a critical one PagerDuty and the phone, never Slack alone)."""
    am = RealAlertmanager(tmp_path)
    try:
        am.post({"labels": {"alertname": f"Drill{severity.title()}", "severity": severity},
                 "annotations": {"summary": "posted by the routing test"}})
        until(lambda: {n.channel for n in am.receiver.notifications()} >= channels, f"{severity} notified")
        time.sleep(1.0)  # group_wait 0.5 s: any other channel would have been sent by now
        assert {n.channel for n in am.receiver.notifications()} == channels
        assert {n.alert for n in am.receiver.notifications()} == {f"Drill{severity.title()}"}
    finally:
        am.close()

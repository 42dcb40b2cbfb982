"""Monitoring: the ops guide's alert rules as an operator deploys them, and alerts judged as
expectations from the notifications Alertmanager sent."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fulsk_chaos.checks.alerts import (AlertWindow, MonitoringError, UsersWindow, fire_within_s, follow_users, judge,
                                       resolve_within_s)
from fulsk_chaos.config import AlertSettings, MonitoringSettings, Settings
from fulsk_chaos.stack.alerts import Notification
from fulsk_chaos.services import CATALOGUE, FIXTURES, ServiceContext, Topology

M = MonitoringSettings()
RULES = {"FulskDatabaseErrors", "PostgresDown", "RedisDown"}
WINDOW = AlertWindow(fire=("FulskDatabaseErrors",), silent=("RedisDown",), observed_from=100.0, began=110.0,
                     ended=115.0, recovered=117.0)


def note(alert: str, status: str, at: float) -> Notification:
    return Notification(alert, status, at, 1.8e9 + at)


def verdicts(notes: list[Notification], window: AlertWindow = WINDOW) -> dict[str, tuple[bool | None, str]]:
    found, _ = judge(notes, window, M, RULES)
    return {e.name: (e.held, e.detail) for e in found}


def test_an_alert_that_fires_in_time_and_resolves_after_the_recovery_holds():
    found, measured = judge([note("FulskDatabaseErrors", "firing", 113.0), note("FulskDatabaseErrors", "resolved", 120.0)],
                            WINDOW, M, RULES)
    assert all(e.held for e in found), [e.describe() for e in found]
    assert measured.alerts["FulskDatabaseErrors"] == {
        "fired_after_s": 3.0, "resolved_after_recovery_s": 3.0, "fired_at": 1.8e9 + 113.0, "resolved_at": 1.8e9 + 120.0}


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
    assert "SUCCESS: 14 rules found" in checked.stdout + checked.stderr
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
                            if n.alert == "RedisDown" and n.status == "resolved"), 15, "RedisDown resolved")
    assert [n.status for n in stack.alerts.notifications() if n.alert == "RedisDown"][:2] == ["firing", "resolved"]

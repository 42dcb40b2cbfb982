"""Incident replay (fulsk_chaos.runbooks.replay): which alert leads to which runbook and trigger
case, read strictly; and on a monitored stack, the chain from fault to resolved alert, where a
runbook whose fix no longer fixes fails on users not recovered and the alert not resolved."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fulsk_chaos import runbooks
from fulsk_chaos.checks.blindspots import coverage
from fulsk_chaos.runbooks import RunbookError
from fulsk_chaos.runbooks.replay import links, unlinked
from fulsk_chaos.services import FIXTURES
from fulsk_chaos.services.prometheus import AlertRule, alert_rules

ROOT = FIXTURES.parent
RULES = FIXTURES / "monitoring" / "alerts.yml.template"
SERVICE_RESTART = FIXTURES / "runbooks" / "service-restart.yml"


def rule(alert: str, url: str = "", severity: str = "critical") -> AlertRule:
    return AlertRule(alert, severity, runbook_url=url)


def test_each_alert_of_the_deployed_rules_that_links_a_runbook_is_replayable_through_a_case_that_pages_it():
    found = links(alert_rules(RULES.read_text()), ROOT)
    linked = [link for link in found if link.rule.runbook_url]
    assert linked and all(link.replayable for link in linked), [(link.rule.alert, link.why_not) for link in linked]
    redis = next(link for link in found if link.rule.alert == "RedisDown")
    assert redis.case == "cache-crashed" and redis.runbook.params["service_name"] == "redis"
    assert "service-restart" not in unlinked(found, runbooks.load_all())


def test_a_link_that_leads_nowhere_says_why_it_cannot_be_replayed(tmp_path):
    copy = tmp_path / "restart.yml"
    copy.write_text(SERVICE_RESTART.read_text())
    found = {link.rule.alert: link for link in links([
        rule("NoLink"), rule("Missing", "fixtures/runbooks/nope.yml"),
        rule("NotPaged", str(copy)), rule("FulskBackendDown", f"{copy}?no_such=1"),
        rule("RedisDown", f"{copy}?service_name=redis")], ROOT)}
    assert found["NoLink"].why_not == "no runbook_url annotation"
    assert "no such file" in found["Missing"].why_not
    assert "no trigger case of restart pages it" in found["NotPaged"].why_not
    assert "'no_such' is none of restart's params" in found["FulskBackendDown"].why_not
    assert found["RedisDown"].replayable and found["RedisDown"].runbook.params == {"service_name": "redis"}
    assert not any(link.replayable for name, link in found.items() if name != "RedisDown")


@pytest.mark.parametrize("edit, complaint", [
    (lambda d: d["steps"][0].update(role="fixes"), "role: 'fixes': one of diagnose, fix"),
    (lambda d: d["trigger"][0].update(pages="FulskBackendDown"), "pages: expected a list of alert names"),
    (lambda d: d["trigger"][0].update(runbook_params={"service": "x"}), "'service' is none of the runbook's params"),
])
def test_a_runbook_file_with_a_wrong_role_pages_or_case_parameter_is_refused_in_one_line(tmp_path, edit, complaint):
    data = yaml.safe_load(SERVICE_RESTART.read_text())
    edit(data)
    path = tmp_path / "service-restart.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RunbookError, match=re.escape(complaint)):
        runbooks.load(str(path))


def test_a_case_fills_in_the_guides_placeholders_for_itself_and_the_link_may_too():
    runbook = runbooks.load("service-restart")
    assert runbook.for_case("crashed").params == {"service_name": "backend"}
    assert runbook.for_case("broker-crashed").params == {"service_name": "mqtt"}
    assert runbook.for_case("broker-crashed", service_name="x").params == {"service_name": "x"}


def test_coverage_counts_the_incidents_their_runbook_cleared_in_time():
    found = coverage(RULES.read_text(), [{"fault": "kill redis", "status": "ok", "pages": [{"alert": "RedisDown"}]}],
                     ROOT, [("RedisDown", True), ("PostgresDown", False)])
    assert found["replayed"] == ["PostgresDown", "RedisDown"] and found["cleared_by_runbook_in_time"] == ["RedisDown"]


# --- on a monitored stack -------------------------------------------------------------------------
def broken_fix(runbook_text: str) -> str:
    """The runbook as someone edited it: its restarts now only show the service's state."""
    text = runbook_text.replace("{{ctl}} restart service_name", "{{ctl}} status service_name")
    text = text.replace("{{ctl}} kill service_name", "{{ctl}} status service_name")
    text = text.replace("{{ctl}} start service_name", "{{ctl}} status service_name")
    assert text.count("status service_name") >= 3
    return text.replace("timeout_s: 60", "timeout_s: 5")  # its verifications give up sooner


def rules_linking(tmp_path: Path, runbook: Path) -> Path:
    rules = tmp_path / "alerts.yml.template"
    rules.write_text(RULES.read_text().replace(
        'summary: "The backend does not answer its /metrics: it is down or hung"\n          runbook_url: '
        '"fixtures/runbooks/service-restart.yml"',
        f'summary: "The backend does not answer its /metrics: it is down or hung"\n          runbook_url: "{runbook}"'))
    assert str(runbook) in rules.read_text()
    return rules


BACKEND_DOWN = "scenarios/test_incidents.py::test_incident[FulskBackendDown] --monitoring"
SHORT = "[incident.targets.critical]\nrecover_s = 20\nresolve_s = 25\n"


@pytest.mark.slow
def test_the_backend_down_page_leads_through_its_runbook_to_users_back_and_the_alert_resolved(run_scenario):
    run = run_scenario(BACKEND_DOWN)
    assert run.scenario["verdict"] == "pass", run.output[-3000:]
    m = run.scenario["measurements"]
    assert m["incident_alert"] == "FulskBackendDown" and m["incident_case"] == "unresponsive"
    assert all(m[f"{link}_s"] <= m["incident_targets"][f"{link}_s"]
               for link in ("detect", "diagnose", "recover", "resolve")), m
    assert m["detect_s"] < m["resolve_s"] and set(m["paged_channels"]) == {"pagerduty", "phone"}
    assert run.results["monitoring"]["cleared_by_runbook_in_time"] == ["FulskBackendDown"]


@pytest.mark.slow
def test_a_runbook_whose_fix_no_longer_fixes_fails_on_users_not_recovered_and_the_alert_not_resolved(
        run_scenario, tmp_path):
    runbook = tmp_path / "service-restart.yml"
    runbook.write_text(broken_fix(SERVICE_RESTART.read_text()))
    rules = rules_linking(tmp_path, runbook)
    run = run_scenario(BACKEND_DOWN, f'[monitoring]\nrules = "{rules}"\n{SHORT}', timeout_s=420)
    assert run.scenario["verdict"] == "fail", run.output[-3000:]
    failed = run.expectations(held=False)
    recover = next(e for name, e in failed.items() if name.startswith("time to recover"))
    resolve = next(e for name, e in failed.items() if name.startswith("time to resolve"))
    assert "users not recovered" in recover["detail"] and "alert not resolved" in resolve["detail"]
    for detail in (recover["detail"], resolve["detail"]):
        assert "graceful-restart failed" in detail and "force-start failed" in detail, detail
    assert not any(name.startswith("time to detect") for name in failed)  # the page itself came
    assert run.results["monitoring"]["cleared_by_runbook_in_time"] == []

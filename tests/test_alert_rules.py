"""Every alert rule, rendered as deployed (15 s scrapes, 5 m windows, 2 m delays, as the comment of
fixtures/monitoring/alerts.yml.template says) and as a drill renders it, passes `promtool check
rules`; and every rule is unit-tested with `promtool test rules` on the deployed rendering: it
fires on the series that describe its failure, with its labels and annotations, and stays quiet
on healthy ones. A rule without a case here fails the test by name."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from string import Template

import pytest
import yaml

from fulsk_chaos.config import Settings
from fulsk_chaos.services import FIXTURES, ServiceContext, Topology
from fulsk_chaos.services.prometheus import render_rules

pytestmark = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool comes with Debian's prometheus package")

DEPLOYED = {"window": "5m", "for": "2m", "for_sustained": "5m", "stale_after": "300", "behind_after": "60",
            "backlog": "1000"}

# rule: (the series of its failure, the series of health, when to look, the alert's own labels).
# 15 s between samples: 'AxN' holds A for N more samples; 'A+BxN' grows by B each.
CASES: dict[str, tuple[dict[str, str], dict[str, str], str, dict[str, str]]] = {
    "FulskBackendDown": ({'up{job="backend", instance="backend:3001"}': "0x20"},
                         {'up{job="backend", instance="backend:3001"}': "1x20"}, "3m",
                         {"job": "backend", "instance": "backend:3001"}),
    "FulskHighErrorRate": ({'fulsk_http_request_duration_seconds_count{status="500"}': "0+10x60",
                            'fulsk_http_request_duration_seconds_count{status="200"}': "0+10x60"},
                           {'fulsk_http_request_duration_seconds_count{status="500"}': "0x60",
                            'fulsk_http_request_duration_seconds_count{status="200"}': "0+10x60"}, "10m", {}),
    "FulskSlowResponses": ({'fulsk_http_request_duration_seconds_bucket{le="0.5"}': "0x60",
                            'fulsk_http_request_duration_seconds_bucket{le="5"}': "0+10x60",
                            'fulsk_http_request_duration_seconds_bucket{le="+Inf"}': "0+10x60"},
                           {'fulsk_http_request_duration_seconds_bucket{le="0.5"}': "0+10x60",
                            'fulsk_http_request_duration_seconds_bucket{le="5"}': "0+10x60",
                            'fulsk_http_request_duration_seconds_bucket{le="+Inf"}': "0+10x60"}, "10m", {}),
    "FulskDatabaseErrors": ({'fulsk_db_query_duration_seconds_count{outcome="error", query="latest"}': "0+1x60"},
                            {'fulsk_db_query_duration_seconds_count{outcome="error", query="latest"}': "0x60"},
                            "10m", {}),
    "FulskIngestDisconnected": ({"fulsk_mqtt_connected": "0x20"}, {"fulsk_mqtt_connected": "1x20"}, "3m", {}),
    # the newest reading stored at t=0 and never again; healthy, one every sample (the time itself)
    "FulskDataCollectionStopped": ({"fulsk_readings_newest_timestamp_seconds": "0x60"},
                                   {"fulsk_readings_newest_timestamp_seconds": "0+15x60"}, "10m", {}),
    "FulskFrontendDown": ({'probe_success{job="frontend", probe="page"}': "0x20"},
                          {'probe_success{job="frontend", probe="page"}': "1x20"}, "3m",
                          {"job": "frontend", "probe": "page"}),
    "FulskFrontendErrors": ({'probe_success{job="frontend", probe="api"}': "0x20",
                             'probe_success{job="frontend", probe="page"}': "1x20"},
                            {'probe_success{job="frontend", probe="api"}': "1x20",
                             'probe_success{job="frontend", probe="page"}': "1x20"}, "3m",
                            {"job": "frontend", "probe": "api"}),
    # every reading stored 90 s late; healthy, all within 0.25 s
    "FulskIngestBehind": ({'fulsk_ingest_delay_seconds_bucket{le="0.25"}': "0x60",
                           'fulsk_ingest_delay_seconds_bucket{le="60"}': "0x60",
                           'fulsk_ingest_delay_seconds_bucket{le="300"}': "0+10x60",
                           'fulsk_ingest_delay_seconds_bucket{le="+Inf"}': "0+10x60"},
                          {'fulsk_ingest_delay_seconds_bucket{le="0.25"}': "0+10x60",
                           'fulsk_ingest_delay_seconds_bucket{le="60"}': "0+10x60",
                           'fulsk_ingest_delay_seconds_bucket{le="300"}': "0+10x60",
                           'fulsk_ingest_delay_seconds_bucket{le="+Inf"}': "0+10x60"}, "10m", {}),
    "FulskIngestBacklog": ({'fulsk_ingest_pending{instance="b"}': "5000x20"},
                           {'fulsk_ingest_pending{instance="b"}': "3x20"}, "3m", {}),
    "PostgresDown": ({'pg_up{instance="pg"}': "0x20"}, {'pg_up{instance="pg"}': "1x20"}, "3m", {"instance": "pg"}),
    "PostgresConnectionsHigh": ({"pg_stat_activity_count": "90x20", "pg_settings_max_connections": "100x20"},
                                {"pg_stat_activity_count": "10x20", "pg_settings_max_connections": "100x20"}, "3m", {}),
    "RedisDown": ({'redis_up{instance="redis"}': "0x20"}, {'redis_up{instance="redis"}': "1x20"}, "3m",
                  {"instance": "redis"}),
    # idle 1.5 s of CPU per 15 s: 90 % busy; healthy, all of it idle
    "HostHighCpu": ({'node_cpu_seconds_total{mode="idle", cpu="0"}': "0+1.5x80"},
                    {'node_cpu_seconds_total{mode="idle", cpu="0"}': "0+15x80"}, "15m", {}),
    "HostHighMemory": ({"node_memory_MemAvailable_bytes": "10x40", "node_memory_MemTotal_bytes": "100x40"},
                       {"node_memory_MemAvailable_bytes": "50x40", "node_memory_MemTotal_bytes": "100x40"}, "9m", {}),
    "HostDiskLow": ({'node_filesystem_avail_bytes{mountpoint="/"}': "5x40",
                     'node_filesystem_size_bytes{mountpoint="/"}': "100x40"},
                    {'node_filesystem_avail_bytes{mountpoint="/"}': "50x40",
                     'node_filesystem_size_bytes{mountpoint="/"}': "100x40"}, "9m", {"mountpoint": "/"}),
}


def rules_of(text: str) -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r}


def deployed(tmp_path: Path) -> Path:
    template = (FIXTURES / "monitoring" / "alerts.yml.template").read_text()
    path = tmp_path / "alerts.yml"
    path.write_text(Template(template).substitute(DEPLOYED))
    return path


def drill(tmp_path: Path) -> Path:
    ctx = ServiceContext("prometheus", Topology(ports={}, edges={}, db_password="x"), Settings(), tmp_path, FIXTURES)
    path = tmp_path / "drill-alerts.yml"
    path.write_text(render_rules(ctx))
    return path


def test_every_rule_has_a_case():
    rules = rules_of(Template((FIXTURES / "monitoring" / "alerts.yml.template").read_text()).substitute(DEPLOYED))
    assert set(rules) == set(CASES), f"without a case: {sorted(set(rules) - set(CASES))}"


@pytest.mark.parametrize("render", [deployed, drill], ids=["deployed", "drill"])
def test_the_rules_as_deployed_and_as_a_drill_renders_them_pass_promtool_check(tmp_path: Path, render):
    path = render(tmp_path)
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(CASES)} rules found" in checked.stdout


def test_every_rule_fires_on_its_failure_and_stays_quiet_when_healthy(tmp_path: Path):
    path = deployed(tmp_path)
    rules = rules_of(path.read_text())
    groups = []
    for alert, (failing, healthy, at, labels) in CASES.items():
        rule = rules[alert]
        expected = {"exp_labels": {**rule.get("labels", {}), **labels}, "exp_annotations": rule.get("annotations", {})}
        for name, series, fires in ((f"{alert} fires", failing, True), (f"{alert} stays quiet", healthy, False)):
            groups.append({"name": name, "interval": "15s",
                           "input_series": [{"series": s, "values": v} for s, v in series.items()],
                           "alert_rule_test": [{"alertname": alert, "eval_time": at,
                                                "exp_alerts": [expected] if fires else []}]})
    tests = tmp_path / "alerts.test.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [path.name], "evaluation_interval": "15s", "tests": groups},
                                    sort_keys=False))
    tested = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-4000:]


@pytest.mark.skipif(not shutil.which("amtool"), reason="amtool comes with Debian's prometheus-alertmanager")
def test_alertmanager_as_deployed_passes_amtool_and_routes_each_severity_to_the_guides_channels(tmp_path: Path):
    """The routes rendered with deployed timings pass amtool's check, and amtool's own routing
    test sends each severity to the receiver holding exactly its escalation's channels."""
    text = Template((FIXTURES / "monitoring" / "alertmanager.yml.template").read_text()).substitute(
        group_wait="30s", group_interval="5m", repeat_interval="4h", webhook="http://alerts.invalid/alerts")
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    checked = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    receivers = {r["name"]: {c["url"].rsplit("/", 1)[1] for c in r["webhook_configs"]}
                 for r in yaml.safe_load(text)["receivers"]}
    for severity, channels in Settings().monitoring.escalation.items():
        routed = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={path}",
                                 f"severity={severity}", "alertname=Any"], capture_output=True, text=True)
        assert routed.returncode == 0, routed.stdout + routed.stderr
        (receiver,) = routed.stdout.split()
        assert receivers[receiver] == set(channels), (severity, receiver, receivers[receiver])

"""The weekly load test (nox -s load).

Hypothesis: under the load profile's steady traffic - dashboards loading the page and reading the
API, API reads arriving at a fixed rate, live viewers, an inverter fleet - the stack meets every
baseline of the ops guide (page load, API response, database query, WebSocket latency) and stays
under every alert threshold (HTTP response time, error rate, CPU, memory); no reading the broker
acknowledged is lost or stored twice; and no p95 or error rate regressed beyond the tolerance
against the stored baseline. A run whose generator saturated is invalid, not a finding.
Monitoring (with ``--monitoring``): a healthy stack under its weekly load pages nobody.
"""
import time

import pytest

from fulsk_chaos.checks.alerts import QUIET_UNDER_LOAD

pytestmark = [pytest.mark.scenario, pytest.mark.load(kind="steady")]


def test_load(load_drill):
    began = time.monotonic()
    load_drill.steady()
    load_drill.quiet(QUIET_UNDER_LOAD, began)
    load_drill.verdict()

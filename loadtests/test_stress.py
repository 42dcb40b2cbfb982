"""The monthly stress test (nox -s stress).

Hypothesis: the stack meets every baseline at the ramp's first step (the load it must carry), and
as API arrivals step up (open model: a slow server cannot slow them down) it degrades without
losing an acknowledged reading. The capacity is the highest step that met every baseline; the
report names the first baseline that broke, and at what load. Monitoring (with ``--monitoring``)
agrees with the ramp's users: nobody is paged while their figures stay under the alert thresholds,
and the first step whose users wait past the HTTP threshold or see more errors than it pages.
"""
import time

import pytest

from fulsk_chaos.checks.alerts import QUIET_UNDER_LOAD

pytestmark = [pytest.mark.scenario, pytest.mark.load(kind="stress")]


def test_stress(load_scenario):
    began = time.monotonic()
    load_scenario.ramp()
    load_scenario.alerts_follow_users(QUIET_UNDER_LOAD, began)
    load_scenario.verdict()

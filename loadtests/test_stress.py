"""The monthly stress test (nox -s stress).

Hypothesis: the stack meets every baseline at the ramp's first step (the load it must carry), and
as API arrivals step up (open model: a slow server cannot slow them down) it degrades without
losing an acknowledged reading. The capacity is the highest step that met every baseline; the
report names the first baseline that broke, and at what load.
"""
import pytest

pytestmark = [pytest.mark.scenario, pytest.mark.load(kind="stress")]


def test_stress(load_scenario):
    load_scenario.ramp()
    load_scenario.verdict()

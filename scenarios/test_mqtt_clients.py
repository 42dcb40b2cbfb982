"""Faults that come from the clients: floods of readings and garbage, connection storms, an
impostor with the backend's client id, live-feed clients that never read.

Hypothesis: what clients do wrong never costs the other clients - the backend stays healthy
and answers within the baselines, every legitimate reading the broker acknowledged is stored
once (the flood's too), no malformed, impossible or oversized one ever is, and freshness and the
live feed are back to normal within ``recovery.target_s`` of the flood ending.

Method: for ``scenarios.fault_s``, a flood at 10x the fleet's rate (QoS 1) with every kind of
malformed payload mixed in and 300 clients connecting at once; or another client repeatedly
taking over the backend's MQTT session; or 20 WebSocket clients that stop reading. Rollback:
they all stop and disconnect.
"""
from __future__ import annotations

import time

import pytest

from fulsk_chaos.figures import ClientFigures
from fulsk_chaos.verdict import Evidence


@pytest.mark.scenario
@pytest.mark.quick
@pytest.mark.evidence(acked_during_fault=10)
def test_flood_and_storm(experiment, chaos_settings):
    fleet = chaos_settings.fleet
    normal_rate = fleet.inverters / fleet.interval_s
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("flood", "mqtt", devices=5 * fleet.inverters, rate_per_s=10 * normal_rate,
                               qos=1, malformed_per_s=normal_rate / 2) as flood, \
                experiment.inject("connection-storm", "mqtt", clients=300) as storm:
            experiment.track(flood.handle.fleet)
            experiment.expect_never_stored(flood.handle.garbage_prefix, "malformed or impossible readings")
            time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(flood)
        experiment.steady_state("after")
    experiment.fault_window(flood)
    done = {**flood.record.details, **storm.record.details}
    garbage = sum(v for k, v in done.items() if k.startswith("garbage:"))
    experiment.record.measure(ClientFigures(storm_connected=done.get("connected", 0), garbage_sent=garbage))
    # The fault happened, or there is nothing to judge: a flood nobody acknowledged, a storm that never connected.
    experiment.record.expect([], [Evidence("flood readings acknowledged", done.get("legit_acked", 0), 100),
                                  Evidence("malformed messages published", garbage, 19),
                                  Evidence("storm clients connected", done.get("connected", 0), 150)])
    experiment.verdict()


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
def test_duplicate_client_id(experiment, chaos_settings):
    """Hypothesis: when another client keeps taking over the backend's MQTT session (and never
    acknowledges what it is handed), the backend takes it back and every acknowledged reading is
    still stored exactly once; steady again within the target."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("duplicate-client-id", "mqtt") as fault:
            time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault)
    experiment.record.expect([], [Evidence("session takeovers by the impostor", fault.record.details.get("takeovers", 0), 1)])
    experiment.verdict()


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
@pytest.mark.serial  # loads the host on purpose and judges the feed within 50 ms: beside another
def test_stuck_websockets(experiment, chaos_settings):  # drill the host stalled 0.83 of the fault
    """Hypothesis: live-feed clients that stop reading cost nobody else anything - while they
    hang on, the steady state holds in full for everyone else (health, API, freshness, and the
    live feed within 50 ms)."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("stuck-websockets", "frontend", clients=20) as fault:
            # a busy feed, so that there is plenty they do not read
            with experiment.inject("flood", "mqtt", devices=20, rate_per_s=200, malformed_per_s=0) as busy:
                experiment.track(busy.handle.fleet)
                time.sleep(chaos_settings.scenarios.fault_s)
                experiment.steady_state("during")
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault)
    experiment.record.expect([], [Evidence("feed clients stuck", fault.record.details.get("stuck", 0), 20)])
    experiment.verdict()

"""Network faults on the stack's edges, through Toxiproxy: slow links, black holes, resets, cuts.

Hypothesis: a slow link to a dependency costs users its latency, not an outage - reads keep
answering within the API baseline (p95 under 500 ms) and errors under the 5 % alert rate while
300 ± 50 ms is added, and a slow cache is invisible to users altogether; a link that swallows
everything (a black hole) makes requests fail fast within the backend's own timeout, never
hang, and /health says which dependency is gone; a broker link that resets loses nothing the
broker acknowledged and stores nothing twice; nginx answers quickly, within its bounded
timeouts, whatever happens between it and the backend. After each fault the steady state is
back within ``recovery.target_s``.

Method: one toxic (or a cut) on one edge for ``scenarios.fault_s``; rollback: the toxic removed,
verified gone from every proxy.
"""
from __future__ import annotations

import time

import pytest

LATENCY = {"latency_ms": 300, "jitter_ms": 50}  # the ops incident this scenario was written for


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
@pytest.mark.parametrize("dependency", [pytest.param("postgres", marks=pytest.mark.quick), "redis"])
def test_latency(dependency, experiment, chaos_settings):
    """Hypothesis: with 300 ± 50 ms on the backend's link to {dependency}, reads answer within the
    API baseline (p95 under 500 ms) and under the 5 % error rate; the cache's slowness is not
    even visible (users' view steady during it); steady again within the target after."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("latency", f"backend-{dependency}", **LATENCY) as fault:
            if dependency == "redis":
                experiment.steady_state("during", health=False)  # /health rightly says redis is slow
            else:
                time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault, read_p95_ms=chaos_settings.baselines.api_response_ms,
                            read_error_rate=chaos_settings.alerts.error_rate)
    experiment.alerts(fault, silent=["FulskBackendDown", "FulskIngestDisconnected", "PostgresDown", "RedisDown"])
    experiment.verdict()


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
def test_blackhole_postgres(experiment, chaos_settings):
    """Hypothesis: when the link to PostgreSQL swallows everything, every request is answered
    within the alert threshold (the backend's own timeout, not the client's), nothing hangs,
    /health reports postgres down; the steady state is back within the target after."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("blackhole", "backend-postgres") as fault:
            time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault, dependency="postgres")
    # A partition: PostgreSQL answers its exporter, so only the backend's own metrics can page.
    experiment.alerts(fault, fire=["FulskDatabaseErrors"], silent=["PostgresDown", "FulskBackendDown"])
    experiment.verdict()


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
def test_reset_peer_mqtt(experiment, chaos_settings):
    """Hypothesis: when the backend's broker connections are reset as soon as they carry data, it
    reconnects once the link is sane again and stores every reading the broker acknowledged
    meanwhile, once; /health reports mqtt down while it cannot stay connected."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject("reset-peer", "backend-mqtt") as fault:
            time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.fault_window(fault, dependency="mqtt")
    experiment.alerts(fault, fire=["FulskIngestDisconnected"], silent=["FulskDatabaseErrors", "FulskBackendDown"])
    experiment.verdict()


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
@pytest.mark.parametrize("kind", ["latency", "down"])
def test_frontend_to_backend(kind, experiment, chaos_settings):
    """Hypothesis: whatever happens between nginx and the backend - 300 ms more on the link, or
    the link cut - users get an answer within the alert threshold (an error while it is cut,
    the data when it is only slow), never a hang; steady again within the target after."""
    with experiment:
        experiment.steady_state("before")
        with experiment.inject(kind, "frontend-backend", **(LATENCY if kind == "latency" else {})) as fault:
            time.sleep(chaos_settings.scenarios.fault_s)
        experiment.recover(fault)
        experiment.steady_state("after")
    if kind == "latency":
        experiment.fault_window(fault, read_p95_ms=chaos_settings.alerts.http_response_ms,
                                read_error_rate=chaos_settings.alerts.error_rate)
    else:
        experiment.fault_window(fault)
    # The backend itself is fine and must not page; what users get through nginx is probed from
    # outside (nginx exports nothing): a cut link pages, a slow one within the threshold does not.
    backend_fine = ["FulskBackendDown", "FulskDatabaseErrors", "FulskIngestDisconnected", "FulskFrontendDown"]
    if kind == "latency":
        experiment.alerts(fault, silent=[*backend_fine, "FulskFrontendErrors"])
    else:
        experiment.alerts(fault, fire=["FulskFrontendErrors"], silent=backend_fine)
    experiment.verdict()

"""Cache faults: Redis emptied, squeezed by memory pressure, replaced by an empty node, or hung.

Hypothesis: the cache is an optimisation, never a dependency users can see - while it is
emptied, evicting, gone or hung, every read is answered within the API baseline (p95 under
500 ms) and error rate, with the values the database holds (fresh, never wrong), the live feed
keeps its 50 ms, and /health says the cache is degraded rather than the service down (answers
stay 2xx); the database is not stampeded while the cache refills (PostgreSQL's own statement
counts: at most ``steady_state.max_db_reads_per_read`` per user read). The steady state is back
within ``recovery.target_s`` once Redis is. Monitoring (with ``--monitoring``): a hung Redis
fires RedisDown; no alert about users' requests or the database fires for any cache fault.

Method: FLUSHALL; maxmemory shrunk to 2 MB and filled (allkeys-lru evicts real keys); SIGKILL
and a restart without its snapshot; SIGSTOP - each for ``scenarios.fault_s``; rollback: filler
deleted and memory settings restored, Redis started or thawed - each verified.
"""
from __future__ import annotations

import pytest

from fulsk_chaos.verdict import none_of

USERS_ALERTS = ["FulskHighErrorRate", "FulskSlowResponses", "FulskDatabaseErrors", "FulskBackendDown"]


@pytest.mark.scenario
@pytest.mark.evidence(acked_during_fault=10)
@pytest.mark.parametrize("kind", [pytest.param("flushall", marks=pytest.mark.quick), "memory-pressure",
                                  "restart-empty", "pause"])
def test_cache_fault(kind, experiment, chaos_settings):
    with experiment:
        experiment.steady_state("before")
        with experiment.db_load() as load:
            with experiment.inject(kind, "redis") as fault:
                experiment.steady_state("during", health=False)
        experiment.recover(fault)
        experiment.steady_state("after")
    experiment.judge_db_load(load)
    gone = kind in ("restart-empty", "pause")  # Redis unreachable: /health must say so
    window = experiment.fault_window(fault, dependency="redis" if gone else None,
                                     read_p95_ms=chaos_settings.baselines.api_response_ms,
                                     read_error_rate=chaos_settings.alerts.error_rate)
    health = window.samples.target("health")
    experiment.record.expect([none_of("during: /health said the service is down (only its cache was faulted)",
                                      len(health.where(lambda s: s.status is not None and s.status >= 500)),
                                      evidence={"health_samples": len(health)})])
    # A hung Redis is paged; users see nothing of any cache fault, so nothing of theirs may page.
    experiment.alerts(fault, fire=["RedisDown"] if kind == "pause" else [],
                      silent=[*([] if gone else ["RedisDown"]), *USERS_ALERTS])
    experiment.verdict()

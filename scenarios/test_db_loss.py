"""Database loss: PostgreSQL dies (SIGKILL) or hangs (SIGSTOP) under inverter traffic and API polling.

Steady-state hypothesis: API p95 within the 500 ms baseline, API and /health errors within the
5 % alert rate (ops guide), and every reading the broker acknowledged ends up stored.
Method: kill or freeze PostgreSQL, keep it down ``scenarios.db_loss.down_s``.
Rollback: restart it, or SIGCONT it (also when the scenario fails: the ``faults`` fixture).
Verdict: while it is down the API answers quickly (p99 under the 2 s alert threshold, nothing left
unanswered) and /health reports postgres down; back in steady state within ``recovery.target_s``
of the database being back; no acknowledged reading lost, none stored that was never sent.
"""
from __future__ import annotations

import time

import pytest

from fulsk_chaos.checks import assert_holds, settle, steady_state, wait_for_recovery


@pytest.mark.scenario
@pytest.mark.parametrize("mode", ["kill", "pause"])
def test_db_loss(mode, stack, faults, fleet, probe, journal, chaos_config):
    cfg = chaos_config
    down_s = cfg.scenarios.db_loss.down_s
    target_s = cfg.recovery.target_s
    dsn = stack.endpoints.database_dsn
    fleet.start()
    probe.start()

    # Steady state, before.
    before = steady_state(probe.observe(cfg.steady_state.window_s), cfg)
    journal.measure(baseline_p95_ms=before[0].measured, baseline_error_rate=before[1].measured)
    assert_holds(before, "before the fault")

    # Method, and its rollback.
    inject = faults.kill if mode == "kill" else faults.pause
    with inject("postgres") as fault:
        time.sleep(down_s)

    # Measurements.
    recovery = wait_for_recovery(probe, fleet, dsn, fault.ended, target_s=target_s,
                                 streak_s=cfg.steady_state.streak_s)
    after = steady_state(probe.observe(cfg.steady_state.window_s), cfg)
    fleet.stop()
    probe.stop()
    ledger = settle(fleet.sent, fleet.acked, dsn, fleet.inverter_ids, timeout_s=target_s)

    samples = probe.samples
    during = samples.window(fault.started, fault.ended)
    api, health = during.target("api"), during.target("health")
    reported_down = health.where(lambda s: s.dependency("postgres") == "down")
    detect_s = min((s.started for s in reported_down), default=None)
    journal.measure(
        recovery_s=recovery.recovery_s, recovery_target_s=target_s,
        api_recovery_s=recovery.api_s, ingest_recovery_s=recovery.ingest_s,
        sent=ledger.sent, acked=ledger.acked, stored=ledger.stored, lost=len(ledger.lost),
        unexpected=len(ledger.unexpected), duplicates=len(ledger.duplicates),
        error_rate=api.error_rate(), p95_ms=api.quantile_ms(0.95), p99_ms=api.quantile_ms(0.99),
        max_ms=api.max_ms(), unanswered=during.unanswered(), fault_samples=len(during),
        health_detect_s=None if detect_s is None else detect_s - fault.started,
        health_reported_down=len(reported_down), health_samples=len(health),
        after_p95_ms=after[0].measured, after_error_rate=after[1].measured,
    )

    # Verdict: every violated expectation is reported, data loss first.
    alert_ms = cfg.alerts.http_response_ms
    problems = []
    if not ledger.ok:
        problems.append(f"ledger: {ledger.describe()}")
    if not (api.quantile_ms(0.99) < alert_ms and during.unanswered() == 0):
        problems.append(f"API hung while the database was down: p99 {api.quantile_ms(0.99):.0f} ms "
                        f"(alert at {alert_ms:g} ms), {during.unanswered()} requests unanswered")
    if not reported_down:
        problems.append("/health never reported postgres down while it was down")
    if recovery.recovery_s is None or recovery.recovery_s > target_s:
        problems.append(f"not back in steady state within {target_s:g} s of the database being back "
                        f"(API: {_s(recovery.api_s)}, ingest backlog: {_s(recovery.ingest_s)})")
    problems += [f"after recovery: {c}" for c in after if not c.ok]
    assert not problems, "; ".join(problems)


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"

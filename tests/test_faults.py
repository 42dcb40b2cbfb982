"""The fault catalogue's promises: every fault is rolled back whatever happens, the rollback is
verified (and journaled), and faults touch only what the run started, on loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fulsk_chaos.config import Settings, from_mapping
from fulsk_chaos.errors import FaultError
from fulsk_chaos.faults import CATALOGUE, FaultInjector
from fulsk_chaos.faults.catalogue import is_loopback
from fulsk_chaos.faults.clients import malformed_payloads

ROOT = Path(__file__).resolve().parents[1]

# One fault of each family, with what it changes while active.
ONE_OF_EACH = [
    ("latency", "backend-postgres,backend-redis", {"stream": "both"}),
    ("down", "frontend-backend", {}),
    ("pause", "redis", {}),
    ("stop", "mqtt", {}),
    ("memory-pressure", "redis", {"policy": "noeviction"}),
    ("flood", "mqtt", {"devices": 5, "rate_per_s": 50, "malformed_per_s": 10}),
    ("connection-storm", "mqtt", {"clients": 50}),
    ("stuck-websockets", "frontend", {"clients": 3}),
]


class Boom(Exception):
    pass


@pytest.mark.provider
@pytest.mark.parametrize(("kind", "target", "params"), ONE_OF_EACH, ids=[c[0] for c in ONE_OF_EACH])
def test_a_fault_is_rolled_back_and_verified_when_the_scenario_raises(stack, kind, target, params):
    journal: list = []
    injector = FaultInjector(stack, journal)
    with pytest.raises(Boom):
        with injector.inject(kind, target, **params):
            assert stack.leftovers() or CATALOGUE[kind].family == "clients"  # it did change something
            raise Boom
    (record,) = journal
    assert record.details["rollback_verified"] == {"clean": True, "problems": [], "other_faults_active": []}
    assert stack.leftovers() == []
    stack.wait_healthy(timeout_s=30)


@pytest.mark.provider
def test_a_leftover_fails_the_rollback_and_says_what_was_left(stack):
    injector = FaultInjector(stack)
    fault = injector.inject("latency", "backend-redis")
    stack.toxiproxy.add_toxic("backend-postgres", "latency", {"latency": 10}, name="stray")  # not the fault's
    with pytest.raises(FaultError, match="toxic stray .* left on backend-postgres"):
        fault.rollback()
    assert "left behind" in fault.record.rollback_error
    stack.heal()
    assert stack.leftovers() == []


@pytest.mark.provider
def test_what_another_active_fault_holds_is_not_a_leftover(stack):
    injector = FaultInjector(stack)
    paused = injector.inject("pause", "redis")
    with injector.inject("latency", "backend-postgres") as slow:
        pass
    assert slow.record.details["rollback_verified"]["clean"] is True
    assert slow.record.details["rollback_verified"]["other_faults_active"] == ["redis"]
    # what needs redis answering is refused while it is frozen: the failure would be ours, not the stack's
    assert not injector.applicable("flushall", "redis") and not injector.applicable("pause", "redis")
    assert injector.applicable("kill", "redis") and injector.applicable("pause", "mqtt")
    with pytest.raises(FaultError, match="flushall of redis refused: redis is paused.* acts only on a service that "
                                         "is running; heal"):
        injector.inject("flushall", "redis")
    assert [f.record.kind for f in injector.active] == ["pause"]
    paused.rollback()
    assert paused.record.details["rollback_verified"]["clean"] is True
    assert stack.leftovers() == []


def test_faults_refuse_targets_the_run_did_not_start_or_not_on_loopback():
    stack = SimpleNamespace(settings=Settings(), services={"redis": SimpleNamespace(address="redis://10.1.2.3:6379/0",
                                                                            spec=SimpleNamespace(serves=("redis",)))},
                            topology=SimpleNamespace(edges={"backend-postgres": None}),
                            endpoints=SimpleNamespace(proxies={"backend-postgres": {"upstream_address": "127.0.0.1:5"}}))
    stack.service = lambda name: stack.services[name]
    with pytest.raises(FaultError, match="10.1.2.3:6379/0 is not on loopback .*allow_non_loopback"):
        CATALOGUE["flushall"].check_target(stack, "redis")
    with pytest.raises(FaultError, match="backend-mysql is not an edge of this stack"):
        CATALOGUE["latency"].check_target(stack, "backend-postgres,backend-mysql")
    CATALOGUE["latency"].check_target(stack, "backend-postgres")  # loopback, ours: allowed
    stack.settings = from_mapping({"faults": {"allow_non_loopback": True}})
    CATALOGUE["flushall"].check_target(stack, "redis")  # explicitly allowed


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:5432", True), ("http://127.0.0.1:8080", True), ("postgresql://u:p@127.0.0.5:5/db", True),
    ("http://localhost:1", True), ("[::1]:80", True), ("10.0.0.1:80", False), ("http://example.org", False),
    ("postgresql://u:p@db.internal:5432/x", False)])
def test_loopback_is_judged_from_the_address(address, loopback):
    assert is_loopback(address) is loopback


def test_malformed_payloads_cover_every_case_with_ids_of_their_own():
    prefix = "flood-x-bad"
    first_round = [next(g) for g in [malformed_payloads(prefix, oversized_kb=80)] for _ in range(19)]
    cases = [case for case, _, _ in first_round]
    assert len(set(cases)) == 19 and {"power-nan", "seq-beyond-64-bits", "control-chars-in-id", "oversized",
                                      "not-json", "missing-field", "ts-far-future"} <= set(cases)
    assert all(inverter.startswith(prefix) for _, inverter, _ in first_round)
    oversized = dict((c, p) for c, _, p in first_round)["oversized"]
    assert len(oversized) > 64 * 1024


SCENARIO_THAT_RAISES = '''
import os

import pytest

@pytest.mark.scenario
def test_raises_mid_faults(faults):
    faults.inject("latency", "backend-postgres")
    faults.inject("pause", "redis")
    faults.inject("flood", "mqtt", devices=5, rate_per_s=50, malformed_per_s=5)
    faults.inject("kill", "frontend")
    raise RuntimeError("the scenario broke in the middle of its faults")

def test_the_stack_is_clean_and_healthy_after(stack):
    assert stack.leftovers() == []
    stack.wait_healthy(timeout_s=30)
'''


@pytest.mark.slow
def test_a_scenario_that_raises_mid_fault_leaves_a_clean_healthy_stack(tmp_path):
    (tmp_path / "test_raises.py").write_text(SCENARIO_THAT_RAISES)
    done = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_raises.py"), "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), "--report-dir", str(tmp_path / "reports")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    (results,) = (tmp_path / "reports").glob("*/results.json")
    (scenario,) = json.loads(results.read_text())["scenarios"]
    assert scenario["verdict"] == "error" and "the scenario broke" in scenario["reason"]
    faults = {f["kind"]: f for f in scenario["faults"]}
    assert set(faults) == {"latency", "pause", "flood", "kill"}
    for fault in faults.values():
        assert fault["details"].get("rollback_verified", {}).get("clean") is True, fault
        assert fault["ended_at"] is not None


@pytest.mark.provider
def test_a_connection_storm_comes_from_a_process_of_its_own_and_leaves_with_its_rollback(stack):
    """Its connecting threads must not starve the probes sampling the stack from this process."""
    journal: list = []
    with FaultInjector(stack, journal).inject("connection-storm", "mqtt", clients=40) as fault:
        storm = fault.handle
        assert storm.proc.pid != os.getpid() and storm.proc.poll() is None
        assert storm.details() == {"connected": 40, "refused": 0, "failed": 0}
    assert storm.proc.returncode == 0
    assert journal[0].details["connected"] == 40

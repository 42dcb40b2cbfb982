"""A fault that did not bite is not a pass: every kind of the catalogue declares the condition it
exists to create, it is measured from the stack (the kernel, the engine, Redis, the broker), each
kind reaches it with the parameters and the duration the schedule search uses (the catalogue's
shortest), and a fault too short to reach it makes the verdict error, never pass."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from fulsk_chaos.faults import CATALOGUE, FaultInjector
from fulsk_chaos.faults.canary import Canary, Redis, exchange
from fulsk_chaos.faults.conditions import Condition, Watch, Watcher, condition_expectation, reached
from fulsk_chaos.faults.measure import socket_states
from fulsk_chaos.verdict import at_least, judge

MISSED = {"condition": "the broker is flooded", "source": "the broker ($SYS)", "reached": False,
          "reached_after_s": None, "checks": 3,
          "measured": reached("the broker's PUBLISH rate above its rate before", 4.0, ">=", 105, "msg/s").to_json()}
BIT = {**MISSED, "reached": True, "reached_after_s": 1.0,
       "measured": reached("the broker's PUBLISH rate above its rate before", 180.0, ">=", 105, "msg/s").to_json()}


def test_every_kind_declares_its_condition_and_who_reports_it():
    for name, kind in CATALOGUE.items():
        assert kind.condition is not None, f"{name} declares no condition"
        assert kind.condition.text and kind.condition.source, name


def test_a_fault_that_did_not_bite_makes_the_verdict_error_and_a_measured_failure_outranks_it():
    answered = at_least("answers within the baseline", 10, 1)
    missed = condition_expectation("flood", "mqtt", MISSED)
    verdict = judge("h", [answered, missed])
    assert verdict.status == "error"
    assert verdict.reason.startswith("the fault did not reach its condition (flood on mqtt: the broker is flooded; "
                                     "measured by the broker ($SYS): the broker's PUBLISH rate above its rate before "
                                     "= 4.0 msg/s (needed >= 105 msg/s)")
    failed = judge("h", [at_least("answers within the baseline", 0, 1), missed])
    assert failed.status == "fail" and "; also the fault did not reach its condition (flood on mqtt" in failed.reason
    assert judge("h", [answered, condition_expectation("flood", "mqtt", BIT)]).status == "pass"
    never = judge("h", [answered, condition_expectation("kill", "backend", None)])
    assert never.status == "error" and "never measured" in never.reason


class Unmeasurable(Watch):
    def baseline(self) -> None:
        raise ConnectionRefusedError("nothing listens")


class NeverThere(Watch):
    interval_s = 0.01

    def check(self, handle: Any):
        return reached("signs", 0, ">=", 1, detail="none seen")


def test_a_condition_that_cannot_be_measured_or_is_never_seen_is_not_reached_and_says_why():
    blind = Watcher(Condition("x", "nobody", Unmeasurable), None, "t", {}).start(time.monotonic())
    blind.stop()
    entry = blind.finish()
    assert entry["reached"] is False and entry["measured"] is None
    assert entry["errors"] == ["baseline: ConnectionRefusedError: nothing listens"]
    watcher = Watcher(Condition("y", "nobody", NeverThere), None, "t", {}).start(time.monotonic())
    watcher.injected(object())
    time.sleep(0.1)
    watcher.stop()
    entry = watcher.finish()
    assert entry["reached"] is False and entry["checks"] >= 2 and entry["measured"]["detail"] == "none seen"


def test_the_kernel_reports_a_send_path_blocked_by_a_reader_that_does_not_read():
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(server.getsockname())
        writer, _ = server.accept()
        writer.setblocking(False)
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    writer.send(b"x" * 4096)
                except BlockingIOError:
                    pass
                time.sleep(0.01)
            (state,) = socket_states(server.getsockname()[1], [reader.getsockname()[1]])
            assert state.peer_port == reader.getsockname()[1]
            assert state.send_q > 0 and state.notsent > 0 and state.rwnd_limited_ms > 0
        finally:
            writer.close()
            reader.close()


def test_a_canary_tells_an_answer_from_silence_a_refusal_and_a_reset():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve(answer: bytes | None, reset: bool = False) -> None:
            conn, _ = server.accept()
            conn.recv(64)
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif answer is not None:
                conn.sendall(answer)
                time.sleep(0.3)
            else:
                time.sleep(0.6)
            conn.close()
        for answer, reset, seen in [(b"+PONG\r\n", False, "answered"), (None, False, "silent"), (None, True, "reset")]:
            thread = threading.Thread(target=serve, args=(answer, reset))
            thread.start()
            got = Canary(port, Redis()).ping(timeout_s=0.4)
            thread.join()
            assert {"answered": got.complete and got.answered_ms is not None, "silent": got.silent_ms is not None,
                    "reset": got.reset}[seen], (seen, got)
    assert exchange(port, Redis().ping(), 0.5).refused  # nothing listens there any more


def _reach(stack, cases: list[tuple[str, str]], hold_s: float) -> dict[str, Any]:
    """Each (kind, target) injected with the schedule search's parameters for ``hold_s``; what
    did not reach its condition, with what its journal says."""
    missed = {}
    for kind, target in cases:
        injector = FaultInjector(stack)
        if not injector.supported(kind, target):
            continue
        with injector.inject(kind, target, **CATALOGUE[kind].search_params) as fault:
            time.sleep(hold_s)
        entry = fault.record.condition
        if not entry["reached"]:
            missed[f"{kind} {target}"] = entry
    return missed


@pytest.mark.provider
def test_each_process_fault_reaches_its_condition(stack, chaos_settings):
    cases = [("kill", "backend"), ("stop", "redis"), ("pause", "postgres"), ("restart", "mqtt"),
             ("volume-loss", "postgres")]  # volume loss on a provider with volumes only
    assert _reach(stack, cases, chaos_settings.schedules["quick"].fault_s) == {}


def test_each_network_fault_reaches_its_condition(stack, chaos_settings):
    cases = [("latency", "backend-postgres"), ("bandwidth", "backend-redis"), ("blackhole", "frontend-backend"),
             ("reset-peer", "backend-mqtt"), ("slow-close", "backend-redis"), ("slicer", "inverters-mqtt"),
             ("limit-data", "frontend-backend"), ("down", "backend-postgres")]
    assert _reach(stack, cases, chaos_settings.schedules["quick"].fault_s) == {}


def test_each_cache_and_client_fault_reaches_its_condition(stack, fleet, chaos_settings):
    """With the fleet publishing: the cache has keys to lose and the live feed data to send."""
    fleet.start()
    time.sleep(1.0)
    cases = [("flushall", "redis"), ("memory-pressure", "redis"), ("restart-empty", "redis"), ("flood", "mqtt"),
             ("malformed", "mqtt"), ("connection-storm", "mqtt"), ("duplicate-client-id", "mqtt"),
             ("stuck-websockets", "frontend")]
    assert _reach(stack, cases, chaos_settings.schedules["quick"].fault_s) == {}


@pytest.mark.provider
@pytest.mark.serial  # on a busy host the injection and rollback alone took long enough for a flood to bite
@pytest.mark.parametrize(("hold_s", "status"), [(0.0, "error"), (2.0, "pass")], ids=["shortened", "as-catalogued"])
def test_a_flood_too_short_to_reach_the_broker_is_an_error_not_a_pass(experiment, hold_s, status):
    with experiment:  # the experiment's phases, in their order (a fault needs a steady state before it)
        experiment.steady_state("before")
        with experiment.inject("flood", "mqtt", **CATALOGUE["flood"].search_params) as flood:
            time.sleep(hold_s)
        experiment.recover(flood)
    verdict = experiment.verdict()
    assert verdict.status == status, verdict.reason
    if status == "error":
        assert verdict.reason.startswith("the fault did not reach its condition (flood on mqtt: the stack is flooded")
    (entry,) = [f.condition for f in experiment.record.faults]
    assert entry["reached"] is (status == "pass") and "received_metric" in entry["source"]

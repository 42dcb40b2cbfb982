"""The local stack: real servers wired through Toxiproxy, and the process faults acting on all of a service."""
from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import psycopg
import pytest
import requests

from fulsk_chaos.host.ports import LOWEST, ephemeral_range
from fulsk_chaos.probes import Fleet
from fulsk_chaos.host.procs import identity, listening_ports, service_processes, state, survivors
from fulsk_chaos.stack import StackError
from fulsk_chaos.wait import wait_until

pytestmark = pytest.mark.provider


def test_every_service_listens_on_its_own_loopback_port(stack):
    ports = stack.topology.ports
    assert set(ports) == {"toxiproxy", "postgres", "redis", "mqtt", "backend", "frontend"}
    listening = listening_ports()
    for name, port in ports.items():
        assert port in listening, name
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_every_dependency_edge_goes_through_toxiproxy(stack):
    proxies = stack.toxiproxy.proxies()
    assert set(proxies) == {e.name for e in stack.catalogue.edges} and stack.catalogue.edges
    for edge in stack.topology.edges.values():
        proxy = proxies[edge.name]
        assert proxy["listen"] == f"127.0.0.1:{edge.listen}"
        assert proxy["upstream"] == f"127.0.0.1:{stack.topology.ports[edge.upstream]}"
        assert proxy["enabled"]


def test_disabling_the_backends_database_edge_is_seen_by_health(stack):
    stack.toxiproxy.set_enabled("backend-postgres", False)
    try:
        body = requests.get(stack.endpoints.frontend_url + "/health", timeout=5).json()
        assert body["dependencies"]["postgres"]["status"] == "down"
        assert body["status"] == "down"
    finally:
        stack.toxiproxy.set_enabled("backend-postgres", True)


def test_health_through_nginx_as_the_ops_guide_checks_it(stack):
    response = requests.get(stack.endpoints.frontend_url + "/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {d["status"] for d in body["dependencies"].values()} == {"ok"}
    assert body["storage"] in {"postgresql", "timescaledb"}


def test_the_dashboard_is_served(stack):
    page = requests.get(stack.endpoints.frontend_url + "/", timeout=5)
    assert page.status_code == 200 and "<h1>Fulsk</h1>" in page.text


def test_kill_takes_every_process_of_the_service(stack):
    postgres = stack.service("postgres")
    before = {identity(p) for p in service_processes(postgres.pid)} - {None}
    assert len(before) > 3  # postmaster, checkpointer, walwriter, backends... (each in its own session)
    postgres.kill()
    assert survivors(before) == []  # every one of them, when kill() returns
    assert stack.topology.ports["postgres"] not in listening_ports()
    postgres.start_healthy()
    with psycopg.connect(stack.endpoints.database_dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pause_freezes_every_process_and_resume_thaws_them(stack):
    postgres = stack.service("postgres")
    postgres.pause()
    try:
        members = service_processes(postgres.pid)
        # stopped by SIGSTOP (T), or frozen by the container's cgroup freezer (D)
        assert members and {state(p) for p in members} <= {"T", "D"}  # all frozen when pause() returns
        # An answer from the backend, not a hang (that would be nginx's 504 after 10 s, or a timeout).
        response = requests.get(stack.endpoints.frontend_url + "/api/inverters", timeout=10)
        assert response.status_code == 503 and response.json()["dependency"] == "postgres"
    finally:
        postgres.resume()
    # none left stopped (a backend process exiting meanwhile may show as a zombie until reaped: thawed all the same)
    assert not {state(p) for p in service_processes(postgres.pid)} & {"T", "t"}
    stack.wait_healthy("backend", timeout_s=10)


def test_losing_redis_degrades_but_does_not_take_the_service_down(stack):
    stack.service("redis").kill()
    body = requests.get(stack.endpoints.frontend_url + "/health", timeout=5)
    assert body.status_code == 200
    assert body.json()["status"] == "degraded"
    assert body.json()["dependencies"]["redis"]["status"] == "down"
    assert requests.get(stack.endpoints.frontend_url + "/api/inverters", timeout=5).status_code == 200
    # the stack fixture heals the stack after this test: redis is restarted


def test_stop_uses_the_services_own_stop_signal(stack):
    postgres = stack.service("postgres")
    assert postgres.spec.stop_signal == signal.SIGINT  # fast shutdown, as the official image does
    postgres.stop()
    assert not postgres.running
    assert "database system is shut down" in postgres.log_tail(50) or "shutting down" in postgres.log_tail(50)
    postgres.start_healthy()


def test_a_killed_broker_comes_back_with_every_message_it_acknowledged_to_a_session_away(stack):
    """QoS 1 messages queued for a persistent session that is away (the backend frozen, say) and
    acknowledged to the publisher survive the broker's SIGKILL right after the last
    acknowledgement. Saved every second, a broker killed at once lost all of them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    port, topic, n = stack.topology.ports["mqtt"], "fulsk-test/durable", 200

    def client(client_id: str) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=client_id == "")
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        return c
    away, subscribed = client("fulsk-test-away"), threading.Event()
    away.on_subscribe = lambda *args: subscribed.set()
    away.subscribe(topic, qos=1)
    assert subscribed.wait(5), "no SUBACK within 5 s"
    away.loop_stop()
    away.disconnect()
    publisher = client("")
    sent = [publisher.publish(topic, str(i).encode(), qos=1) for i in range(n)]
    for info in sent:
        info.wait_for_publish(10)
    assert all(info.is_published() for info in sent)  # every PUBACK in
    stack.service("mqtt").kill()
    publisher.loop_stop()
    stack.service("mqtt").start_healthy()
    got: list[bytes] = []
    back = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fulsk-test-away", clean_session=False)
    back.on_message = lambda c, u, m: got.append(m.payload)
    back.connect("127.0.0.1", port, keepalive=10)
    back.loop_start()
    def all_in() -> None:
        assert len(set(got)) >= n, f"{len(set(got))} of {n}"
    try:
        wait_until(all_in, 10, f"the {n} acknowledged messages")
    finally:
        back.loop_stop()
        back.disconnect()
    assert sorted(set(got), key=int) == [str(i).encode() for i in range(n)]


def test_the_stacks_memory_directory_is_on_a_memory_filesystem_or_none(tmp_path):
    """The broker's store goes there: a directory that is not a tmpfs mount is never taken for one."""
    from fulsk_chaos.stack.stack import memory_root
    assert memory_root("abc", shm=tmp_path) is None
    path = memory_root("abc")
    if path is not None:
        try:
            assert path.parent == Path("/dev/shm") and path.name.startswith("fulsk-chaos-abc-")
        finally:
            path.rmdir()


def test_a_proxy_that_does_not_answer_is_said_to_hang_and_restarting_it_brings_every_edge_back_clean(stack):
    """Toxiproxy can hang removing a toxic (Shopify/toxiproxy#558): the client says so as an
    instrument failure, not the stack's, and the heal's way out is a restart with every proxy."""
    from fulsk_chaos.errors import InstrumentError
    from fulsk_chaos.services.toxiproxy import ToxiproxyClient
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        client = ToxiproxyClient(silent.getsockname()[1], timeout_s=0.3)
        with pytest.raises(InstrumentError, match="no answer within 0.3 s"):
            client.proxies()
        client.close()
    stack.toxiproxy.add_toxic("backend-redis", "latency", {"latency": 100})
    said = stack.restart_proxy("a test")
    assert said.startswith("restarted toxiproxy")
    proxies = stack.toxiproxy.proxies()
    assert set(proxies) == {e.name for e in stack.catalogue.edges}
    assert all(p["enabled"] and p["toxics"] == [] for p in proxies.values())
    stack.wait_ready()


def test_heal_returns_the_stack_to_steady_state(stack):
    stack.service("mqtt").kill()
    stack.service("redis").pause()
    stack.toxiproxy.add_toxic("frontend-backend", "latency", {"latency": 3000})
    actions = stack.heal()
    assert "restarted mqtt" in actions and "resumed redis" in actions
    assert stack.toxiproxy.proxies()["frontend-backend"]["toxics"] == []
    assert requests.get(stack.endpoints.frontend_url + "/health", timeout=5).json()["status"] == "ok"


def test_unknown_service_is_a_clear_error(stack):
    with pytest.raises(StackError, match="no service 'mysql'"):
        stack.service("mysql")


def test_the_stack_listens_outside_the_ephemeral_range(stack):
    """Outgoing connections take their source ports from the ephemeral range: a port chosen there
    can be taken by any client before the server binds it (seen: toxiproxy 'address already in use')."""
    low, high = ephemeral_range()
    ports = [*stack.topology.ports.values(), *(e.listen for e in stack.topology.edges.values())]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < low for port in ports)


def test_a_scaled_service_shares_its_port_and_each_backend_has_its_own_mqtt_session(stack):
    """``ctl scale``: the instances share one port (SO_REUSEPORT), each backend leases its own
    MQTT client id (replicas sharing one would take the session from each other), and scaling
    down stops the newest."""
    from fulsk_chaos.runbooks.scaling import instances_serving
    from fulsk_chaos.stack.control import request
    header = stack.contract.capabilities.instance_header
    if stack.provider != "local":
        pytest.skip("on Docker, replicas are Compose's (the scale-up runbook scales them with docker-compose)")
    try:
        answer = request(stack.control_path, "scale", "backend", count=3)
        assert answer["instances"] == ["running"] * 3
        def each_answers_under_its_own_id() -> None:  # a new instance is "unslotted" until it leases its slot
            served, failed = instances_serving(stack.endpoints.backend_url + "/health", header)
            assert set(served) - {"unslotted"} == {"fulsk-backend", "fulsk-backend-1", "fulsk-backend-2"}, served
            assert failed == 0
        wait_until(each_answers_under_its_own_id, 30, "each backend instance answering under its own client id")
        def every_instance_holds_its_session() -> None:  # none taken by another (a replica may still be connecting)
            health = [requests.get(stack.endpoints.backend_url + "/health", timeout=5, headers={"Connection": "close"})
                      .json() for _ in range(30)]
            assert all(h["dependencies"]["mqtt"]["status"] == "ok" for h in health), health
        wait_until(every_instance_holds_its_session, 30, "every backend instance connected to the broker")
        # as docker-compose's, stop and start act on every instance (a restore stops all writers)
        stopped = request(stack.control_path, "stop", "backend")["instances"]
        assert len(stopped) == 3 and "running" not in stopped, stopped
        assert request(stack.control_path, "start", "backend")["instances"] == ["running"] * 3
        wait_until(each_answers_under_its_own_id, 30, "each backend instance answering again after a start")
        assert request(stack.control_path, "scale", "backend", count=1)["instances"] == ["running"]
        def the_one_left_holds_the_configured_id() -> None:
            # it may have held another slot (its lease relocked while a replica moved down): it moves
            # down to slot 0, and the session the broker keeps for the backend, within a heartbeat
            served, _ = instances_serving(stack.endpoints.backend_url + "/health", header, bursts=1)
            assert set(served) == {"fulsk-backend"}, served
        wait_until(the_one_left_holds_the_configured_id, 10, "the instance left answering as fulsk-backend")
        # the departed instances unsubscribed: every reading is still stored, once
        fleet = Fleet(stack.endpoints.mqtt_host, stack.endpoints.mqtt_port, inverters=3, interval_s=0.05,
                      max_messages=60).start()
        def all_acked() -> None:
            assert len(fleet.acked()) == 60, f"{len(fleet.acked())} of 60 acknowledged"
        wait_until(all_acked, 20, "the fleet's 60 readings acknowledged")
        fleet.stop()

        def all_stored() -> None:
            with psycopg.connect(stack.endpoints.database_dsn) as conn:
                stored = conn.execute("SELECT count(*) FROM readings WHERE inverter_id LIKE %s",
                                      (fleet.prefix + "%",)).fetchone()[0]
            assert stored == 60, f"{stored} of 60 stored"
        wait_until(all_stored, 10, "every reading stored after scaling down")
    finally:
        stack.scale("backend", 1)


def test_only_stateless_services_scale(stack):
    if stack.provider != "local":
        pytest.skip("on Docker, replicas are Compose's")
    with pytest.raises(StackError, match="postgres cannot be scaled"):
        stack.scale("postgres", 2)

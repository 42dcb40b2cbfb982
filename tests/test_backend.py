"""The reference backend keeps the production contract: ingest, API, cache, live feed, metrics."""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pytest
import requests
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, WSMsgType
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from fulsk_chaos.checks import stored_keys
from fulsk_chaos.probes import Fleet
from fulsk_chaos.stack.stack import FIXTURES
from fulsk_chaos.wait import wait_until


def publish(stack, payloads: list[dict]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.connect("127.0.0.1", stack.endpoints.mqtt_port)
    client.loop_start()
    try:
        for payload in payloads:
            topic = f"fulsk/inverters/{payload['inverter_id']}/telemetry"
            client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def reading(inverter: str, seq: int, ts: float, power: float = 1000.0) -> dict:
    return {"inverter_id": inverter, "site_id": "site-t", "seq": seq, "ts": ts, "power_w": power,
            "energy_wh": power / 3600}


@pytest.fixture
def api(stack):
    base = stack.endpoints.frontend_url

    def get(path: str, **kw) -> requests.Response:
        return requests.get(base + path, timeout=5, **kw)
    return get


def test_a_redelivered_reading_is_stored_once(stack, api):
    inverter = f"dup-{time.monotonic_ns()}"
    now = time.time()
    publish(stack, [reading(inverter, 1, now), reading(inverter, 1, now), reading(inverter, 2, now + 1)])
    stored = wait_until(lambda: _stored(stack, inverter, 2), 10, "two readings stored")
    assert stored == {(inverter, 1): 1, (inverter, 2): 1}


def _stored(stack, inverter: str, count: int):
    stored = stored_keys(stack.endpoints.database_dsn, [inverter])
    if len(stored) < count:
        raise AssertionError(f"{len(stored)} stored so far")
    return dict(stored)


def test_readings_latest_and_cache_aside(stack, api):
    inverter = f"api-{time.monotonic_ns()}"
    now = time.time()
    publish(stack, [reading(inverter, 1, now - 60, 500.0), reading(inverter, 2, now - 30, 750.0)])
    wait_until(lambda: _stored(stack, inverter, 2), 10, "readings stored")
    latest = api(f"/api/inverters/{inverter}/latest")
    assert latest.status_code == 200 and latest.json()["seq"] == 2 and latest.json()["power_w"] == 750.0
    cache = stack.client("redis")
    cache.delete(f"fulsk:latest:{inverter}")
    cache.close()
    missed = api(f"/api/inverters/{inverter}/latest")
    assert missed.headers["X-Cache"] == "miss" and missed.json()["seq"] == 2  # from the database
    # Only ingest fills the cache (in commit order): a read never writes what it read a moment ago.
    assert api(f"/api/inverters/{inverter}/latest").headers["X-Cache"] == "miss"
    publish(stack, [reading(inverter, 3, now - 10, 800.0)])

    def cached_newest() -> None:
        answer = api(f"/api/inverters/{inverter}/latest")
        assert answer.headers["X-Cache"] == "hit" and answer.json()["seq"] == 3
    wait_until(cached_newest, 10, "the newest commit to be cached")
    window = api(f"/api/inverters/{inverter}/readings", params={"from": now - 45, "to": now})
    assert [r["seq"] for r in window.json()["readings"]] == [2, 3]
    assert api(f"/api/inverters/{inverter}/readings", params={"from": "yesterday"}).status_code == 400
    assert inverter in {i["inverter_id"] for i in api("/api/inverters").json()["inverters"]}
    assert api("/api/inverters/nobody/latest").status_code == 404


def test_generation_totals_per_site(stack, api):
    inverter = f"gen-{time.monotonic_ns()}"
    publish(stack, [reading(inverter, 1, time.time(), 3600.0)])
    wait_until(lambda: _stored(stack, inverter, 1), 10, "reading stored")

    def site_listed():
        sites = {s["site_id"]: s for s in api("/api/generation").json()["sites"]}
        assert "site-t" in sites and sites["site-t"]["energy_wh"] >= 1.0
    wait_until(site_listed, 10, "generation totals to include the site")  # the cache TTL is 5 s


async def _first_live_messages(url: str, timeout_s: float, count: int = 2) -> list[dict]:
    async with ClientSession() as session, session.ws_connect(url) as ws:
        messages = []
        for _ in range(count):
            msg = await ws.receive(timeout=timeout_s)
            assert msg.type == WSMsgType.TEXT
            messages.append(json.loads(msg.data))
        return messages


def test_the_websocket_feed_carries_new_readings_through_nginx(stack):
    fleet = Fleet(stack.endpoints.mqtt_host, stack.endpoints.mqtt_port, inverters=2, interval_s=0.1,
                  max_duration_s=20).start()
    try:
        hello, message = asyncio.run(_first_live_messages(stack.endpoints.frontend_url.replace("http", "ws")
                                                          + "/ws/readings", 10))
    finally:
        fleet.stop()
    assert hello == {"type": "hello", "instance": "fulsk-backend"}  # which replica's feed it is
    assert message["type"] == "readings"
    assert message["readings"] and {"inverter_id", "seq", "ts", "power_w"} <= set(message["readings"][0])


def test_prometheus_metrics(stack):
    text = requests.get(stack.endpoints.metrics_url, timeout=5).text
    for name in ("fulsk_http_request_duration_seconds_bucket", "fulsk_db_query_duration_seconds_bucket",
                 "fulsk_ingest_received_total", "fulsk_ingest_committed_total", "fulsk_ingest_lag_seconds",
                 "fulsk_cache_hits_total", "fulsk_cache_misses_total", "fulsk_mqtt_connected 1.0"):
        assert name in text, name


def test_poisoned_messages_are_dropped_and_ingest_goes_on(stack):
    """A poisoned message (a timestamp 1e18, NaN power, a 70-bit seq, not JSON at all) is dropped and
    counted; the readings after it are stored. Unguarded, `"ts": 1e18` killed the ingest task for good."""
    inverter = f"poison-{time.monotonic_ns()}"
    now = time.time()
    poisons = [{**reading(inverter, 1, now), "ts": 1e18}, {**reading(inverter, 2, now), "power_w": float("nan")},
               {**reading(inverter, 3, now), "seq": 2 ** 70}, {**reading(inverter, 4, now), "ts": -1e300},
               {**reading(inverter, 5, now), "inverter_id": "bad\x00id"}]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.connect("127.0.0.1", stack.endpoints.mqtt_port)
    client.loop_start()
    try:
        for payload in poisons:
            client.publish(f"fulsk/inverters/{inverter}/telemetry", json.dumps(payload), qos=1).wait_for_publish(5)
        client.publish(f"fulsk/inverters/{inverter}/telemetry", b"{not json", qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    publish(stack, [reading(inverter, 6, now + 1)])
    assert wait_until(lambda: _stored(stack, inverter, 1), 10, "the valid reading stored") == {(inverter, 6): 1}
    metrics = requests.get(stack.endpoints.metrics_url, timeout=5).text
    invalid = next(line for line in metrics.splitlines() if line.startswith("fulsk_ingest_invalid_total"))
    assert float(invalid.split()[-1]) >= len(poisons) + 1


async def _overload(base: str, paths: list[str], clients: int, seconds: float, per_client: int = 200) -> Counter:
    """Reads from clients joining one after another over `seconds` (each sending its next read as soon
    as it has an answer, at most `per_client`), up to `clients` at once: the load rises from nothing
    to far beyond what one backend process serves, through a moderate overload whatever the host."""
    answers: Counter = Counter()
    deadline = time.monotonic() + seconds
    async with ClientSession(timeout=ClientTimeout(total=10), connector=TCPConnector(limit=clients)) as session:
        async def client(first: int) -> None:
            await asyncio.sleep(seconds * first / clients)
            for n in range(first, first + per_client):
                if time.monotonic() >= deadline:
                    return
                try:
                    async with session.get(base + paths[n % len(paths)]) as response:
                        await response.read()
                        answers[response.status] += 1
                except (ClientError, asyncio.TimeoutError) as exc:
                    answers[type(exc).__name__] += 1
        await asyncio.gather(*(client(i) for i in range(clients)))
    return answers


def _pool(stack) -> dict[str, float]:
    text = requests.get(stack.endpoints.metrics_url, timeout=5).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "fulsk_db_pool_connections")
    return {s.labels["state"]: s.value for s in family.samples}


def _query_outcomes(stack) -> dict[str, float]:
    text = requests.get(stack.endpoints.metrics_url, timeout=5).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "fulsk_db_query_duration_seconds")
    outcomes: dict[str, float] = {}
    for sample in family.samples:
        if sample.name.endswith("_count"):
            outcomes[sample.labels["outcome"]] = outcomes.get(sample.labels["outcome"], 0) + sample.value
    return outcomes


@pytest.mark.serial  # loads the host on purpose: nothing beside it
def test_the_backend_recovers_from_an_overload_with_its_pool_whole(stack):
    """Seconds of reads far beyond what the backend serves are shed (503s), and once they stop it
    answers normally again with its database pool whole. Cancelled at their deadline while the pool
    took their connection back, requests used to lose it: the pool went on counting connections it
    no longer had, and after 8 s of 800 reads/s every read was a 503 after 1 s until a restart
    (before the fix, a burst like this one lost 16 to 30 of the pool's 30 connections, every time).
    What the pool turned away is counted ``saturated``, not a database ``error`` (it paged
    FulskDatabaseErrors under the stress search; here 309 to 659 of them, and no error, in 4 runs).
    The database link is made 18 ms slower so that the burst overloads a faster host too: at 10 ms,
    on a busy CI host, the burst (a closed loop) asked too slowly to overload it (no 503 in two
    runs: the test proved nothing); at 30 ms queries ran into their deadline (errors, not only
    saturation). At 18 ms: 3 of 3 idle and 2 of 2 beside two CPU hogs overloaded, with no error
    (and a CI run with 4 against 1228 saturated)."""
    now = time.time()
    paths = ["/api/inverters", "/api/inverters/nobody/latest", f"/api/inverters/nobody/readings?from={now - 3600}"]
    base = stack.endpoints.backend_url
    slow = stack.toxiproxy.add_toxic("backend-postgres", "latency", {"latency": 18, "jitter": 0})
    try:
        answers = asyncio.run(_overload(base, paths, clients=1500, seconds=8))
    finally:
        stack.toxiproxy.remove_toxic("backend-postgres", slow)
    assert answers[503], f"the burst did not overload the backend, so it proves nothing: {dict(answers)}"
    outcomes = _query_outcomes(stack)  # the database never failed: what the burst's load turned away
    # is no page about it. A few queries may still run into their deadline on a stalled host (a CI
    # run: 4 errors beside 1228 saturated); counted as errors, the pool's refusals were hundreds.
    saturated, errors = outcomes.get("saturated", 0), outcomes.get("error", 0)
    assert saturated > 0 and errors <= saturated / 50, outcomes

    def serves_with_its_pool_whole() -> None:
        assert requests.get(base + "/health", timeout=5).status_code == 200
        assert requests.get(base + "/api/inverters", timeout=5).status_code == 200
        pool = _pool(stack)
        assert pool["waiting"] == 0 and pool["available"] == pool["size"] > 0, f"pool {pool}"
    wait_until(serves_with_its_pool_whole, 10, f"the backend to serve with its pool whole after {dict(answers)}")


def test_a_call_past_its_deadline_is_cancelled_only_outside_the_steps_it_must_finish(monkeypatch):
    """bounded() answers at the deadline either way; inside uninterrupted() (a pool handing out or
    taking back a connection) the call is abandoned, not cancelled, and finishes the step."""
    monkeypatch.syspath_prepend(str(FIXTURES / "backend"))
    monkeypatch.delitem(sys.modules, "fulsk_backend.bounded", raising=False)
    from fulsk_backend.bounded import DependencyError, abandoned, bounded, uninterrupted

    async def run(must_finish: bool) -> list[str]:
        seen: list[str] = []

        async def call() -> None:
            try:
                with uninterrupted() if must_finish else contextlib.nullcontext():
                    await asyncio.sleep(0.3)
                seen.append("abandoned" if abandoned() else "wanted")
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
        with pytest.raises(DependencyError, match="no answer within 0.05 s"):
            await bounded("db", call(), 0.05)
        await asyncio.sleep(0.5)
        return seen

    assert asyncio.run(run(must_finish=True)) == ["abandoned"]
    assert asyncio.run(run(must_finish=False)) == ["cancelled"]


def test_the_backend_is_not_caught_up_while_the_broker_is_out_of_reach_nor_after_a_reconnection_until_a_fresh_batch(
        monkeypatch):
    """A total computed then may lack what the broker holds for it: the backend must not cache it
    (the drill's reset-peer backend-mqtt found one served for 3 s after the backlog was stored)."""
    monkeypatch.syspath_prepend(str(FIXTURES / "backend"))
    for name in [m for m in sys.modules if m.startswith("fulsk_backend")]:
        monkeypatch.delitem(sys.modules, name)
    from fulsk_backend.ingest import Ingest
    from fulsk_backend.metrics import Metrics
    from fulsk_backend.settings import Settings as BackendSettings

    class Flags:
        session_present, is_failure = True, False
    ingest = Ingest(BackendSettings("postgresql://x", "redis://x", "127.0.0.1", 1883, 3001), None, Metrics(),
                    lambda readings: None)
    client = type("Client", (), {"subscribe": lambda self, *a, **k: None})()
    assert not ingest.caught_up  # never connected
    ingest._on_connect(client, None, Flags(), Flags(), None)
    assert not ingest.caught_up  # connected, but what the broker kept is not stored yet
    ingest.behind_s = 0.2        # a fresh batch stored
    assert ingest.caught_up
    ingest._on_disconnect(client, None, Flags(), "gone", None)
    assert not ingest.caught_up

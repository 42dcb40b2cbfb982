"""The stack's real clients as Locust users; the mix and rates come from a load profile.

    FULSK_LOAD_PROFILE=weekly locust -f loadtests/locustfile.py -H http://FRONTEND \
        --headless --master ...            # fulsk_chaos.load starts it this way, with N workers

Environment: FULSK_LOAD_PROFILE (a profile name, a TOML path, or the profile as JSON),
FULSK_MQTT (host:port of the inverters' broker edge), FULSK_LOAD_OUT (where every process writes
its samples, ledger and, on the master, Locust's statistics) and FULSK_LOAD_RUN (a run id that
makes inverter ids unique).

Every request event is also written as a sample (start time, name, latency, outcome), so any
window of the run (before, during, after a fault; one stress step) can be judged exactly.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
from pathlib import Path

import gevent
import gevent.pool
import websocket
from locust import FastHttpUser, User, between, constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.event import EventHook
from locust.runners import MasterRunner, WorkerRunner

from fulsk_chaos.load import steering
from fulsk_chaos.load.profile import from_env
from fulsk_chaos.load.samples import UNSENT
from fulsk_chaos.contract import from_env as contract_from_env, from_epoch
from fulsk_chaos.load.samples import PAGE_PREFIX
from fulsk_chaos.probes.fleet import paho_client, reading



class NotSent(RuntimeError):
    """A request due while the open model's limit of requests in flight was reached: the
    generator held it back. A failure of the stack to keep up, but not an answer it gave."""

PROFILE = from_env()
CONTRACT = contract_from_env(os.environ)  # how the backend under test is published to and read
READS = CONTRACT.reads
OUT = Path(os.environ.get("FULSK_LOAD_OUT", "."))
# The API arrival rate: the profile's (its ladder, for a stress ramp) until the stress search steers it.
SCHEDULE = steering.RateSchedule(PROFILE.rate_at)
RUN = os.environ.get("FULSK_LOAD_RUN", "load")
MQTT_HOST, _, MQTT_PORT = os.environ.get("FULSK_MQTT", "127.0.0.1:1883").rpartition(":")

# the dashboard page and the calls its script makes
PAGE = tuple(p for p in ("/", CONTRACT.health.path, READS.generation.path) if p)
READ_PATHS = {READS.generation.path}  # what the page asks of the API
PAGE_LOAD = "dashboard page load"
READING_DELAY = "reading publish to arrival"
PUBLISH = "publish qos1 (to PUBACK)"


# --- what every process records ----------------------------------------------------------------
class Recorder:
    """This process's samples and ledger, flushed to its own files every second and at the end."""

    def __init__(self) -> None:
        self.samples: list[tuple] = []
        self.ledger: list[dict] = []
        self.pid = os.getpid()

    def sample(self, request_type, name, response_time, exception, context=None, **_kw) -> None:
        due = (context or {}).get("due")
        start = due if due is not None else time.time() - (response_time or 0) / 1000
        self.samples.append((round(start, 4), request_type, name, round(response_time or 0, 2),
                             UNSENT if isinstance(exception, NotSent) else 0 if exception else 1))

    def flush(self) -> None:
        samples, self.samples = self.samples, []
        ledger, self.ledger = self.ledger, []
        if samples:
            with open(OUT / f"samples-{self.pid}.csv", "a", newline="") as f:
                csv.writer(f).writerows(samples)
        if ledger:
            with open(OUT / f"ledger-{self.pid}.jsonl", "a") as f:
                f.writelines(json.dumps(entry) + "\n" for entry in ledger)

    def loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.flush()


RECORDER = Recorder()


def _event(name: str, **data) -> None:
    with open(OUT / "events.jsonl", "a") as f:
        f.write(json.dumps({"event": name, "t": time.time(), **data}) + "\n")


def _follow_plan(deliver) -> None:
    """Each new version of the stress search's plan (fulsk_chaos.load.steering), as it is written."""
    last = None
    while True:
        gevent.sleep(steering.POLL_S)
        text = steering.read_plan(OUT)
        if text and text != last:
            last = text
            deliver(json.loads(text))


@events.init.add_listener
def _init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        environment.events.spawning_complete.add_listener(lambda user_count: _event("spawned", users=user_count))
        gevent.spawn(_follow_plan, lambda plan: runner.send_message(steering.MESSAGE, plan))  # to every worker
        return
    if isinstance(runner, WorkerRunner):
        runner.register_message(steering.MESSAGE, lambda environment, msg, **_kw: SCHEDULE.steer(msg.data))
    else:  # one process, run by hand: it reads the plan itself
        gevent.spawn(_follow_plan, SCHEDULE.steer)
    environment.events.request.add_listener(RECORDER.sample)
    gevent.spawn(RECORDER.loop)


@events.test_start.add_listener
def _started(environment, **_kw) -> None:
    if isinstance(environment.runner, MasterRunner):
        _event("test_start", profile=PROFILE.name)


@events.test_stop.add_listener
def _stopped(environment, **_kw) -> None:
    if isinstance(environment.runner, MasterRunner):
        _event("test_stop")
    else:
        RECORDER.flush()


@events.quitting.add_listener
def _quitting(environment, **_kw) -> None:
    if not isinstance(environment.runner, MasterRunner):
        RECORDER.flush()
        return
    stats = environment.stats
    entries = []
    for entry in [*stats.entries.values(), stats.total]:
        entries.append({"type": entry.method or "", "name": entry.name, "requests": entry.num_requests,
                        "failures": entry.num_failures, "median_ms": entry.median_response_time,
                        "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else None,
                        "p99_ms": entry.get_response_time_percentile(0.99) if entry.num_requests else None,
                        "max_ms": entry.max_response_time, "rps": entry.total_rps})
    (OUT / "stats.json").write_text(json.dumps({"entries": entries, "start_time": stats.start_time}))
    _event("quit")


# --- users ---------------------------------------------------------------------------------------
class Reads:
    """The API reads a dashboard makes, of inverters the API itself lists."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.turn = itertools.count()

    def next(self, rng: random.Random) -> tuple[str, str]:
        if PROFILE.api.paths:  # the profile names what to read
            path = PROFILE.api.paths[next(self.turn) % len(PROFILE.api.paths)]
            return path, path
        if not self.ids or rng.random() < 0.1:
            return READS.listing.path, READS.listing.path
        inverter = rng.choice(self.ids)
        kind = rng.choice(("latest", "latest", "readings", "generation") if READS.generation.path else
                          ("latest", "latest", "readings"))
        if kind == "latest":
            return READS.latest.path.format(inverter=inverter), READS.latest.path.format(inverter="[id]")
        if kind == "readings":
            end = time.time()
            form = READS.history.units.timestamp
            return (READS.history.path.format(inverter=inverter, **{"from": from_epoch(round(end - 30, 3), form),
                                                                      "to": from_epoch(round(end, 3), form)}),
                    READS.history.path.split("?")[0].format(inverter="[id]"))
        return READS.generation.path, READS.generation.path

    def learn(self, path: str, response) -> None:
        if path == READS.listing.path and response.status_code == 200:
            try:
                self.ids = [r["inverter_id"] for r in READS.listing.rows(response.json()) if "inverter_id" in r][:200]
            except (ValueError, AttributeError, TypeError, KeyError):
                pass


def _check(response) -> None:
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}")


class DashboardUser(FastHttpUser):
    """Closed model: loads the dashboard (timed as one page load), thinks, reads the API."""
    fixed_count = PROFILE.dashboard.users
    wait_time = between(*PROFILE.dashboard.think_s)
    network_timeout = connection_timeout = PROFILE.timeout_s

    def on_start(self) -> None:
        self.rng = random.Random()
        self.reads = Reads()

    @task(max(PROFILE.dashboard.page_weight, 0) or 1)
    def page(self) -> None:
        start, failed = time.perf_counter(), None
        for path in PAGE:
            # the page's own files and its health check are named as the page's; its API reads as reads
            name = path if path in READ_PATHS else f"{PAGE_PREFIX}{path}"
            with self.client.get(path, name=name, catch_response=True) as response:
                _check(response)
                failed = failed or (None if response.status_code == 200 else f"{path}: HTTP {response.status_code}")
        self.environment.events.request.fire(
            request_type="PAGE", name=PAGE_LOAD, response_time=(time.perf_counter() - start) * 1000,
            response_length=0, exception=AssertionError(failed) if failed else None, context={})

    @task(max(PROFILE.dashboard.api_weight, 0) or 1)
    def api(self) -> None:
        path, name = self.reads.next(self.rng)
        with self.client.get(path, name=name, catch_response=True) as response:
            _check(response)
            self.reads.learn(path, response)


class ApiUser(FastHttpUser):
    """API reads at the profile's rate: due at fixed times (open) or paced by waiting users (closed)."""
    fixed_count = PROFILE.api.users
    network_timeout = connection_timeout = PROFILE.timeout_s
    concurrency = PROFILE.api.max_in_flight
    rate_per_user = (PROFILE.api.rate or 1.0) / max(PROFILE.api.users, 1)
    wait_time = constant(0) if PROFILE.api.mode == "open" else constant_throughput(rate_per_user)
    _numbers = itertools.count()

    def on_start(self) -> None:
        self.rng = random.Random()
        self.reads = Reads()
        self.index = next(ApiUser._numbers)
        if PROFILE.api.mode == "open":
            # Its own session, whose request events are relayed with latency from the due time.
            relay = EventHook()
            relay.add_listener(self._relay)
            self.open_client = FastHttpSession(self.host, relay, self, network_timeout=self.network_timeout,
                                               connection_timeout=self.connection_timeout,
                                               concurrency=self.concurrency)

    def _relay(self, request_type, name, response_time, response_length, exception=None, context=None, **_kw):
        due = (context or {}).get("due")
        elapsed = (time.time() - due) * 1000 if due is not None else response_time
        self.environment.events.request.fire(request_type=request_type, name=name, response_time=elapsed,
                                             response_length=response_length, exception=exception,
                                             context=context or {})

    @task
    def read(self) -> None:
        if PROFILE.api.mode == "closed":
            path, name = self.reads.next(self.rng)
            with self.client.get(path, name=name, catch_response=True) as response:
                _check(response)
                self.reads.learn(path, response)
            return
        self.arrivals()

    def arrivals(self) -> None:
        """Requests due at fixed times from the schedule's start, each sent in a greenlet of its own:
        a stalled server makes them queue (and their latency grow from their due time), never later.
        The rate at each due time is the schedule's: the profile's, or the stress search's plan."""
        users = max(PROFILE.api.users, 1)
        start = time.time()
        pool = gevent.pool.Pool(self.concurrency)
        first = SCHEDULE.rate(start, start) / users
        due = start + ((self.index % users) / users / first if first > 0 else 0)  # users interleave
        while True:
            rate = SCHEDULE.rate(due, start) / users
            if rate <= 0:  # a ramp's end: nothing is due unless the search plans more, until the run ends
                gevent.sleep(steering.POLL_S)
                due = max(due, time.time())
                continue
            delay = due - time.time()
            if delay > 0:
                gevent.sleep(delay)
            path, name = self.reads.next(self.rng)
            if pool.full():
                self.environment.events.request.fire(
                    request_type="GET", name=name, response_time=(time.time() - due) * 1000, response_length=0,
                    exception=NotSent(f"not sent: {self.concurrency} requests already unanswered"),
                    context={"due": due})
                due += 1 / rate
                continue
            pool.spawn(self._send, path, name, due)
            due += 1 / rate

    def _send(self, path: str, name: str, due: float) -> None:
        with self.open_client.get(path, name=name, context={"due": due}, catch_response=True) as response:
            _check(response)
            self.reads.learn(path, response)


class LiveViewer(User):
    """A dashboard's live feed: how long after its publish each reading arrives."""
    fixed_count = PROFILE.viewers.users
    wait_time = constant(1)

    @task
    def watch(self) -> None:
        url = self.host.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + CONTRACT.feed.path
        try:
            ws = websocket.create_connection(url, timeout=PROFILE.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any refusal is a failed connection, measured
            self._fire("WS", "connect", 0, exc)
            return
        try:
            while True:
                message = ws.recv()
                arrived = time.time()
                if not message:
                    raise ConnectionError("the feed closed")
                try:
                    rows = CONTRACT.feed.rows(json.loads(message))
                except (KeyError, TypeError, ValueError, IndexError):
                    rows = []  # a message the contract cannot read carries nothing users see
                for r in rows:
                    if "ts" in r:
                        self._fire("WS", READING_DELAY, max(0.0, arrived - r["ts"]) * 1000, None)
        except websocket.WebSocketTimeoutException:
            self._fire("WS", "feed silent", PROFILE.timeout_s * 1000,
                       TimeoutError(f"no reading for {PROFILE.timeout_s} s"))
        except Exception as exc:  # noqa: BLE001 - a dropped feed is a failure users see
            self._fire("WS", "feed dropped", 0, exc)
        finally:
            ws.close()

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms, response_length=0,
                                             exception=exc, context={})


class InverterUser(User):
    """An inverter: QoS 1 readings at its interval; the broker's PUBACK is its latency and a promise
    the ledger holds the stack to."""
    fixed_count = PROFILE.inverters.users
    wait_time = constant(PROFILE.inverters.interval_s)  # plus the publish itself: about the interval
    _numbers = itertools.count()

    def on_start(self) -> None:
        self.rng = random.Random()
        self.inverter_id = f"{RUN}-{os.getpid()}-inv{next(InverterUser._numbers):04d}"
        self.site_id = f"{RUN}-site{self.rng.randrange(4)}"
        self.rated_w = self.rng.uniform(3000, 8000)
        self.seq = 0
        self.awaiting: dict[int, tuple[tuple[str, int], float]] = {}
        self.early: dict[int, float] = {}
        self.mqtt = paho_client(f"load-{self.inverter_id}")
        self.mqtt.on_publish = self._acked
        self.mqtt.connect(MQTT_HOST, int(MQTT_PORT), keepalive=30)
        self.mqtt.loop_start()

    def on_stop(self) -> None:
        deadline = time.time() + 5  # acknowledgements of the last readings, then leave cleanly
        while self.awaiting and time.time() < deadline:
            gevent.sleep(0.1)
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def _acked(self, client, userdata, mid, reason_code, properties) -> None:
        now = time.time()
        sent = self.awaiting.pop(mid, None)
        if sent is None:
            self.early[mid] = now
            return
        self._settle(sent, now)

    def _settle(self, sent: tuple[tuple[str, int], float], acked_at: float) -> None:
        key, at = sent
        RECORDER.ledger.append({"k": list(key), "acked": True})
        self.environment.events.request.fire(request_type="MQTT", name=PUBLISH, response_time=(acked_at - at) * 1000,
                                             response_length=0, exception=None, context={})

    @task
    def publish(self) -> None:
        self.seq += 1
        values, payload = reading(self.inverter_id, self.seq, self.site_id, self.rated_w, self.rng, CONTRACT)
        key = CONTRACT.key({"inverter_id": self.inverter_id, "seq": self.seq, **values})
        RECORDER.ledger.append({"k": list(key), "v": values})
        at = time.time()
        info = self.mqtt.publish(CONTRACT.publish.topic.format(inverter_id=self.inverter_id), payload, qos=1)
        if info.rc != 0:
            self.environment.events.request.fire(request_type="MQTT", name=PUBLISH, response_time=0,
                                                 response_length=0, exception=ConnectionError(f"rc={info.rc}"),
                                                 context={})
            return
        early = self.early.pop(info.mid, None)
        if early is not None:
            self._settle((key, at), early)
        else:
            self.awaiting[info.mid] = (key, at)

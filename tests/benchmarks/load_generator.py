"""Benchmark: the load generator's ceiling on this machine, beside raw clients measured in the same run.

HTTP: Locust FastHttpUsers (one and two workers, no wait) against the dashboard page nginx serves
from disk - the cheapest request the stack answers, so the generator is the limit - beside wrk
with one thread. MQTT: Locust inverters (QoS 1, no wait between readings) straight to the broker,
the backend stopped so that only the broker consumes, beside a plain paho publish loop and
mosquitto_pub. Each figure is the median of ROUNDS runs, the clients alternating round by round;
the generator's CPU demand (used + waited for, per worker) says whether it, not the target, was
the limit.

Usage: python tests/benchmarks/load_generator.py [ROUNDS] [SECONDS]
"""
from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fulsk_chaos.config import load
from fulsk_chaos.load import LoadTarget, LoadTest
from fulsk_chaos.load.profile import from_mapping
from fulsk_chaos.stack import Stack


def locust(stack: Stack, profile: dict, workers: int, seconds: float, target: LoadTarget,
           kind: str) -> tuple[float, float]:
    """(requests or acknowledged messages per second, busiest worker's CPU demand in % of a core)."""
    profile = from_mapping({"duration_s": seconds, "warmup_s": 2, "spawn_rate": 500, **profile}, "bench")
    with tempfile.TemporaryDirectory() as out:
        with LoadTest(stack, profile, Path(out), workers=workers, target=target) as run:
            run.wait()
        result = run.result
        samples = [s for s in result.samples.window(result.measured_from, result.measured_to).samples
                   if s.type == kind and s.ok]
        demand = max(u.demand_mean_cores for n, u in result.resources.summaries(
            result.measured_from, result.measured_to).items() if n.startswith("generator worker"))
    return len(samples) / result.duration_s, 100 * demand


def wrk(url: str, seconds: float, connections: int = 50) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url], capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def paho_loop(host: str, port: int, seconds: float, window: int = 1000) -> float:
    """One paho client publishing QoS 1 as fast as it can, at most ``window`` unacknowledged."""
    acked = 0
    lock = threading.Condition()

    def on_publish(client, userdata, mid, reason_code, properties):
        nonlocal acked
        with lock:
            acked += 1
            lock.notify()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(window)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        with lock:
            while sent - acked >= window:
                lock.wait(0.1)
        client.publish("fulsk/bench/telemetry", b'{"bench": true}', qos=1)
        sent += 1
    elapsed = time.monotonic() - start
    with lock:
        done = acked
    client.disconnect()
    client.loop_stop()
    return done / elapsed


def mosquitto_pub(host: str, port: int, messages: int) -> float:
    """mosquitto_pub (C) sending ``messages`` lines at QoS 1, as fast as the broker acknowledges."""
    start = time.monotonic()
    subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", "fulsk/bench/telemetry", "-q", "1", "-l"],
                   input=b'{"bench": true}\n' * messages, check=True)
    return messages / (time.monotonic() - start)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    figures: dict[str, list[tuple[float, float | None]]] = {}

    def add(name: str, value: float, demand: float | None = None) -> None:
        figures.setdefault(name, []).append((value, demand))

    with Stack(load(), "local") as stack:
        page = LoadTarget(stack.endpoints.frontend_url, "127.0.0.1", stack.topology.ports["mqtt"])
        http = {"api": {"mode": "closed", "rate": 1_000_000, "users": 50, "paths": ["/"]}}
        for _ in range(rounds):
            add("HTTP  locust FastHttpUser, 1 worker, 50 users", *locust(stack, http, 1, seconds, page, "GET"))
            add("HTTP  locust FastHttpUser, 2 workers, 100 users",
                *locust(stack, {"api": {**http["api"], "users": 100}}, 2, seconds, page, "GET"))
            if shutil.which("wrk"):
                add("HTTP  wrk (C), 1 thread, 50 connections", wrk(stack.endpoints.frontend_url + "/", seconds))
        stack.service("backend").stop()  # only the broker consumes the readings
        broker = ("127.0.0.1", stack.topology.ports["mqtt"])
        mqtt_profile = {"inverters": {"users": 50, "interval_s": 0.001}}
        for _ in range(rounds):
            add("MQTT  locust inverters QoS 1, 1 worker, 50 clients",
                *locust(stack, mqtt_profile, 1, seconds, page, "MQTT"))
            add("MQTT  locust inverters QoS 1, 2 workers, 100 clients",
                *locust(stack, {"inverters": {"users": 100, "interval_s": 0.001}}, 2, seconds, page, "MQTT"))
            add("MQTT  paho publish loop (Python), 1 client", paho_loop(*broker, seconds))
            add("MQTT  mosquitto_pub -l (C), 1 client", mosquitto_pub(*broker, 50_000))
    print(f"\nload generator ceiling on this machine ({rounds} rounds of {seconds:g} s, medians; "
          f"the generator shares the machine's cores with its target)")
    print(f"{'client':58} {'per second':>12} {'busiest worker CPU demand':>27}")
    for name, values in figures.items():
        rate = statistics.median(v for v, _ in values)
        demands = [d for _, d in values if d is not None]
        demand = f"{statistics.median(demands):.0f} % of a core" if demands else "-"
        print(f"{name:58} {rate:>12.0f} {demand:>27}")


if __name__ == "__main__":
    main()

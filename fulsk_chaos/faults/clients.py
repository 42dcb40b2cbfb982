"""Faults that come from clients: floods, garbage, connection storms, impostors, stuck readers.

Each runs for as long as the fault is active, in threads of its own, bounded in count and
time, and stops on rollback. Its handle keeps what it did, for the journal and the checks: a
flood's legitimate readings are a fleet the ledger must find stored, its garbage a set of ids
that must never be.
"""
from __future__ import annotations

import base64
import json
import math
import os
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..contract import CANONICAL, Contract, Publish, load as load_contract
from ..errors import FaultError
from ..probes import Fleet
from ..probes.fleet import paho_client
from ..services.backend import MQTT_CLIENT_ID
from ..verdict import Expectation
from .catalogue import Family
from .conditions import Watch, condition, reached
from .measure import BrokerStats, log_lines_since, prometheus_value, socket_states

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("clients", needs="mqtt")  # inverters, real or not: they reach a broker
MAX_FAULT_S = 600.0  # every client fault stops by itself after this, rolled back or not
RECEIVED = "$SYS/broker/publish/messages/received"
SYS_INTERVAL_S = 2.0  # how old the broker's last published counter can be (sys_interval 1: every 2 s, as it counts)
BEFORE_S = 0.5  # the backend's rate before a flood, measured over this long


# --- conditions --------------------------------------------------------------------------------
class BrokerWatch(Watch):
    """The broker's own counters, from just before the injection on."""
    interval_s = 0.25

    def baseline(self) -> None:
        self.stats = BrokerStats(self.stack.topology.ports["mqtt"]).start()
        self.since = time.monotonic()

    def close(self) -> None:
        self.stats.close()


@condition("the stack is flooded: the broker, or the backend it delivers to, received messages faster than "
           "before by at least half the fault's rate (readings and garbage)",
           "the backend's own count (its metrics' capabilities.received_metric, read at once) or the broker's "
           "($SYS/broker/publish/messages/received, published every 2 s); the rate before: the higher of the broker's "
           "load/publish/received/1min and the backend's count over the half second before")
class Flooded(BrokerWatch):
    def baseline(self) -> None:
        super().baseline()
        self.t0, self.count0 = self.stats.latest(RECEIVED)
        first = (time.monotonic(), self._ingested())
        time.sleep(BEFORE_S)
        self.ingest0 = (time.monotonic(), self._ingested())
        # the higher of the broker's minute and the backend's last half second: the flood is what comes on top
        self.rate_before = max(self.stats.latest("$SYS/broker/load/publish/received/1min")[1] / 60,
                               (self.ingest0[1] - first[1]) / (self.ingest0[0] - first[0])
                               if first[1] is not None and self.ingest0[1] is not None else 0.0)

    def _ingested(self) -> float | None:
        """The backend's own count of messages received, where its contract names one."""
        metric = self.stack.contract.capabilities.received_metric
        if not metric or not self.stack.endpoints.metrics_url:
            return None
        return prometheus_value(self.stack.endpoints.metrics_url, metric)

    @property
    def rate(self) -> float:
        p = self.params
        if "malformed_per_s" not in p:  # malformed: only garbage
            return float(p["rate_per_s"])
        return float(p["rate_per_s"] if p["devices"] else 0) + float(p["malformed_per_s"])

    def check(self, handle: Any) -> Expectation | None:
        if handle is None:
            return None
        rates: dict[str, float] = {}
        t1, count1 = self.stats.latest(RECEIVED)
        if t1 > self.t0:  # the count before may be one publishing interval old: not the flood's
            rates["the broker"] = ((count1 - self.count0 - self.rate_before * SYS_INTERVAL_S) / (t1 - self.t0)
                                   - self.rate_before)
        (t0, ingested0), now = self.ingest0, time.monotonic()
        if ingested0 is not None and now - t0 >= 1.0 and (ingested := self._ingested()) is not None:
            rates["the backend"] = (ingested - ingested0) / (now - t0) - self.rate_before
        best = max(rates, key=rates.__getitem__, default=None)
        counted = "; ".join(f"{who}: {r:+.1f} msg/s" for who, r in rates.items()) or "nothing counted yet"
        return reached("messages per second received above the rate before", round(rates[best], 1) if best else None,
                       ">=", self.rate / 2, "msg/s", detail=f"{self.rate_before:.1f} msg/s before; {counted}")


@condition("the broker holds the storm: its count of connected clients rose by at least 80 % of the storm's "
           "clients", "the broker ($SYS/broker/clients/connected)")
class Stormed(BrokerWatch):
    def baseline(self) -> None:
        super().baseline()
        self.connected0 = self.stats.latest("$SYS/broker/clients/connected")[1]

    def check(self, handle: Any) -> Expectation:
        peak = max((v for t, v in self.stats.series("$SYS/broker/clients/connected") if t >= self.since - 1),
                   default=self.connected0)
        return reached("clients connected to the broker above its count before", int(peak - self.connected0), ">=",
                       int(0.8 * self.params["clients"]), detail=f"{self.connected0:.0f} before, {peak:.0f} at peak")


@condition("the impostor took the client's session: the broker closed the connection it held for client_id",
           "the broker's log ('Client ID already connected, closing old connection')")
class SessionTaken(Watch):
    interval_s = 0.5

    @property
    def needle(self) -> str:
        return f"Client {self.params['client_id']} already connected, closing old connection"

    def baseline(self) -> None:
        self.since = time.time()  # the log stamps whole seconds: what this second already holds is not the fault's
        self.already = len(log_lines_since(self.stack.service(self.target), self.needle, self.since))

    def check(self, handle: Any) -> Expectation:
        lines = log_lines_since(self.stack.service(self.target), self.needle, self.since)[self.already:]
        return reached("connections the broker closed for another with the same client id", len(lines), ">=", 1,
                       detail=lines[0] if lines else f"no line '{self.needle}' in its log since the injection")


BLOCKED_MS = 500


@condition(f"the stuck clients' send path is blocked: the frontend's sockets to at least half of them held "
           f"data their full receive windows kept unsent for {BLOCKED_MS} ms or more",
           "the kernel (ss -ti: Send-Q and rwnd_limited of the frontend's sockets to the stuck clients)")
class SendsBlocked(Watch):
    interval_s = 0.25

    def check(self, handle: Any) -> Expectation | None:
        if handle is None:
            return None
        ports = [sock.getsockname()[1] for sock in handle.sockets]
        states = socket_states(self.stack.topology.ports[self.target], ports)
        blocked = [s for s in states if s.send_q > 0 and s.rwnd_limited_ms >= BLOCKED_MS]
        worst = max(states, key=lambda s: s.send_q, default=None)
        return reached("stuck clients whose send path is blocked", len(blocked), ">=", max(1, -(-len(ports) // 2)),
                       detail=f"{len(ports)} stuck, {len(states)} sockets found" + (
                           f"; the fullest holds {worst.send_q} bytes ({worst.notsent} never sent), window-limited "
                           f"for {worst.rwnd_limited_ms} ms" if worst else ""))


def _mqtt_target(stack: "Stack", target: str) -> tuple[str, int]:
    """Where the broker ``target`` is, as its outside clients (the inverters) reach it: through
    their proxied edge, where it has one."""
    return "127.0.0.1", stack.service(target).ctx.outside_port()


class Handle:
    """A running client fault: ``handle()`` stops it; ``details()`` says what it did."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stopping(self, started: float) -> bool:
        return self._stop.is_set() or time.monotonic() - started > MAX_FAULT_S

    def pause(self, seconds: float) -> bool:
        """Sleep unless stopped meanwhile; True once the fault is being rolled back."""
        return self._stop.wait(seconds)

    def __call__(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        stuck = [t.name for t in self._threads if t.is_alive()]
        self.close()
        if stuck:
            raise FaultError(f"client threads did not stop within 10 s: {', '.join(stuck)}")

    def close(self) -> None:
        """Release what the fault holds (after its threads are stopped)."""

    def details(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.counts)


# --- malformed telemetry -----------------------------------------------------------------------
MAX_VALID_PAYLOAD = 64 * 1024  # a reading is ~150 bytes; the reference backend refuses more than this


def malformed_payloads(prefix: str, oversized_kb: int = 1024,
                       contract: Contract | None = None) -> Iterator[tuple[str, str, bytes]]:
    """(case, inverter id, payload): every way a reading can be wrong, in the backend's own field
    names and units (its contract's publish table), each with a unique id starting with ``prefix``
    (so none of them may ever be found stored), repeating forever. A case that corrupts a field
    the backend's readings do not have (a sequence number, say) is left out: without it the
    reading would be a valid one."""
    publish = (contract or load_contract()).publish
    n = 0
    while True:
        n += 1
        now = time.time()

        def reading(case: str, **changes: Any) -> dict[str, Any] | None:
            if any(not getattr(publish.fields, name) for name in changes if name in CANONICAL):
                return None
            body = {"inverter_id": f"{prefix}-{case}-{n}", "site_id": f"{prefix}-site", "seq": n, "ts": now,
                    "power_w": 1234.5, "energy_wh": 0.34}
            body.update(changes)
            return _on_the_wire(publish, {k: v for k, v in body.items() if v is not _DROP})
        cases: dict[str, Any] = {
            "not-json": b"{" + publish.fields.inverter_id.encode() + b": " + os.urandom(24),
            "not-an-object": json.dumps([1, 2, 3]),
            "truncated": json.dumps(reading("truncated"))[:40],
            "missing-field": reading("missing-field", power_w=_DROP),
            "missing-id": reading("missing-id", inverter_id=_DROP),
            "power-as-text": reading("power-as-text", power_w="1234.5"),
            "power-as-bool": reading("power-as-bool", power_w=True),
            "seq-as-text": reading("seq-as-text", seq=str(n)),
            "seq-fraction": reading("seq-fraction", seq=n + 0.5),
            "seq-beyond-64-bits": reading("seq-beyond-64-bits", seq=2 ** 70 + n),
            "seq-negative": reading("seq-negative", seq=-n),
            "power-nan": reading("power-nan", power_w=float("nan")),
            "power-infinite": reading("power-infinite", power_w=float("inf")),
            "energy-infinite": reading("energy-infinite", energy_wh=float("-inf")),
            "ts-far-future": reading("ts-far-future", ts=now + 10 * 365 * 86400),
            "ts-far-past": reading("ts-far-past", ts=86400.0),
            "ts-beyond-any-calendar": reading("ts-beyond-any-calendar", ts=1e20),
            "control-chars-in-id": reading("control-chars-in-id", inverter_id=f"{prefix}-ctl\x00\x07\x1b-{n}"),
            "oversized": reading("oversized", note="x" * (oversized_kb * 1024)),
        }
        for case, body in cases.items():
            if body is None:
                continue
            payload = (body if isinstance(body, bytes) else body.encode() if isinstance(body, str)
                       else json.dumps(body, allow_nan=True).encode())  # text: already the bytes meant
            wire_id = publish.fields.inverter_id
            inverter = body.get(wire_id, f"{prefix}-{case}") if isinstance(body, dict) else f"{prefix}-{case}"
            yield case, str(inverter), payload


def _on_the_wire(publish: Publish, body: dict[str, Any]) -> dict[str, Any]:
    """A canonical (possibly corrupt) reading under the backend's field names: a sound value in its
    units, a corrupt one (text, a flag, NaN, a time beyond any calendar) as it is."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name not in CANONICAL:
            out[name] = value
            continue
        if not getattr(publish.fields, name):
            continue  # a field the backend's readings do not have
        sound = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if sound and name in ("ts", "power_w", "energy_wh"):
            try:
                value = publish.payload({name: value})[getattr(publish.fields, name)]
            except (OverflowError, ValueError, OSError):
                pass  # no such time in the backend's format: sent as the number it is
        out[getattr(publish.fields, name)] = value
    return out


_DROP = object()


class Flood(Handle):
    """A flood of legitimate readings (a fleet of its own) with garbage mixed in."""

    def __init__(self, fleet: Fleet | None, garbage_prefix: str, contract: Contract | None = None) -> None:
        super().__init__()
        self.fleet = fleet
        self.garbage_prefix = garbage_prefix
        self.contract = contract  # the garbage is in the backend's own words
        self.garbage_client: mqtt.Client | None = None

    def __call__(self) -> None:
        try:
            super().__call__()
        finally:
            if self.fleet is not None:
                self.fleet.stop(settle_s=5.0)

    def close(self) -> None:
        if self.garbage_client is not None:
            self.garbage_client.disconnect()
            self.garbage_client.loop_stop()

    def details(self) -> dict[str, Any]:
        details = super().details()
        if self.fleet is not None:
            details.update(legit_sent=len(self.fleet.sent()), legit_acked=len(self.fleet.acked()),
                           fleet=self.fleet.prefix)
        details["garbage_prefix"] = self.garbage_prefix
        return details


def _garbage(handle: Flood, host: str, port: int, rate_per_s: float, qos: int, oversized_kb: int, topic: str) -> None:
    client = paho_client(f"garbage-{handle.garbage_prefix}")
    client.max_queued_messages_set(1000)
    client.connect_async(host, port, keepalive=10)
    client.loop_start()
    handle.garbage_client = client
    started, interval = time.monotonic(), 1.0 / rate_per_s
    next_at = started
    for case, inverter, payload in malformed_payloads(handle.garbage_prefix, oversized_kb, handle.contract):
        if handle.stopping(started):
            return
        if client.publish(topic.format(inverter_id=f"{handle.garbage_prefix}-{case}"), payload, qos=qos).rc == mqtt.MQTT_ERR_SUCCESS:
            handle.count(f"garbage:{case}")
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            handle.pause(delay)
        elif delay < -1:
            next_at = time.monotonic()


@family.kind("flood", condition=Flooded, search_params={"devices": 20, "rate_per_s": 200, "malformed_per_s": 10})
def flood(stack: "Stack", target: str, devices: int = 50, rate_per_s: float = 500.0, qos: int = 1,
          malformed_per_s: float = 20.0, oversized_kb: int = 1024) -> Flood:
    """Many inverters publishing at once (devices, messages per second in total, QoS 0 or 1), with
    malformed and oversized messages mixed in; rollback: stop them all."""
    host, port = _mqtt_target(stack, target)
    prefix = f"flood-{secrets.token_hex(3)}"
    fleet = None
    if devices and rate_per_s:
        fleet = Fleet(host, port, inverters=devices, sites=max(1, devices // 10), interval_s=devices / rate_per_s,
                      prefix=prefix, max_duration_s=MAX_FAULT_S, qos=qos, contract=stack.contract)
    handle = Flood(fleet, f"{prefix}-bad", stack.contract)
    if fleet is not None:
        fleet.start()
    if malformed_per_s:
        topic = stack.contract.publish.topic
        handle.spawn(lambda: _garbage(handle, host, port, malformed_per_s, qos, oversized_kb, topic), f"{prefix}-garbage")
    return handle


@family.kind("malformed", condition=Flooded)
def malformed(stack: "Stack", target: str, rate_per_s: float = 50.0, qos: int = 1, oversized_kb: int = 1024) -> Flood:
    """Only garbage: every malformed, impossible and oversized reading, round after round."""
    return flood(stack, target, devices=0, rate_per_s=0, qos=qos, malformed_per_s=rate_per_s,
                 oversized_kb=oversized_kb)


# --- connections -------------------------------------------------------------------------------
class Storm(Handle):
    """A storm runs in a process of its own, as it comes from other machines: its connecting
    threads would otherwise hold this process's interpreter lock, and the probes sampling the
    stack from here would measure their own queueing for it (800 ms API "latency" with a
    backend answering in 14 ms, measured side by side)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__()
        self.proc = proc

    def report(self, timeout_s: float) -> None:
        """Read the storm's next line of counts (it writes one when connected, one when done)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise FaultError(f"the connection storm did not report within {timeout_s:.0f} s "
                             f"(exit status {self.proc.poll()}); its stderr says: {self._stderr()}")
        with self._lock:
            self.counts = {k: int(v) for k, v in json.loads(line).items()}

    def _stderr(self) -> str:
        try:
            return (self.proc.stderr.read() if self.proc.stderr else "")[-500:] or "nothing"
        except (OSError, ValueError):
            return "nothing"

    def __call__(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                try:
                    self.proc.stdin.close()  # the storm's signal to disconnect and report
                except OSError:
                    pass
                self.report(60.0)
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@family.kind("connection-storm", condition=Stormed, search_params={"clients": 100})
def connection_storm(stack: "Stack", target: str, clients: int = 300, parallel: int = 64) -> Storm:
    """Hundreds of MQTT clients connecting at once, as a fleet does after a site's network comes
    back, and holding their connections; rollback: they all disconnect."""
    host, port = _mqtt_target(stack, target)
    prefix = f"storm-{secrets.token_hex(3)}"
    package_root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulsk_chaos.faults.clients", host, str(port), str(clients), str(parallel), prefix,
         str(MAX_FAULT_S)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))})
    handle = Storm(proc)
    handle.report(60.0 + clients * 5.0 / parallel)  # connected (or given up): the fault is in place
    return handle


def _quietly_disconnect(client: mqtt.Client) -> None:
    try:
        client.disconnect()
        client.loop(timeout=0.01)
    except Exception:  # noqa: BLE001 - the broker may have dropped it already
        pass


def _storm(host: str, port: int, clients: int, parallel: int, prefix: str, max_s: float) -> None:
    """The storm's process: connect, report, hold until stdin closes (rollback, or the test
    process gone) or ``max_s`` passes, disconnect, report."""
    counts: dict[str, int] = {"connected": 0, "refused": 0, "failed": 0}
    lock = threading.Lock()
    held: list[mqtt.Client] = []

    def count(name: str) -> None:
        with lock:
            counts[name] += 1

    def connect(i: int) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{i}", clean_session=True)
        client.on_connect = lambda c, u, f, rc, p: count("refused" if rc.is_failure else "connected")
        try:
            client.connect(host, port, keepalive=60)
            deadline = time.monotonic() + 5
            while client.is_connected() is False and time.monotonic() < deadline:
                client.loop(timeout=0.05)
            with lock:
                held.append(client)
        except OSError:
            count("failed")

    def report() -> None:
        with lock:
            print(json.dumps(counts), flush=True)
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(connect, range(clients)))
    report()
    select.select([sys.stdin], [], [], max_s)  # readable at EOF
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(_quietly_disconnect, held))
    report()


class Impostor(Handle):
    pass


@family.kind("duplicate-client-id", condition=SessionTaken)
def duplicate_client_id(stack: "Stack", target: str, client_id: str = MQTT_CLIENT_ID, hold_s: float = 0.5,
                        every_s: float = 2.0) -> Impostor:
    """Another client keeps connecting with an existing client's id (by default the backend's),
    which makes the broker drop the other connection: a cloned device, a second deployment.
    It takes over the persistent session and never acknowledges what it is delivered, so the
    broker must redeliver all of it to the real client. Rollback: the impostor stops."""
    host, port = _mqtt_target(stack, target)
    handle = Impostor()

    def run() -> None:
        started = time.monotonic()
        while not handle.stopping(started):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                 protocol=mqtt.MQTTv311, manual_ack=True)
            client.on_message = lambda c, u, m: handle.count("messages_taken_unacked")
            try:
                client.connect(host, port, keepalive=10)
                handle.count("takeovers")
                until = time.monotonic() + hold_s
                while time.monotonic() < until and not handle.stopping(started):
                    client.loop(timeout=0.05)
                client.disconnect()
            except OSError:
                handle.count("connect_failed")
            handle.pause(every_s)
    handle.spawn(run, f"impostor-{client_id}")
    return handle


class StuckReaders(Handle):
    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[socket.socket] = []

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


# Users' browsers, not inverters; judged by its own scenario, not drawn by the schedule search.
@family.kind("stuck-websockets", condition=SendsBlocked, needs="live-feed", searched=False)
def stuck_websockets(stack: "Stack", target: str, clients: int = 20, path: str = "") -> StuckReaders:
    """Live-feed clients that complete the WebSocket handshake and then never read (a frozen
    browser tab, a phone in a tunnel), with tiny receive buffers; rollback: they hang up. The
    path: the backend contract's live feed."""
    path = path or stack.contract.feed.path
    url = urlparse(stack.service(target).address)
    handle = StuckReaders()
    for _ in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # set before connect: the window stays small
        sock.settimeout(5)
        try:
            sock.connect((url.hostname, url.port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                         .encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)  # byte by byte: nothing after the handshake is read
                if not chunk:
                    break
                head += chunk
            if head.startswith(b"HTTP/1.1 101"):
                handle.count("stuck")
                handle.sockets.append(sock)
                continue
            handle.count("refused")
        except OSError:
            handle.count("failed")
        sock.close()
    return handle


if __name__ == "__main__":  # the connection storm's own process (see Storm)
    _storm(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))

"""Simulated inverters: the write path's load, and the record of what the broker acknowledged.

Each inverter has its own MQTT connection and publishes QoS 1 readings with a unique
(inverter_id, seq). The broker's PUBACK is recorded per message: an acknowledged reading is a
promise the stack must keep, which the ledger check holds it to.
"""
from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

Key = tuple[str, int]
TOPIC = "fulsk/inverters/{inverter_id}/telemetry"


@dataclass
class Message:
    inverter_id: str
    seq: int
    sent_at: float              # time.monotonic() when handed to the client
    acked_at: float | None = None

    @property
    def key(self) -> Key:
        return (self.inverter_id, self.seq)


class _Inverter:
    def __init__(self, inverter_id: str, site_id: str, host: str, port: int, rng: random.Random) -> None:
        self.inverter_id = inverter_id
        self.site_id = site_id
        self.seq = 0
        self.rated_w = rng.uniform(3000, 8000)
        self.messages: list[Message] = []
        self._by_mid: dict[int, Message] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"inverter-{inverter_id}",
                                  clean_session=True, protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_publish = self._on_publish
        self.client.connect_async(host, port, keepalive=10)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            message = self._by_mid.pop(mid, None)
        if message is not None:
            message.acked_at = time.monotonic()

    def publish(self, rng: random.Random) -> Message:
        self.seq += 1
        now = time.time()
        daylight = max(0.0, math.sin(math.pi * ((now / 3600) % 24) / 24))
        power = round(self.rated_w * (0.2 + 0.8 * daylight) * rng.uniform(0.9, 1.0), 1)
        payload = json.dumps({"inverter_id": self.inverter_id, "site_id": self.site_id, "seq": self.seq,
                              "ts": now, "power_w": power, "energy_wh": round(power / 3600, 4)})
        with self._lock:
            message = Message(self.inverter_id, self.seq, time.monotonic())
            info = self.client.publish(TOPIC.format(inverter_id=self.inverter_id), payload, qos=1)
            self._by_mid[info.mid] = message
            self.messages.append(message)
        return message

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


class Fleet:
    """A bounded fleet: it stops by itself after ``max_duration_s`` or ``max_messages``."""

    def __init__(self, host: str, port: int, *, inverters: int = 10, sites: int = 2, interval_s: float = 0.2,
                 prefix: str | None = None, max_duration_s: float = 900.0, max_messages: int = 2_000_000,
                 seed: int | None = None) -> None:
        self.prefix = prefix or f"fleet-{secrets.token_hex(3)}"
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.max_messages = max_messages
        self._rng = random.Random(seed)
        self._inverters = [
            _Inverter(f"{self.prefix}-inv{i:03d}", f"{self.prefix}-site{i % sites}", host, port, self._rng)
            for i in range(inverters)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Fleet":
        for inverter in self._inverters:
            inverter.client.loop_start()
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"fleet-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = self.interval_s / len(self._inverters)
        next_at = time.monotonic()
        sent = 0
        assert self.started_at is not None
        while not self._stop.is_set():
            if sent >= self.max_messages or time.monotonic() - self.started_at > self.max_duration_s:
                break
            for inverter in self._inverters:
                inverter.publish(self._rng)
                sent += 1
                next_at += tick
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if delay < -1.0:
                    next_at = time.monotonic()  # fell behind (e.g. a stalled broker): don't burst

    def stop(self, settle_s: float = 5.0) -> None:
        """Stop publishing, give outstanding acknowledgements ``settle_s`` to arrive, disconnect."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        deadline = time.monotonic() + settle_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        for inverter in self._inverters:
            inverter.client.disconnect()
            inverter.client.loop_stop()

    def pending(self) -> int:
        return sum(1 for m in self.messages() if m.acked_at is None)

    # --- what was sent -----------------------------------------------------------------------
    @property
    def inverter_ids(self) -> list[str]:
        return [i.inverter_id for i in self._inverters]

    def messages(self) -> Iterator[Message]:
        for inverter in self._inverters:
            yield from inverter.snapshot()

    def sent(self) -> set[Key]:
        return {m.key for m in self.messages()}

    def acked(self, before: float | None = None) -> set[Key]:
        """Keys the broker acknowledged (at or before monotonic time ``before``, if given)."""
        return {m.key for m in self.messages()
                if m.acked_at is not None and (before is None or m.acked_at <= before)}

"""Simulated inverters: the write path's load, and the record of what the broker acknowledged.

Each inverter has its own MQTT connection and publishes QoS 1 readings with a unique
(inverter_id, seq). The broker's PUBACK is recorded per message, with the values the reading
carried: an acknowledged reading is a promise the stack must keep, stored once and unaltered,
which the ledger check holds it to.

The inverters (a ``Publisher``) run in an observer process of their own; the test process keeps
the record (``Fleet``) from what that process streams back: each reading as it is handed to the
client, each PUBACK as it arrives, stamped there with the host's monotonic clock.
"""
from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..contract import Contract, from_mapping as contract_from
from ..errors import FulskChaosError
from .observer import Emitter, Observed, ObserverError, Stopping

Key = tuple[str, int]  # (inverter, seq), or (inverter, timestamp in ms) for a backend keyed so (contract.key)
VALUE_FIELDS = ("site_id", "ts", "power_w", "energy_wh")


class FleetError(FulskChaosError, RuntimeError):
    pass


@dataclass
class Message:
    inverter_id: str
    seq: int                       # what identifies it beside its inverter (contract.key)
    sent_at: float                 # time.monotonic() when handed to the client
    values: dict[str, Any]         # what the reading said: site_id, ts (epoch s), power_w, energy_wh
    acked_at: float | None = None  # time.monotonic() of the broker's PUBACK
    lag_s: float = 0.0             # how late it was sent after it was due: the publisher's scheduling

    @property
    def key(self) -> Key:
        return (self.inverter_id, self.seq)


def paho_client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    return client


def reading(inverter_id: str, seq: int, site_id: str, rated_w: float, rng: random.Random,
            contract: Contract = Contract()) -> tuple[dict[str, Any], str]:
    """One telemetry reading as an inverter sends it now: its values (canonical: ts in epoch
    seconds, power in W, energy in Wh), and its JSON payload as the backend's contract says."""
    now = round(time.time(), 3)  # milliseconds: what any backend (JavaScript's Date too) can store exactly
    daylight = max(0.0, math.sin(math.pi * ((now / 3600) % 24) / 24))
    power = round(rated_w * (0.2 + 0.8 * daylight) * rng.uniform(0.9, 1.0), 1)
    values = {"site_id": site_id, "ts": now, "power_w": power, "energy_wh": round(power / 3600, 4)}
    return values, json.dumps(contract.publish.payload({"inverter_id": inverter_id, "seq": seq, **values}))


def _ignore(message: Message) -> None:
    pass


class _Inverter:
    def __init__(self, inverter_id: str, site_id: str, client: mqtt.Client, rng: random.Random,
                 on_sent: Callable[[Message], None] = _ignore, on_acked: Callable[[Message], None] = _ignore,
                 contract: Contract = Contract()) -> None:
        self.inverter_id = inverter_id
        self.contract = contract
        self.topic = contract.publish.topic.format(inverter_id=inverter_id)
        self.on_sent = on_sent
        self.on_acked = on_acked
        self.site_id = site_id
        self.seq = 0
        self.rated_w = rng.uniform(3000, 8000)
        self.messages: list[Message] = []
        self._awaiting: dict[int, Message] = {}  # mid -> message whose PUBACK has not come yet
        self._early: dict[int, float] = {}       # PUBACKs that came before publish() returned their mid
        self._lock = threading.Lock()
        self.client = client
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # paho calls this holding its own publish mutex: only our lock may be taken here.
        now = time.monotonic()
        with self._lock:
            message = self._awaiting.pop(mid, None)
            if message is None:
                self._early[mid] = now
                return
            message.acked_at = now
        self.on_acked(message)

    def publish(self, rng: random.Random, qos: int = 1, lag_s: float = 0.0) -> Message:
        self.seq += 1
        values, payload = reading(self.inverter_id, self.seq, self.site_id, self.rated_w, rng, self.contract)
        _, key = self.contract.key({"inverter_id": self.inverter_id, "seq": self.seq, **values})
        message = Message(self.inverter_id, key, time.monotonic(), values, lag_s=lag_s)
        with self._lock:
            self.messages.append(message)
        self.on_sent(message)  # before the client has it: its PUBACK is reported after it
        # Never under our lock: publish() takes paho's mutex, which paho holds while calling
        # _on_publish (which takes ours) - the two orders would deadlock once PUBACKs lag.
        info = self.client.publish(self.topic, payload, qos=qos)
        if qos == 0:
            return message  # no PUBACK: the broker promised nothing, and the ledger holds it to nothing
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._awaiting[info.mid] = message
            else:
                message.acked_at = early
        if early is not None:
            self.on_acked(message)
        return message

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


def inverter_ids(prefix: str, inverters: int) -> list[str]:
    return [f"{prefix}-inv{i:03d}" for i in range(inverters)]


class Publisher:
    """The inverters themselves, publishing on schedule: what the fleet's observer process runs
    (and what the tests of paho's locking drive directly). Bounded: it stops by itself after
    ``max_duration_s`` or ``max_messages``."""

    def __init__(self, host: str, port: int, *, prefix: str, inverters: int = 10, sites: int = 2,
                 interval_s: float = 0.2, max_duration_s: float = 900.0, max_messages: int = 2_000_000,
                 seed: int | None = None, client_factory: Callable[[str], mqtt.Client] = paho_client, qos: int = 1,
                 on_sent: Callable[[Message], None] = _ignore, on_acked: Callable[[Message], None] = _ignore,
                 contract: Contract | dict[str, Any] | None = None) -> None:
        contract = contract_from(contract) if isinstance(contract, dict) else contract or Contract()
        self.qos = qos
        self.prefix = prefix
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.max_messages = max_messages
        self._rng = random.Random(seed)
        self._inverters = []
        for i, inverter_id in enumerate(inverter_ids(prefix, inverters)):
            client = client_factory(f"inverter-{inverter_id}")
            self._inverters.append(_Inverter(inverter_id, f"{prefix}-site{i % sites}", client, self._rng,
                                             on_sent, on_acked, contract))
            client.connect_async(host, port, keepalive=10)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def start(self) -> "Publisher":
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
                inverter.publish(self._rng, self.qos, lag_s=round(max(0.0, time.monotonic() - next_at), 4))
                sent += 1
                next_at += tick
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                if delay < -1.0:
                    next_at = time.monotonic()  # fell behind (e.g. a stalled broker): don't burst

    def stop(self, settle_s: float = 5.0, timeout_s: float = 10.0) -> None:
        """Stop publishing, give outstanding acknowledgements ``settle_s`` to arrive, disconnect.

        Bounded: a publisher or client stuck for ``timeout_s`` is reported, not waited on forever.
        """
        self._stop.set()
        stuck = []
        if self._thread:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                stuck.append(f"the publishing thread is still blocked after {timeout_s:g} s")
        deadline = time.monotonic() + settle_s
        while not stuck and self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)

        def disconnect_all() -> None:
            for inverter in self._inverters:
                inverter.client.disconnect()
                inverter.client.loop_stop()
        closer = threading.Thread(target=disconnect_all, name=f"fleet-{self.prefix}-stop", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            stuck.append(f"its MQTT clients did not disconnect within {timeout_s:g} s")
        if stuck:
            raise FleetError(f"fleet {self.prefix} did not stop: {'; '.join(stuck)}")

    def pending(self) -> int:
        return 0 if self.qos == 0 else sum(1 for i in self._inverters for m in i.snapshot() if m.acked_at is None)

    def messages(self) -> Iterator[Message]:
        for inverter in self._inverters:
            yield from inverter.snapshot()

    def acked(self) -> set[Key]:
        return {m.key for m in self.messages() if m.acked_at is not None}


class Fleet(Observed):
    """A bounded fleet (it stops by itself after ``max_duration_s`` or ``max_messages``), its
    inverters in an observer process of their own; here, the record of what they sent."""

    KIND = "fleet"

    def __init__(self, host: str, port: int, *, inverters: int = 10, sites: int = 2, interval_s: float = 0.2,
                 prefix: str | None = None, max_duration_s: float = 900.0, max_messages: int = 2_000_000,
                 seed: int | None = None, qos: int = 1, contract: Contract = Contract()) -> None:
        if qos not in (0, 1):
            raise FleetError(f"qos must be 0 or 1, got {qos!r}")
        if inverters < 1:
            raise FleetError(f"a fleet has at least one inverter, not {inverters}")
        self.qos = qos
        self.prefix = prefix or f"fleet-{secrets.token_hex(3)}"
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s + 60  # the observer's bound: the publisher's, and time to settle
        self._args = {"host": host, "port": port, "prefix": self.prefix, "inverters": inverters, "sites": sites,
                      "interval_s": interval_s, "max_duration_s": max_duration_s, "max_messages": max_messages,
                      "seed": seed, "qos": qos, "contract": contract.to_json()}
        self.contract = contract
        self._ids = inverter_ids(self.prefix, inverters)
        self._messages: dict[str, list[Message]] = {i: [] for i in self._ids}
        self._by_key: dict[Key, Message] = {}
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def observer_name(self) -> str:
        return f"fleet {self.prefix}"

    def _spec(self) -> dict[str, Any]:
        return self._args

    def _event(self, event: dict[str, Any]) -> None:
        if event["e"] == "sent":
            message = Message(event["i"], event["s"], event["t"], event["v"], lag_s=event.get("lag", 0.0))
            with self._lock:
                self._messages[message.inverter_id].append(message)
                self._by_key[message.key] = message
        elif event["e"] == "ack":
            with self._lock:
                message = self._by_key.get((event["i"], event["s"]))
                if message is not None:
                    message.acked_at = event["t"]

    def stop(self, settle_s: float = 5.0, timeout_s: float = 10.0) -> None:
        """Stop publishing, give outstanding acknowledgements ``settle_s`` to arrive, disconnect.

        Bounded: a publisher or client stuck for ``timeout_s`` is reported, not waited on forever.
        """
        if self.observer is None or not self.observer.running and self.observer.outcome:
            return
        try:
            outcome = self.observer.stop(settle_s + 2 * timeout_s + 10, settle_s=settle_s, timeout_s=timeout_s)
        except ObserverError as exc:
            raise FleetError(f"fleet {self.prefix} did not stop: {exc}") from None
        if outcome.get("error"):
            raise FleetError(outcome["error"])

    def pending(self) -> int:
        """Readings whose acknowledgement may still come (none at QoS 0)."""
        return 0 if self.qos == 0 else sum(1 for m in self.messages() if m.acked_at is None)

    # --- what was sent -----------------------------------------------------------------------
    @property
    def inverter_ids(self) -> list[str]:
        return list(self._ids)

    def messages(self) -> Iterator[Message]:
        if self.observer is not None:
            self.observer.check()
        with self._lock:
            snapshot = [m for ms in self._messages.values() for m in ms]
        yield from snapshot

    def sent(self) -> dict[Key, dict[str, Any]]:
        """Every reading handed to the broker, with the values it carried."""
        return {m.key: m.values for m in self.messages()}

    def acked(self, before: float | None = None, after: float | None = None) -> set[Key]:
        """Keys the broker acknowledged (within monotonic times ``after``..``before``, if given)."""
        return {m.key for m in self.messages()
                if m.acked_at is not None and (before is None or m.acked_at <= before)
                and (after is None or m.acked_at >= after)}

    def record(self, excused: Callable[[Message], bool] | None = None) -> "FleetRecord":
        return FleetRecord(list(self.messages()), excused, self.contract)

    def lags_s(self, start: float, end: float) -> list[float]:
        """How late the publisher sent each reading due in ``start``..``end``, and its ticks' lag."""
        return super().lags_s(start, end) + [m.lag_s for m in self.messages() if start <= m.sent_at <= end]


# --- in the observer process -------------------------------------------------------------------
def observe(args: dict[str, Any], emitter: Emitter, stopping: Stopping) -> dict[str, Any]:
    from .observer import ticker

    def sent(m: Message) -> None:
        emitter.emit({"e": "sent", "i": m.inverter_id, "s": m.seq, "t": m.sent_at, "v": m.values, "lag": m.lag_s})

    def acked(m: Message) -> None:
        emitter.emit({"e": "ack", "i": m.inverter_id, "s": m.seq, "t": m.acked_at})
    publisher = Publisher(**args, on_sent=sent, on_acked=acked).start()
    ticker(emitter, stopping)
    stopping.wait(float("inf"))
    params = stopping.params
    try:
        publisher.stop(settle_s=float(params.get("settle_s", 0.0)), timeout_s=float(params.get("timeout_s", 10.0)))
    except FleetError as exc:
        return {"error": str(exc)}
    return {}


class Fleets:
    """Several fleets as one sender, for the ledger: the scenario's own and, e.g., a flood's."""

    def __init__(self, *fleets: Fleet) -> None:
        self.fleets = fleets

    @property
    def inverter_ids(self) -> list[str]:
        return [i for f in self.fleets for i in f.inverter_ids]

    def sent(self) -> dict[Key, dict[str, Any]]:
        return {k: v for f in self.fleets for k, v in f.sent().items()}

    def acked(self, before: float | None = None, after: float | None = None) -> set[Key]:
        return {k for f in self.fleets for k in f.acked(before, after)}


class FleetRecord:
    """A snapshot of what the fleet sent, indexed for the checks: by key, and per inverter in
    acknowledgement order (what was the newest reading the broker had accepted at time t?).

    ``excused`` readings were sent, but no answer is due to hold them: a restore's allowed loss
    (judged as its RPO). Served, they are still judged for their values. ``contract``: how the
    backend's answers are read back into readings."""

    def __init__(self, messages: list[Message], excused: Callable[[Message], bool] | None = None,
                 contract: Contract = Contract()) -> None:
        self.contract = contract
        self.by_key: dict[Key, Message] = {m.key: m for m in messages}
        self._acked: dict[str, tuple[list[float], list[Message]]] = {}
        per_inverter: dict[str, list[Message]] = {}
        for m in messages:
            if m.acked_at is not None and not (excused and excused(m)):
                per_inverter.setdefault(m.inverter_id, []).append(m)
        for inverter, acked in per_inverter.items():
            acked.sort(key=lambda m: m.acked_at)
            self._acked[inverter] = ([m.acked_at for m in acked], acked)

    @property
    def inverters(self) -> list[str]:
        """The inverters with at least one reading acknowledged."""
        return list(self._acked)

    def acked_by(self, inverter_id: str, at: float) -> list[Message]:
        """The readings of ``inverter_id`` the broker had acknowledged by time ``at``."""
        times, acked = self._acked.get(inverter_id, ([], []))
        return acked[:bisect_right(times, at)]

    def newest_acked(self, inverter_id: str, at: float) -> Message | None:
        """The most recently sent reading of ``inverter_id`` among those acknowledged by time ``at``."""
        return max(self.acked_by(inverter_id, at), key=lambda m: m.sent_at, default=None)

    def first_acked(self, inverter_id: str) -> Message | None:
        return (self._acked.get(inverter_id, ([], []))[1] or [None])[0]

    def acked_between(self, start: float, end: float) -> list[Message]:
        return [m for _, acked in self._acked.values() for m in acked if start <= m.acked_at <= end]

    @property
    def sites(self) -> list[str]:
        return list(self._energy)

    def energy_wh(self, site: str, *, acked_by: float | None = None, sent_by: float | None = None) -> float:
        """The energy of ``site``'s readings the broker had acknowledged by ``acked_by`` (excused
        ones left out: they may be lost), or that had been sent by ``sent_by`` (monotonic)."""
        acked, sent = self._energy.get(site, (([], [0.0]), ([], [0.0])))
        times, sums = acked if acked_by is not None else sent
        return sums[bisect_right(times, acked_by if acked_by is not None else sent_by)]

    def first_acked_beyond(self, site: str, energy_wh: float) -> float | None:
        """When the broker acknowledged the first of ``site``'s readings that takes its energy,
        counted in acknowledgement order, beyond ``energy_wh`` (None: it never went beyond)."""
        (times, sums), _ = self._energy.get(site, (([], [0.0]), ([], [0.0])))
        k = bisect_right(sums, energy_wh)  # sums[k] is the first above it: after the k-th reading
        return times[k - 1] if 0 < k <= len(times) else None

    @cached_property
    def _energy(self) -> dict[str, tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]]:
        """Per site, cumulative energy over acknowledgement times and over send times."""
        def cumulative(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
            pairs.sort()
            sums = [0.0]
            for _, wh in pairs:
                sums.append(sums[-1] + wh)
            return [t for t, _ in pairs], sums
        acked: dict[str, list[tuple[float, float]]] = {}
        sent: dict[str, list[tuple[float, float]]] = {}
        for _, messages in self._acked.values():
            for m in messages:
                acked.setdefault(m.values["site_id"], []).append((m.acked_at, float(m.values["energy_wh"])))
        for m in self.by_key.values():
            sent.setdefault(m.values["site_id"], []).append((m.sent_at, float(m.values["energy_wh"])))
        return {site: (cumulative(acked.get(site, [])), cumulative(pairs)) for site, pairs in sent.items()}

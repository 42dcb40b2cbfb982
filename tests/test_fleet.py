"""The fleet's record of acknowledgements is exact, and the fleet can neither deadlock nor hang a run.

paho calls ``on_publish`` from its network thread while holding its own publish mutex, which
``publish()`` also takes. These tests drive the fleet with a client that reproduces exactly that
locking (a real broker cannot be made to deliver a PUBACK at a chosen instant), then check the
same behaviour against the real broker of the stack.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from fulsk_chaos.probes import Fleet, FleetError
from fulsk_chaos.probes.fleet import Publisher


class PahoLockingClient:
    """paho's locking, and nothing else: publish() holds the out-message mutex, and so does the
    network thread while it calls on_publish."""

    def __init__(self, client_id: str) -> None:
        self.out_message_mutex = threading.RLock()
        self.on_publish = None
        self.mid = 0
        self.publishing = threading.Event()   # set when publish() is about to take the mutex
        self.block_publish = threading.Event()  # while clear... publish() proceeds (set() blocks it)

    def connect_async(self, host, port, keepalive=60) -> None:
        pass

    def loop_start(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def publish(self, topic, payload, qos=0):
        self.publishing.set()
        with self.out_message_mutex:
            while self.block_publish.is_set():
                time.sleep(0.01)
            self.mid += 1
            return SimpleNamespace(mid=self.mid)

    def deliver_puback(self, mid: int) -> None:
        """What paho's network thread does when a PUBACK arrives."""
        with self.out_message_mutex:
            self.on_publish(self, None, mid, SimpleNamespace(is_failure=False), None)


def test_a_puback_handled_while_a_publish_waits_for_paho_does_not_deadlock():
    fleet = Publisher("127.0.0.1", 1, prefix="t", inverters=1, client_factory=PahoLockingClient)
    inverter = fleet._inverters[0]
    client = inverter.client
    first = inverter.publish(fleet._rng)  # mid 1, awaiting its PUBACK

    network_thread_holds_mutex = threading.Event()
    puback_done = threading.Event()

    def network_thread() -> None:
        with client.out_message_mutex:  # paho's network thread has read a PUBACK...
            network_thread_holds_mutex.set()
            client.publishing.wait(5)  # ...while the fleet's thread is entering publish()
            time.sleep(0.1)            # (and, with the old code, already holds the fleet's lock)
            client.on_publish(client, None, 1, SimpleNamespace(is_failure=False), None)
        puback_done.set()

    net = threading.Thread(target=network_thread, daemon=True)
    net.start()
    network_thread_holds_mutex.wait(5)
    client.publishing.clear()
    publisher = threading.Thread(target=inverter.publish, args=(fleet._rng,), daemon=True)
    publisher.start()
    assert puback_done.wait(5), "deadlock: on_publish waits for the fleet's lock, held around publish()"
    publisher.join(5)
    assert not publisher.is_alive()
    assert first.acked_at is not None


def test_a_puback_that_beats_publish_returning_its_mid_is_still_recorded():
    class FastBroker(PahoLockingClient):
        def publish(self, topic, payload, qos=0):
            info = super().publish(topic, payload, qos)
            # the PUBACK is handled after paho released its mutex, before our caller sees the mid
            threading.Thread(target=self.deliver_puback, args=(info.mid,)).start()
            time.sleep(0.05)
            return info

    fleet = Publisher("127.0.0.1", 1, prefix="t", inverters=1, client_factory=FastBroker)
    message = fleet._inverters[0].publish(fleet._rng)
    assert message.acked_at is not None and message.acked_at <= time.monotonic()
    assert fleet.acked() == {message.key}


def test_stop_is_bounded_when_a_publish_is_stuck():
    fleet = Publisher("127.0.0.1", 1, prefix="t", inverters=1, interval_s=0.01, client_factory=PahoLockingClient)
    client = fleet._inverters[0].client
    client.block_publish.set()  # the next publish blocks, as one behind a wedged socket would
    fleet.start()
    assert client.publishing.wait(5)
    started = time.monotonic()
    with pytest.raises(FleetError, match="publishing thread is still blocked"):
        fleet.stop(settle_s=0, timeout_s=1)
    assert time.monotonic() - started < 5
    client.block_publish.clear()


def test_every_reading_the_real_broker_acknowledged_is_recorded(stack):
    fleet = Fleet(stack.endpoints.mqtt_host, stack.endpoints.mqtt_port, inverters=3, interval_s=0.05,
                  max_duration_s=2).start()
    time.sleep(1.5)
    fleet.stop(settle_s=5)
    messages = list(fleet.messages())
    assert len(messages) > 20
    assert all(m.acked_at is not None and m.acked_at >= m.sent_at for m in messages)
    assert fleet.sent().keys() == fleet.acked()
    assert all(set(v) == {"site_id", "ts", "power_w", "energy_wh"} for v in fleet.sent().values())


def test_qos0_readings_are_sent_but_never_counted_as_acknowledged(stack):
    """QoS 0 has no PUBACK: the broker promised nothing, so the ledger must hold it to nothing."""
    fleet = Fleet(stack.endpoints.mqtt_host, stack.endpoints.mqtt_port, inverters=2, interval_s=0.05,
                  max_duration_s=2, qos=0).start()
    time.sleep(1.0)
    fleet.stop(settle_s=1)
    assert len(fleet.sent()) > 10 and fleet.acked() == set() and fleet.pending() == 0
    with pytest.raises(FleetError, match="qos must be 0 or 1"):
        Fleet("127.0.0.1", 1, qos=2)

"""Mosquitto 2: the inverters' broker, persistent so QoS 1 messages queue while the backend is away."""
from __future__ import annotations

import threading
import time
from string import Template
from typing import TYPE_CHECKING, Any

from .spec import ServiceContext, ServiceSpec, hand_over

if TYPE_CHECKING:  # imported where used: bootstrap.sh reads the catalogue before pip installs them
    import paho.mqtt.client as mqtt


def mqtt_ping(port: int, timeout_s: float = 2.0) -> None:
    """A full MQTT CONNECT/CONNACK exchange, so 'healthy' means the broker speaks MQTT."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect("127.0.0.1", port, keepalive=5)
    try:
        deadline = time.monotonic() + timeout_s
        while not connected.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no CONNACK within {timeout_s:g} s")
            client.loop(timeout=0.05)
    finally:
        client.disconnect()


class Mosquitto(ServiceSpec):
    name = "mqtt"
    external_clients = ("inverters",)  # the fleet publishes through a proxied edge of its own
    user_when_root = "mosquitto"
    registry_image = "eclipse-mosquitto:2"
    offline_image = "fulsk-chaos/mosquitto:2"
    packages = ("mosquitto",)
    serves = ("mqtt",)
    compose_service = "mqtt"
    commands = {"mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients", "mosquitto_sub": "mosquitto-clients"}

    def prepare(self, ctx: ServiceContext) -> None:
        template = Template((ctx.fixtures / "mqtt" / "mosquitto.conf.template").read_text())
        (ctx.workdir / "mosquitto.conf").write_text(template.substitute(port=ctx.port, datadir=ctx.memory))
        hand_over(ctx.workdir, ctx.run_as, ctx.in_container)
        hand_over(ctx.memory, ctx.run_as, ctx.in_container)

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("mosquitto", "/usr/sbin/mosquitto"), "-c", str(ctx.workdir / "mosquitto.conf")]

    def client(self, ctx: ServiceContext) -> mqtt.Client:
        """A connected MQTT 3.1.1 client (clean session); run its loop, then disconnect() it."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        client.connect("127.0.0.1", ctx.port, keepalive=10)
        return client

    def address(self, ctx: ServiceContext) -> str:
        return f"mqtt://127.0.0.1:{ctx.port}"

    def endpoints(self, ctx: ServiceContext) -> dict[str, Any]:
        return {"address": self.address(ctx), "inverters": f"mqtt://127.0.0.1:{ctx.outside_port()}",
                "topic": ctx.contract.publish.topic}

    def check(self, ctx: ServiceContext) -> None:
        mqtt_ping(ctx.port)


SPEC = Mosquitto()

"""What the stack itself reports, for the faults' conditions: the kernel (who listens on a port,
which process runs, what a socket holds), Redis' INFO, the broker's $SYS counters and its log.

Each answers now, once, bounded by a short timeout; the conditions' watches poll them.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from ..host.procs import identity

if TYPE_CHECKING:
    from ..stack import Stack
    from ..stack.running import Service


def refuses(port: int, timeout_s: float = 0.5) -> bool:
    """The kernel refuses a connection to 127.0.0.1:``port``: nothing listens there."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # a timeout: something holds the port and does not answer


def process_identity(service: "Service") -> tuple[int, int] | None:
    """(pid, start time) of the service's main process, from /proc (a container's too: its main
    process is a process of this host); None when it runs no process."""
    pid = service.pid
    return identity(pid) if pid else None


def redis_info(stack: "Stack", target: str, *sections: str) -> dict[str, Any]:
    """Redis' own INFO sections, merged."""
    client = stack.client(target)
    try:
        info: dict[str, Any] = {}
        for section in sections:
            info.update(client.info(section))
        return info
    finally:
        client.close()


def prometheus_value(url: str, name: str, timeout_s: float = 2.0) -> float | None:
    """One unlabelled sample of a server's own Prometheus metrics; None if it does not export it."""
    response = requests.get(url, timeout=timeout_s)
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def log_lines_since(service: "Service", needle: str, since_epoch: float, lines: int = 3000) -> list[str]:
    """Lines of the service's own log (its file, or the container's log) containing ``needle``
    and stamped (mosquitto's leading epoch seconds) at ``since_epoch`` or later."""
    found = []
    for line in service.log_tail(lines).splitlines():
        if needle not in line:
            continue
        stamp = re.match(r"\s*(\d+(?:\.\d+)?):", line)
        if stamp is None or float(stamp.group(1)) >= int(since_epoch):
            found.append(line.strip())
    return found


SYS_TOPICS = ("$SYS/broker/publish/messages/received", "$SYS/broker/load/publish/received/1min",
              "$SYS/broker/clients/connected")


@dataclass
class BrokerStats:
    """The broker's $SYS counters as it publishes them (every ``sys_interval``, 1 s in the stack's
    mosquitto.conf), each with the time it arrived here; connected directly, not through an edge."""
    port: int
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 0) for t in SYS_TOPICS])

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            value = float(message.payload)
        except ValueError:
            return
        with self._lock:
            self.samples.setdefault(message.topic, []).append((time.monotonic(), value))

    def start(self, timeout_s: float = 3.0) -> "BrokerStats":
        """Connect and wait for every counter's retained value (sent at once on subscribing)."""
        self._client.connect("127.0.0.1", self.port, keepalive=10)
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(not self.series(t) for t in SYS_TOPICS):
            time.sleep(0.02)
        missing = [t for t in SYS_TOPICS if not self.series(t)]
        if missing:
            self.close()
            raise RuntimeError(f"the broker published no {', '.join(missing)} within {timeout_s:g} s "
                               f"(is sys_interval set in its mosquitto.conf?)")
        return self

    def series(self, topic: str) -> list[tuple[float, float]]:
        with self._lock:
            return list(self.samples.get(topic, []))

    def latest(self, topic: str) -> tuple[float, float]:
        return self.series(topic)[-1]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True)
class SocketState:
    """One TCP socket as the kernel describes it (``ss -tin``)."""
    local_port: int
    peer_port: int
    send_q: int             # bytes the socket holds that its peer has not acknowledged
    notsent: int            # of which never sent: the peer's window had no room
    rwnd_limited_ms: int    # time the socket could not send because the peer's receive window was full


_SOCKET = re.compile(r"^\d+\s+(\d+)\s+\S+:(\d+)\s+\S+:(\d+)")  # Recv-Q Send-Q local peer


def socket_states(local_port: int, peer_ports: list[int]) -> list[SocketState]:
    """The kernel's account of the established sockets on ``local_port`` whose peers are
    ``peer_ports`` (iproute2's ``ss``: on Docker's host network, the containers' sockets too)."""
    if not peer_ports:
        return []
    ss = shutil.which("ss")
    if ss is None:
        raise RuntimeError("ss (iproute2) is not installed: it reads the sockets' send queues from the kernel")
    peers = " or ".join(f"dport = :{p}" for p in peer_ports)
    out = subprocess.run([ss, "-tinH", "state", "established", f"( sport = :{local_port} ) and ( {peers} )"],
                         capture_output=True, text=True, timeout=5, check=True).stdout
    states: list[SocketState] = []
    head: re.Match[str] | None = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            head = _SOCKET.match(line)
            continue
        if head is None:
            continue
        notsent = re.search(r"\bnotsent:(\d+)", line)
        limited = re.search(r"\brwnd_limited:(\d+)ms", line)
        states.append(SocketState(int(head.group(2)), int(head.group(3)), int(head.group(1)),
                                  int(notsent.group(1)) if notsent else 0, int(limited.group(1)) if limited else 0))
        head = None
    return states

"""Canaries: one short exchange in a server's own protocol, on a connection of its own, timed on
the wire, to show what a toxic does to an edge (or that a frozen server answers nothing).

A toxic acts between the proxy and its upstream, where no server counts anything; a canary
through the edge's proxy is the one witness, and says so. Each exchange is a fresh connection:
a toxic with ``toxicity`` under 1 acts on some connections, and the next canary may be one.

    canary = canary_for(stack, "backend-postgres")
    canary.ping()      # a request whose answer starts at once: round trip, refusal, reset, silence
    canary.bulk(n)     # an answer of about n bytes (and n bytes sent, with ``pad``): throughput, cuts
    canary.goodbye()   # an answer after which the server closes: how long the close takes
"""
from __future__ import annotations

import secrets
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import psycopg

from ..services.postgres import dsn

if TYPE_CHECKING:
    from ..stack import Stack

Step = tuple[bytes, "int | None"]  # (request, bytes of its answer to wait for; None: until the server closes)


@dataclass
class Exchange:
    """What one canary exchange saw, timed from its measured request (the last step)."""
    refused: bool = False          # the kernel refused the connection: nothing listens
    reset: bool = False            # the connection was reset (RST)
    closed: bool = False           # the server (or the proxy) closed it
    answered_ms: float | None = None  # the request sent to the first byte of its answer
    done_ms: float | None = None   # to the last byte of the answer awaited
    close_ms: float | None = None  # the last byte of the answer to the close that followed it
    silent_ms: float | None = None  # waited this long for an answer on a connection still open
    received: int = 0              # bytes of the measured answer
    wanted: int | None = None      # bytes it should have had (None: until the close)
    error: str = ""

    @property
    def complete(self) -> bool:
        """Answered in full: the bytes awaited, or (awaited until the close) closed cleanly."""
        if self.reset or self.refused or self.silent_ms is not None or self.error:
            return False
        return self.received >= self.wanted if self.wanted is not None else self.closed

    def describe(self) -> str:
        if self.refused:
            return "connection refused"
        if self.reset:
            return f"reset after {self.received} bytes of its answer"
        if self.silent_ms is not None:
            return f"no answer for {self.silent_ms:.0f} ms, connection open"
        if not self.complete:
            return f"closed after {self.received} of {self.wanted} bytes" if self.closed else self.error or "no answer"
        first = f"answered in {self.answered_ms:.1f} ms, " if self.answered_ms is not None else ""
        close = f", closed {self.close_ms:.0f} ms after" if self.close_ms is not None else ""
        return f"{first}{self.received} bytes in {self.done_ms or 0:.1f} ms{close}"


def exchange(port: int, steps: list[Step], timeout_s: float, wait_close: bool = False) -> Exchange:
    """Connect to 127.0.0.1:``port`` and run ``steps``, each once the previous one was answered;
    the last one is measured (with ``wait_close``, until the server closes the connection)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    except ConnectionRefusedError:
        return Exchange(refused=True)
    except OSError as exc:
        return Exchange(error=f"connect: {exc}")
    with sock:
        seen = Exchange()
        for i, (request, wanted) in enumerate(steps):
            last = i == len(steps) - 1
            seen = _step(sock, request, wanted, then_close=wanted is None or (last and wait_close))
            if not last and not seen.complete:
                seen.error = seen.error or "its answer was cut short"
                return seen  # a step before the measured one failed: that is what was seen
        return seen


def _step(sock: socket.socket, request: bytes, wanted: int | None, then_close: bool) -> Exchange:
    seen = Exchange(wanted=wanted)
    sent = last = time.monotonic()
    try:
        sock.sendall(request)
        while then_close or wanted is None or seen.received < wanted:
            chunk = sock.recv(65536)
            now = time.monotonic()
            if not chunk:
                seen.closed = True
                seen.close_ms = (now - last) * 1000
                break
            if seen.answered_ms is None:
                seen.answered_ms = (now - sent) * 1000
            seen.received += len(chunk)
            last = now
            if wanted is not None and seen.received >= wanted and seen.done_ms is None:
                seen.done_ms = (now - sent) * 1000
    except ConnectionResetError:
        seen.reset = True
    except socket.timeout:
        if seen.answered_ms is None:
            seen.silent_ms = (time.monotonic() - sent) * 1000
        seen.error = "timed out"
    except OSError as exc:
        seen.error = str(exc)
    if wanted is None and seen.closed and seen.done_ms is None:
        seen.done_ms = (last - sent) * 1000  # the answer ended with the close
    return seen


# --- each server's protocol ---------------------------------------------------------------------
class Protocol:
    """The requests a canary makes of one kind of server."""

    def ping(self) -> list[Step]:
        raise NotImplementedError

    def goodbye(self) -> list[Step]:
        """Ends with a request the server answers and then closes the connection after."""
        raise NotImplementedError

    def bulk(self, size: int, pad: int) -> list[Step]:
        raise NotImplementedError


class Redis(Protocol):
    def ping(self) -> list[Step]:
        return [(b"PING\r\n", 7)]  # +PONG\r\n

    def goodbye(self) -> list[Step]:
        return [(b"QUIT\r\n", 5)]  # +OK\r\n, then the close

    def bulk(self, size: int, pad: int) -> list[Step]:
        """ECHO: the same bytes both ways."""
        size = max(size, pad)
        return [(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (size, b"x" * size), len(b"$%d\r\n" % size) + size + 2)]


def _mqtt(kind: int, body: bytes) -> bytes:
    length, n = b"", len(body)
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


def _utf8(text: str) -> bytes:
    return struct.pack("!H", len(text)) + text.encode()


class Mqtt(Protocol):
    """MQTT 3.1.1 by hand: CONNECT/CONNACK, and a publish the canary subscribed to itself."""

    def __init__(self) -> None:
        self.client_id = f"canary-{secrets.token_hex(4)}"
        self.topic = f"fulsk-chaos/canary/{self.client_id}"  # never the inverters' telemetry

    def connect(self) -> Step:
        return _mqtt(0x10, _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 10) + _utf8(self.client_id)), 4

    def ping(self) -> list[Step]:
        return [self.connect()]

    def goodbye(self) -> list[Step]:
        return [self.connect(), (_mqtt(0xE0, b""), None)]  # DISCONNECT: the broker closes, answering nothing

    def bulk(self, size: int, pad: int) -> list[Step]:
        publish = _mqtt(0x30, _utf8(self.topic) + b"x" * max(size, pad))
        return [self.connect(), (_mqtt(0x82, struct.pack("!H", 1) + _utf8(self.topic) + b"\x00"), 5),
                (publish, len(publish))]


class Http(Protocol):
    """The backend's health path (small answers) and its metrics path (kilobytes), as its contract
    names them (health for both where it has no metrics)."""

    def __init__(self, ping_path: str = "/health", bulk_path: str = "/metrics") -> None:
        self.ping_path = ping_path
        self.bulk_path = bulk_path

    def _get(self, path: str, pad: int = 0) -> bytes:
        padding = f"X-Fulsk-Chaos-Pad: {'x' * min(pad, 7000)}\r\n" if pad else ""
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{padding}Connection: close\r\n\r\n".encode()

    def ping(self) -> list[Step]:
        return [(self._get(self.ping_path), 1)]

    def goodbye(self) -> list[Step]:
        return [(self._get(self.ping_path), None)]

    def bulk(self, size: int, pad: int) -> list[Step]:
        """The server decides the size (its /metrics: kilobytes); the request carries ``pad``."""
        return [(self._get(self.bulk_path, pad), None)]


class Postgres(Protocol):
    """A startup packet of a protocol version no server speaks: the server answers with an error
    and closes. Bulk needs a session (SCRAM): psycopg's, timed around its query."""
    STARTUP = struct.pack("!II", 8, (9 << 16) | 9)

    def ping(self) -> list[Step]:
        return [(self.STARTUP, 1)]

    def goodbye(self) -> list[Step]:
        return [(self.STARTUP, None)]


PROTOCOLS: dict[str, Callable[[], Protocol]] = {"redis": Redis, "mqtt": Mqtt, "backend": Http, "frontend": Http,
                                               "postgres": Postgres, "postgres-standby": Postgres}


class Canary:
    """A client of one server, through ``port`` (an edge's proxy, or the server's own port)."""

    def __init__(self, port: int, protocol: Protocol, postgres_dsn: str | None = None) -> None:
        self.port = port
        self.protocol = protocol
        self.postgres_dsn = postgres_dsn

    def ping(self, timeout_s: float = 5.0, until_close: bool = False) -> Exchange:
        """``until_close``: then wait for the connection to end (a reset that comes later)."""
        return exchange(self.port, self.protocol.ping(), timeout_s, wait_close=until_close)

    def goodbye(self, timeout_s: float = 10.0) -> Exchange:
        return exchange(self.port, self.protocol.goodbye(), timeout_s, wait_close=True)

    def bulk(self, size: int, pad: int = 0, timeout_s: float = 10.0) -> Exchange:
        if isinstance(self.protocol, Postgres):
            return self._postgres_bulk(size, pad, timeout_s)
        return exchange(self.port, self.protocol.bulk(size, pad), timeout_s)

    def _postgres_bulk(self, size: int, pad: int, timeout_s: float) -> Exchange:
        assert self.postgres_dsn is not None
        query = f"SELECT repeat('x', {int(size)}) /* {'x' * pad} */"
        try:
            with psycopg.connect(self.postgres_dsn, connect_timeout=max(2, int(timeout_s)),
                                 options=f"-c statement_timeout={int(timeout_s * 1000)}") as conn:
                sent = time.monotonic()
                (value,) = conn.execute(query).fetchone()
                took = (time.monotonic() - sent) * 1000
                return Exchange(answered_ms=took, done_ms=took, received=len(value), wanted=size)
        except psycopg.OperationalError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Exchange(closed=True, wanted=size, error=f"psycopg: {text}")


def canary_for(stack: "Stack", edge: str | None = None, service: str | None = None) -> Canary | None:
    """A canary through ``edge``'s proxy, or straight to ``service``'s port; None for a server
    whose protocol no canary speaks."""
    topology = stack.topology
    if edge is not None:
        upstream, port = topology.edges[edge].upstream, topology.edges[edge].listen
    else:
        assert service is not None
        upstream, port = service, topology.ports[service]
    protocol = PROTOCOLS.get(upstream)
    if protocol is None:
        return None
    if protocol is Http:
        contract = stack.contract
        return Canary(port, Http(contract.health.path, contract.capabilities.metrics or contract.health.path))
    return Canary(port, protocol(), dsn(topology, port) if upstream.startswith("postgres") else None)

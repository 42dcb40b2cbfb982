"""Free ports on 127.0.0.1 for the stack's servers, chosen outside the ephemeral range.

A port the kernel hands out for bind(0) comes from the ephemeral range, the same range every
outgoing connection takes its source port from: between choosing such a port and the server
binding it, any client on the machine (the stack's own, a probe, another stack) may take it.
Ports below the range are never handed out that way.

Stacks started at once by different processes (pytest-xdist workers) could still pick the same
free port before either binds it: each worker picks from a slice of its own (``FULSK_CHAOS_PORT_SLICE
= "K/N"``, by default from pytest-xdist's worker id and count, which the processes a worker
starts inherit).
"""
from __future__ import annotations

import math
import os
import random
import re
import socket
from pathlib import Path
from typing import Iterator

LOWEST = 10000  # below: the well-known and commonly configured service ports


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_slice(env: dict[str, str] | None = None) -> tuple[int, int]:
    """(K, N): this process picks from the K-th of N slices of the range (0, 1 by default)."""
    env = os.environ if env is None else env
    if text := env.get("FULSK_CHAOS_PORT_SLICE"):
        k, _, n = text.partition("/")
        return int(k), int(n)
    worker = re.fullmatch(r"gw(\d+)", env.get("PYTEST_XDIST_WORKER", ""))
    if worker and env.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
        return int(worker[1]), int(env["PYTEST_XDIST_WORKER_COUNT"])
    return 0, 1


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports between LOWEST and the ephemeral range (in this process's
    slice of it), picked at random (so that stacks in other processes rarely race for one); all
    held bound until all are chosen."""
    low, _ = ephemeral_range()
    k, n = port_slice()
    if not 0 <= k < n:
        raise OSError(f"port slice {k}/{n}: K must be in 0..N-1")
    width = (low - LOWEST) // n
    first, last = LOWEST + k * width, LOWEST + (k + 1) * width - 1
    sockets: list[socket.socket] = []
    try:
        for port in _random_order(first, last + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
        raise OSError(f"fewer than {count} free ports between {first} and {last} on 127.0.0.1")
    finally:
        for s in sockets:
            s.close()


def _random_order(low: int, high: int) -> Iterator[int]:
    """Every port in [low, high) once, from a random start by a random stride prime to the span:
    shuffling them all (some 20000) took 50 ms of every stack's start."""
    rng, span = random.SystemRandom(), high - low
    if span < 1:
        return iter(())
    stride = rng.randrange(1, span) if span > 1 else 1
    while math.gcd(stride, span) != 1:
        stride = rng.randrange(1, span)
    start = rng.randrange(span)
    return (low + (start + i * stride) % span for i in range(span))

"""Free ports on 127.0.0.1 for the stack's servers, chosen outside the ephemeral range.

A port the kernel hands out for bind(0) comes from the ephemeral range, the same range every
outgoing connection takes its source port from: between choosing such a port and the server
binding it, any client on the machine (the stack's own, a probe, another stack) may take it.
Ports below the range are never handed out that way.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000  # below: the well-known and commonly configured service ports


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports between LOWEST and the ephemeral range, picked at random (so
    that stacks in other processes rarely race for one); all held bound until all are chosen."""
    low, _ = ephemeral_range()
    candidates = list(range(LOWEST, low))
    random.SystemRandom().shuffle(candidates)
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
        raise OSError(f"fewer than {count} free ports between {LOWEST} and {low} on 127.0.0.1")
    finally:
        for s in sockets:
            s.close()

"""Cache faults on Redis: emptied, squeezed, lost. (Redis hung is ``pause``; killed is ``kill``.)

The cache may lose anything at any time; what it must never do is make users see wrong or stale
data, or fail requests the database could answer. These faults make it lose things in each of
the ways production does.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from ..services.redis import MEMORY
from .catalogue import Family, Rollback

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("cache")
FILLER = "fulsk-chaos:filler:"


@family.kind("flushall")
def flushall(stack: "Stack", target: str) -> Rollback:
    """FLUSHALL: every key gone at once, as after an operator's mistake or a failover to an empty replica."""
    client = stack.client(target)
    try:
        client.flushall()
    finally:
        client.close()
    return lambda: None  # nothing to undo: the cache refills (or not: that is what is judged)


@family.kind("memory-pressure")
def memory_pressure(stack: "Stack", target: str, maxmemory_mb: int = 2, policy: str = "allkeys-lru",
                    fill_mb: int = 4, value_kb: int = 16) -> Rollback:
    """Shrink maxmemory and fill it with filler keys, so the eviction policy pushes real keys out
    (or, with noeviction, writes fail); rollback: filler deleted, the started settings back."""
    client = stack.client(target)
    try:
        client.config_set("maxmemory-policy", policy)
        client.config_set("maxmemory", str(maxmemory_mb * 1024 * 1024))
        value = b"x" * (value_kb * 1024)
        pipe = client.pipeline(transaction=False)
        for i in range(fill_mb * 1024 // value_kb):
            pipe.set(f"{FILLER}{i}", value)
        try:
            pipe.execute()
        except Exception:  # noqa: BLE001 - noeviction refuses writes once full: that is the point
            pass
    except BaseException:
        _restore(client)
        client.close()
        raise
    client.close()

    def rollback() -> None:
        undo = stack.client(target)
        try:
            _restore(undo)
        finally:
            undo.close()
    return rollback


def _restore(client) -> None:
    keys = list(client.scan_iter(match=FILLER + "*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    for key, value in MEMORY.items():
        client.config_set(key, value)


@family.kind("restart-empty")
def restart_empty(stack: "Stack", target: str) -> Rollback:
    """SIGKILL Redis and delete its snapshot: it comes back empty, as a replaced cache node does;
    rollback: start it (empty)."""
    service = stack.service(target)
    service.kill(signal.SIGKILL)
    snapshot = service.spec.snapshot_path(service.ctx)
    snapshot.unlink(missing_ok=True)

    def rollback() -> None:
        service.stop()  # whatever the kill left
        service.start_healthy()
    return rollback

"""Cache faults on Redis: emptied, squeezed, lost. (Redis hung is ``pause``; killed is ``kill``.)

The cache may lose anything at any time; what it must never do is make users see wrong or stale
data, or fail requests the database could answer. These faults make it lose things in each of
the ways production does.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ..services.redis import MEMORY
from ..verdict import Expectation
from .catalogue import Family, Rollback
from .conditions import Watch, condition, reached
from .measure import redis_info

if TYPE_CHECKING:
    from ..stack import Stack

family = Family("cache", needs="redis")  # they speak Redis to their target
FILLER = "fulsk-chaos:filler:"


# --- conditions --------------------------------------------------------------------------------
@condition("the cache lost keys: Redis counted fewer keys right after the flush than right before it "
           "(a flush of an empty cache reaches nothing)", "Redis (DBSIZE, in the flush's own transaction)")
class Flushed(Watch):
    def check(self, handle: Any) -> Expectation | None:
        if handle is None:
            return None
        before, after = handle.keys_before, handle.keys_after
        return reached("keys the flush removed", before - after, ">=", 1, detail=f"{before} keys before, {after} after")


@condition("the eviction policy acted: Redis evicted keys, or refused writes for want of memory",
           "Redis (INFO stats evicted_keys, INFO errorstats OOM)")
class Evicting(Watch):
    def _counts(self) -> tuple[int, int]:
        info = redis_info(self.stack, self.target, "stats", "errorstats")
        return int(info.get("evicted_keys", 0)), int((info.get("errorstat_OOM") or {}).get("count", 0))

    def baseline(self) -> None:
        self.before = self._counts()

    def check(self, handle: Any) -> Expectation | None:
        if handle is None:
            return None
        evicted, refused = (now - was for now, was in zip(self._counts(), self.before))
        return reached("keys Redis evicted and writes it refused for want of memory", evicted + refused, ">=", 1,
                       detail=f"{evicted} evicted, {refused} writes refused (OOM)")


@condition("Redis came back empty: a new server (run_id) that loaded none of the keys it had",
           "Redis (INFO server run_id, INFO persistence rdb_last_load_keys_loaded, DBSIZE before)")
class CameBackEmpty(Watch):
    def baseline(self) -> None:
        client = self.stack.client(self.target)
        try:
            self.run_id, self.keys = client.info("server")["run_id"], client.dbsize()
        finally:
            client.close()

    def after(self, handle: Any) -> Expectation:
        info = redis_info(self.stack, self.target, "server", "persistence")
        new = info["run_id"] != self.run_id
        loaded = int(info.get("rdb_last_load_keys_loaded", 0))
        return reached("keys lost by the restart", self.keys - loaded if new else 0, ">=", 1,
                       detail=f"{self.keys} keys before; {'a new' if new else 'the same'} server, which loaded "
                              f"{loaded} from disk")


class Flush:
    """FLUSHALL's rollback (nothing to undo: the cache refills, or not: that is what is judged),
    with what Redis counted around it."""

    def __init__(self, keys_before: int, keys_after: int) -> None:
        self.keys_before, self.keys_after = keys_before, keys_after

    def __call__(self) -> None:
        pass

    def details(self) -> dict[str, Any]:
        return {"keys_before": self.keys_before, "keys_after": self.keys_after}


@family.kind("flushall", condition=Flushed)
def flushall(stack: "Stack", target: str) -> Flush:
    """FLUSHALL: every key gone at once, as after an operator's mistake or a failover to an empty replica."""
    client = stack.client(target)
    try:
        pipe = client.pipeline(transaction=True)  # counted at the flush itself: the backend refills at once
        before, _, after = pipe.dbsize().flushall().dbsize().execute()
    finally:
        client.close()
    return Flush(before, after)


@family.kind("memory-pressure", condition=Evicting)
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


@family.kind("restart-empty", condition=CameBackEmpty)
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

"""The live feed as a dashboard sees it: a WebSocket client through the frontend, recording when
each reading arrives, and reconnecting (as the dashboard does) whenever the feed drops."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import aiohttp

from .fleet import Key


def feed_keys(data: str) -> list[Key]:
    """The readings a feed message carries; none for one that cannot be read (they count as missed)."""
    try:
        return [(str(r["inverter_id"]), int(r["seq"])) for r in json.loads(data).get("readings") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


class LiveFeed:
    """Bounded: it stops by itself after ``max_duration_s``."""

    def __init__(self, url: str, *, reconnect_s: float = 0.5, max_duration_s: float = 1800.0) -> None:
        self.url = url
        self.reconnect_s = reconnect_s
        self.max_duration_s = max_duration_s
        self._arrivals: dict[Key, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> "LiveFeed":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="live-feed", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the feed (a no-op once it is closed)."""
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._task is not None:
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass  # the loop has just finished by itself
        self._thread.join(timeout_s)

    def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._task = self._loop.create_task(self._run())
            ready.set()
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _run(self) -> None:
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, connect=2, sock_connect=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() - started < self.max_duration_s:
                try:
                    async with session.ws_connect(self.url, heartbeat=5) as ws:
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            self._record(message.data, time.monotonic())
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass  # what users miss meanwhile is judged from the arrivals, not from here
                await asyncio.sleep(self.reconnect_s)

    def _record(self, data: str, arrived: float) -> None:
        keys = feed_keys(data)
        with self._lock:
            for key in keys:
                self._arrivals.setdefault(key, arrived)  # a redelivered reading counts from its first arrival

    def arrivals(self) -> dict[Key, float]:
        with self._lock:
            return dict(self._arrivals)

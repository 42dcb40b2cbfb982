"""The live feed as a dashboard sees it: a WebSocket client through the frontend, in an observer
process of its own, recording when each reading arrives, and reconnecting (as the dashboard
does) whenever the feed drops."""
from __future__ import annotations

import threading
from typing import Any

from ..contract import Contract, from_mapping as contract_from
from .fleet import Key
from .observer import Emitter, Observed, Stopping


def feed_keys(data: str, contract: Contract = Contract()) -> list[Key]:
    """The readings a feed message carries, as the backend's contract reads them; none for one
    that cannot be read (they count as missed)."""
    return contract.feed_keys(data)


class LiveFeed(Observed):
    """Bounded: it stops by itself after ``max_duration_s``. Here: the arrivals as they stream in."""

    KIND = "feed"
    observer_name = "live feed"

    def __init__(self, url: str, *, reconnect_s: float = 0.5, max_duration_s: float = 1800.0,
                 contract: Contract = Contract()) -> None:
        self.url = url
        self.contract = contract
        self.reconnect_s = reconnect_s
        self.max_duration_s = max_duration_s
        self._arrivals: dict[Key, float] = {}
        self._lock = threading.Lock()

    def _spec(self) -> dict[str, Any]:
        return {"url": self.url, "reconnect_s": self.reconnect_s, "contract": self.contract.to_json()}

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the feed (a no-op once it is closed)."""
        if self.observer is not None and self.observer.running:
            self.observer.stop(timeout_s)

    def _event(self, event: dict[str, Any]) -> None:
        if event["e"] == "feed":
            with self._lock:
                for inverter, seq in event["k"]:
                    self._arrivals.setdefault((inverter, seq), event["t"])  # a redelivered reading counts from its first arrival

    def arrivals(self) -> dict[Key, float]:
        if self.observer is not None:
            self.observer.check()
        with self._lock:
            return dict(self._arrivals)


# --- in the observer process -------------------------------------------------------------------
def observe(args: dict[str, Any], emitter: Emitter, stopping: Stopping) -> None:
    import asyncio
    contract = contract_from(args["contract"]) if "contract" in args else Contract()
    asyncio.run(_observe(args["url"], float(args["reconnect_s"]), emitter, stopping, contract))


async def _observe(url: str, reconnect_s: float, emitter: Emitter, stopping: Stopping, contract: Contract) -> None:
    import asyncio
    import aiohttp
    from .observer import async_ticker
    ticking = asyncio.ensure_future(async_ticker(emitter, stopping))
    timeout = aiohttp.ClientTimeout(total=None, connect=2, sock_connect=2)

    async def connected() -> None:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stopping.is_set():
                try:
                    async with session.ws_connect(url, heartbeat=5) as ws:
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            keys = feed_keys(message.data, contract)
                            emitter.emit({"e": "feed", "k": keys}, stamp="t")
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass  # what users miss meanwhile is judged from the arrivals, not from here
                await asyncio.sleep(reconnect_s)
    feed = asyncio.ensure_future(connected())
    while not stopping.is_set():
        await asyncio.sleep(0.05)
    feed.cancel()
    ticking.cancel()
    await asyncio.gather(feed, ticking, return_exceptions=True)

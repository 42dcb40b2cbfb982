"""Explicit wait strategies: poll a check until it passes, or fail saying what was last seen."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from .errors import StackError

T = TypeVar("T")


def epoch_of(monotonic: float) -> float:
    """A time.monotonic() instant as epoch seconds (what reports and Prometheus speak)."""
    return time.time() - (time.monotonic() - monotonic)


def wait_until(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05,
               abort: Callable[[], str | None] = lambda: None) -> T:
    """Return ``check()``'s first result that does not raise; ``abort()`` may end the wait early."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            return check()
        except Exception as exc:  # noqa: BLE001 - any failure of the check means 'not yet'
            last = exc
        reason = abort()
        if reason:
            raise StackError(f"{what}: {reason} (last check: {last})")
        if time.monotonic() >= deadline:
            raise StackError(f"{what}: not ready after {timeout_s:g} s (last check: {last})")
        time.sleep(interval_s)

"""A fault that did not bite is not a pass: each fault kind declares the condition it exists to
create, and the injector measures, from the stack itself, whether and when it was reached.

A ``Condition`` is a sentence (what the fault must create), who reports it (the kernel, the
Docker engine, Redis, the broker, or, for a toxic, a canary through the edge), and a ``Watch``
that measures it: a baseline before the injection, then checks from a thread of its own while
the fault is active (bounded, stopped at rollback), or once after the rollback for a fault whose
condition shows when the service comes back. What was measured, against what, and when the
condition was first reached goes into the fault's journal entry (``details["condition"]``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..verdict import Expectation

if TYPE_CHECKING:
    from ..stack import Stack

MAX_WATCH_S = 600.0  # a watch stops by itself after this, rolled back or not
JOIN_S = 15.0        # a check in flight at rollback finishes within its own timeouts


class Watch:
    """Measures one active fault's condition. Subclasses measure; the Watcher schedules.

    ``check`` returns the condition as an Expectation (``kind="condition"``): what was measured,
    held to what; None while there is nothing to measure yet (the fault is still being put in
    place). ``after`` does the same once the fault is rolled back, for conditions that show
    only then (a cache that came back empty); a watch that measures nothing while active returns
    None from ``check``.
    """
    interval_s = 0.2

    def __init__(self, stack: "Stack", target: str, params: dict[str, Any]) -> None:
        self.stack = stack
        self.target = target
        self.params = params

    def baseline(self) -> None:
        """What the check compares with, measured just before the injection."""

    def check(self, handle: Any) -> Expectation | None:
        """One measurement while the fault is active; ``handle`` is what the kind returned (None
        while it is being injected)."""
        return None

    def after(self, handle: Any) -> Expectation | None:
        """One measurement once the fault is rolled back (None: the condition is judged while active)."""
        return None

    def close(self) -> None:
        """Release what the watch holds (a subscription, a connection)."""


@dataclass(frozen=True)
class Condition:
    """What a fault kind exists to create, who reports it, and the watch that measures it."""
    text: str
    source: str
    watch: Callable[["Stack", str, dict[str, Any]], Watch]


def condition(text: str, source: str) -> Callable[[type[Watch]], Condition]:
    """``@condition("...", "...")`` on a Watch class: the Condition a kind declares."""
    def declare(watch: type[Watch]) -> Condition:
        return Condition(text, source, watch)
    return declare


def reached(name: str, measured: float | int | None, op: str, threshold: float | int, unit: str = "",
            detail: str = "", **evidence: Any) -> Expectation:
    """A condition's measurement, held to its threshold."""
    return Expectation(name, measured, op, threshold, unit, evidence=evidence, detail=detail, kind="condition")


class Watcher:
    """Runs one fault's Watch: the baseline now, checks in a thread until the condition is reached
    or the fault is rolled back, and the journal entry. Never raises: a condition that could not
    be measured is not reached, and the journal says why."""

    def __init__(self, condition: Condition, stack: "Stack", target: str, params: dict[str, Any]) -> None:
        self.condition = condition
        self.started = time.monotonic()
        self.handle: Any = None
        self.last: Expectation | None = None
        self.reached_after_s: float | None = None
        self.checks = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._reached = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        self.watch: Watch | None = None
        try:
            watch = condition.watch(stack, target, params)
        except Exception as exc:  # noqa: BLE001 - no watch: the condition cannot be measured
            self._error("baseline", exc)
            return
        try:
            watch.baseline()
            self.watch = watch
        except Exception as exc:  # noqa: BLE001 - no baseline: the condition cannot be measured
            self._error("baseline", exc)
            try:
                watch.close()
            except Exception:  # noqa: BLE001 - what the baseline half-opened, closed as far as it can be
                pass

    def start(self, started: float) -> "Watcher":
        """Check from ``started`` (time.monotonic(): the injection) on."""
        self.started = started
        if self.watch is not None:
            self._thread = threading.Thread(target=self._run, name=f"condition-{self.condition.text[:20]}",
                                            daemon=True)
            self._thread.start()
        return self

    def injected(self, handle: Any) -> None:
        self.handle = handle

    @property
    def reached(self) -> bool:
        return self.reached_after_s is not None

    def _error(self, what: str, exc: BaseException) -> None:
        text = f"{what}: {type(exc).__name__}: {exc}"[:300]
        if text not in self.errors and len(self.errors) < 10:
            self.errors.append(text)

    def _measure(self, step: Callable[[Any], Expectation | None], what: str) -> None:
        assert self.watch is not None
        try:
            measured = step(self.handle)
        except Exception as exc:  # noqa: BLE001 - one failed measurement is not the end of the watch
            self._error(what, exc)
            return
        if measured is None:
            return
        self.checks += 1
        self.last = measured
        if measured.held and self.reached_after_s is None:
            self.reached_after_s = round(time.monotonic() - self.started, 3)
            self._reached.set()

    def _run(self) -> None:
        assert self.watch is not None
        while not self._stop.is_set() and not self.reached and time.monotonic() - self.started < MAX_WATCH_S:
            self._measure(self.watch.check, "check")
            if self.reached:
                return
            self._stop.wait(self.watch.interval_s)

    def wait(self, timeout_s: float) -> bool:
        """Until the condition is reached (True), or ``timeout_s`` passed or the watch ended (False)."""
        deadline = time.monotonic() + timeout_s
        while not self._reached.wait(0.05):
            if time.monotonic() >= deadline or self._thread is None or not self._thread.is_alive():
                return self.reached
        return True

    def stop(self) -> None:
        """The fault is about to be rolled back: stop checking; one last check while it is still
        active if it was not reached (a short fault still gets a fair measurement)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_S)
            if self._thread.is_alive():
                self.errors.append(f"a check was still running {JOIN_S:g} s after the rollback began")
                return
        if self.watch is not None and not self.reached:
            self._measure(self.watch.check, "check")

    def finish(self) -> dict[str, Any]:
        """After the rollback: the check that needs the fault undone, if any; the journal entry."""
        if self._done:
            return self.entry()
        self._done = True
        if self.watch is not None:
            if not self.reached:
                self._measure(self.watch.after, "after the rollback")
            try:
                self.watch.close()
            except Exception as exc:  # noqa: BLE001 - said in the journal, never raised
                self._error("close", exc)
        return self.entry()

    def entry(self) -> dict[str, Any]:
        last = self.last
        return {"condition": self.condition.text, "source": self.condition.source, "reached": self.reached,
                "reached_after_s": self.reached_after_s, "checks": self.checks,
                "measured": last.to_json() if last is not None else None,
                **({"errors": self.errors} if self.errors else {})}


def condition_expectation(kind: str, target: str, entry: dict[str, Any] | None) -> Expectation:
    """A fault's condition as an expectation of the verdict's (``kind="condition"``): one that
    was not reached makes the verdict ``error``, never ``pass`` (a measured failure outranks it)."""
    fault = f"{kind} on {target}"
    if not entry:
        return Expectation(f"{fault}: its condition reached", None, "==", 1, evidence={"fault": fault},
                           detail="its condition was never measured (the fault was not rolled back)", kind="condition")
    measured = entry.get("measured") or {}
    unit = f" {measured['unit']}" if measured.get("unit") else ""
    why = (f"{measured.get('name')} = {measured.get('measured')}{unit} (needed {measured.get('op')} "
           f"{measured.get('threshold')}{unit})" if measured else "nothing was measured")
    if entry.get("reached"):
        detail = f"{entry['condition']}: reached {entry.get('reached_after_s')} s after the injection ({why})"
    else:
        detail = "; ".join(filter(None, [entry["condition"], f"measured by {entry['source']}: {why}",
                                         measured.get("detail", ""), *entry.get("errors", [])[:2]]))
    return Expectation(f"{fault}: its condition reached", int(bool(entry.get("reached"))), "==", 1,
                       evidence={"fault": fault, "checks": entry.get("checks", 0)}, detail=detail, kind="condition")

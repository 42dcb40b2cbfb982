"""The observer process: an instrument (the HTTP probe, the live feed, the fleet) runs in a
process of its own and streams what it saw back as JSON lines; the test process only judges.

In the test process the instruments competed with pytest, the judging and the faults' own
threads for one interpreter lock: a connection storm's threads once made the in-process probe
report 816 ms for an API answering in 14 ms. Every event is stamped with the host's monotonic
clock (CLOCK_MONOTONIC is one clock for every process), so the test process compares them with
its own ``time.monotonic()`` directly.

The stream is ordered: an event stamped at t is written before any event stamped later (stamping
and writing happen under one lock). A ``tick`` every ``TICK_S`` therefore says "everything
before t has been sent", and carries how late the observer woke for it: its scheduling lag.

    child:  python -m fulsk_chaos.probes.observer   (stdin: the spec line, then commands)
    parent: ObserverProcess(kind, args, on_event).start() ... .stop()
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import FulskChaosError

TICK_S = 0.02
# each kind's engine: a function (args, emitter, stopping) run in the child (see run())
ENGINES = {"probe": "fulsk_chaos.probes.http:observe", "feed": "fulsk_chaos.probes.live:observe",
           "fleet": "fulsk_chaos.probes.fleet:observe"}


class ObserverError(FulskChaosError, RuntimeError):
    """An observer process failed; the message says which and what it printed."""


# --- the child -------------------------------------------------------------------------------
class Emitter:
    """Writes events as JSON lines, each stamped and written under one lock: the stream is in
    stamp order, whichever thread emits."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any], stamp: str | None = None,
             then: Callable[[dict[str, Any], float], None] | None = None) -> float:
        """Write ``event``; with ``stamp``, set that field to now first (returned), and let
        ``then`` add what depends on it."""
        with self._lock:
            now = time.monotonic()
            if stamp:
                event[stamp] = now
            if then is not None:
                then(event, now)
            self._out.write(json.dumps(event, separators=(",", ":")) + "\n")
            return now

    def flush(self) -> None:
        with self._lock:
            self._out.flush()


class Stopping:
    """Why and how the child stops: a ``stop`` command (with its parameters), the end of stdin
    (the test process is gone) or the time bound."""

    def __init__(self, max_duration_s: float) -> None:
        self.event = threading.Event()
        self.params: dict[str, Any] = {}
        self.deadline = time.monotonic() + max_duration_s

    def is_set(self) -> bool:
        if time.monotonic() > self.deadline:
            self.event.set()
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(min(seconds, max(0.0, self.deadline - time.monotonic()))) or self.is_set()


def _commands(stdin: TextIO, stopping: Stopping) -> None:
    for line in stdin:
        command = json.loads(line)
        if command.get("cmd") == "stop":
            stopping.params = command
            break
    stopping.event.set()  # a stop command, or EOF: the test process closed the pipe or died


def _flusher(emitter: Emitter, done: threading.Event) -> None:
    while not done.wait(TICK_S / 2):
        emitter.flush()


def run(spec: dict[str, Any], stdin: TextIO, stdout: TextIO) -> None:
    """The child: run the engine of ``spec["kind"]`` until stopped, then say so and exit."""
    emitter = Emitter(stdout)
    stopping = Stopping(float(spec.get("max_duration_s", 1800.0)))
    threading.Thread(target=_commands, args=(stdin, stopping), name="commands", daemon=True).start()
    done = threading.Event()
    flusher = threading.Thread(target=_flusher, args=(emitter, done), name="flush", daemon=True)
    flusher.start()
    module, _, name = ENGINES[spec["kind"]].partition(":")
    engine: Callable[..., dict[str, Any] | None] = getattr(import_module(module), name)
    try:
        outcome = engine(spec["args"], emitter, stopping) or {}
    except Exception as exc:  # noqa: BLE001 - reported to the test process, which raises it
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    emitter.emit({"e": "stopped", **outcome}, stamp="t")
    done.set()
    flusher.join()
    emitter.flush()


def _tick(emitter: Emitter, due: float) -> float:
    """One tick, stamped now, with how late it is; returns the next tick's due time."""
    def stamped(event: dict[str, Any], now: float) -> None:
        event["lag"] = round(max(0.0, now - due), 4)
    now = emitter.emit({"e": "tick"}, stamp="t", then=stamped)
    return now if now - due > 1.0 else due  # stalled (the host, or SIGSTOP): measure on from here, no burst


def ticker(emitter: Emitter, stopping: Stopping) -> threading.Thread:
    """A thread that ticks every TICK_S (for engines without an event loop of their own)."""
    def tick() -> None:
        due = time.monotonic()
        while not stopping.wait(max(0.0, due + TICK_S - time.monotonic())):
            due = _tick(emitter, due + TICK_S)
    thread = threading.Thread(target=tick, name="tick", daemon=True)
    thread.start()
    return thread


async def async_ticker(emitter: Emitter, stopping: Stopping) -> None:
    """Ticks from the engine's own event loop: its lag is how late the loop ran a due callback,
    which is how late it stamped anything it saw."""
    import asyncio
    due = time.monotonic()
    while not stopping.is_set():
        due += TICK_S
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        due = _tick(emitter, due)


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    run(spec, sys.stdin, sys.stdout)


# --- the parent ------------------------------------------------------------------------------
class ObserverProcess:
    """One instrument's process, seen from the test process: its events go to ``on_event`` (on
    a reader thread), in order; ``horizon`` is the stamp of its last tick."""

    def __init__(self, kind: str, args: dict[str, Any], on_event: Callable[[dict[str, Any]], None], *,
                 name: str, max_duration_s: float = 1800.0) -> None:
        if kind not in ENGINES:
            raise ObserverError(f"no observer kind {kind!r} (known: {', '.join(ENGINES)})")
        self.kind = kind
        self.name = name
        self._spec = {"kind": kind, "args": args, "max_duration_s": max_duration_s}
        self._on_event = on_event
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stderr: deque[str] = deque(maxlen=40)
        self._first_tick = threading.Event()
        self._stopped = threading.Event()
        self.outcome: dict[str, Any] = {}
        self.horizon = float("-inf")  # every event stamped before this has been received
        self.lags: list[tuple[float, float]] = []  # (stamp, seconds late) of each tick
        self._lock = threading.Lock()

    def launch(self) -> "ObserverProcess":
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fulsk_chaos.probes.observer"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, env=env, start_new_session=True)
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(self._spec) + "\n")
        self._proc.stdin.flush()
        self._reader = threading.Thread(target=self._read, name=f"observer-{self.name}", daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, name=f"observer-{self.name}-stderr", daemon=True).start()
        return self

    def wait_started(self, timeout_s: float = 30.0) -> None:
        """Until the observer ticks: it runs, and what it stamps reaches us."""
        if not self._first_tick.wait(timeout_s) and not self._stopped.is_set():
            self.kill()
            raise ObserverError(f"the {self.name} observer did not start within {timeout_s:g} s: {self.stderr_tail()}")
        self.check()

    def start(self) -> "ObserverProcess":
        self.launch()
        self.wait_started()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            event = json.loads(line)
            kind = event.get("e")
            if kind == "tick":
                with self._lock:
                    self.lags.append((event["t"], event["lag"]))
                self.horizon = event["t"]
                self._first_tick.set()
                continue
            if kind == "stopped":
                self.outcome = event
                self.horizon = event["t"]
                self._stopped.set()
                continue
            self._on_event(event)
        self._first_tick.set()
        self._stopped.set()

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def stderr_tail(self) -> str:
        return " | ".join(list(self._stderr)[-8:]) or "(it printed nothing)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._stopped.is_set()

    def check(self) -> None:
        """Raise if the observer died before it was told to stop: its measurements end there."""
        if self._proc is None or not self._stopped.is_set() or self.outcome:
            return
        self._proc.wait(5)
        raise ObserverError(f"the {self.name} observer exited with status {self._proc.returncode} before it was "
                            f"stopped: {self.stderr_tail()}")

    def stop(self, wait_s: float, **params: Any) -> dict[str, Any]:
        """Tell the observer to stop (with ``params`` for its engine) and wait for it; returns
        what it said when it stopped. Bounded: a child that does not stop within ``wait_s`` is killed."""
        timeout_s = wait_s
        if self._proc is None:
            return {}
        if self._proc.poll() is None and self._proc.stdin is not None:
            try:
                self._proc.stdin.write(json.dumps({"cmd": "stop", **params}) + "\n")
                self._proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
        if not self._stopped.wait(timeout_s):
            self.kill()
            raise ObserverError(f"the {self.name} observer did not stop within {timeout_s:g} s: {self.stderr_tail()}")
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._reader is not None:
            self._reader.join(timeout_s)
        if not self.outcome:
            raise ObserverError(f"the {self.name} observer exited with status {self._proc.returncode} before it was "
                                f"stopped: {self.stderr_tail()}")
        return self.outcome

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def lags_between(self, start: float, end: float) -> list[float]:
        """Its scheduling lag, in seconds, at each tick stamped in ``start``..``end``."""
        with self._lock:
            return [lag for t, lag in self.lags if start <= t <= end]


class Observed:
    """An instrument seen from the test process: its observer process, started in two halves so
    that several start at once (``launch`` each, then ``wait_started`` each), and what it streams
    back applied by ``_event``. A subclass says what to run: ``KIND``, ``NAME`` and ``_spec()``."""
    KIND = ""
    observer: ObserverProcess | None = None
    max_duration_s: float = 1800.0

    @property
    def observer_name(self) -> str:
        return self.KIND

    def _spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def _event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def launch(self) -> "Observed":
        self.observer = ObserverProcess(self.KIND, self._spec(), self._event, name=self.observer_name,
                                        max_duration_s=self.max_duration_s).launch()
        return self

    def wait_started(self) -> None:
        assert self.observer is not None, "launch() first"
        self.observer.wait_started()

    def start(self) -> "Observed":
        self.launch()
        self.wait_started()
        return self

    def lags_s(self, start: float, end: float) -> list[float]:
        """The observer's scheduling lag at each of its ticks in ``start``..``end`` (seconds)."""
        return self.observer.lags_between(start, end) if self.observer is not None else []


if __name__ == "__main__":
    main()

"""Service faults: kill (any signal), stop, pause, volume loss - each with the rollback that undoes it.

A fault's ``ended_at`` is when its rollback finished and the target passed its health check
again, i.e. when the dependency is back: recovery is measured from there.
"""
from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..stack import Stack


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class FaultRecord:
    kind: str
    target: str
    started_at: str
    started: float                  # time.monotonic(), for measuring against probe samples
    ended_at: str | None = None
    ended: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started")
        data.pop("ended")
        data["duration_s"] = round(self.ended - self.started, 3) if self.ended is not None else None
        return data


class Fault:
    """An injected fault; use as a context manager, or call ``rollback()``. Rolling back twice is a no-op."""

    def __init__(self, record: FaultRecord, rollback: Callable[[], None]) -> None:
        self.record = record
        self._rollback: Callable[[], None] | None = rollback

    @property
    def started(self) -> float:
        return self.record.started

    @property
    def ended(self) -> float:
        if self.record.ended is None:
            raise RuntimeError(f"{self.record.kind} of {self.record.target} has not been rolled back")
        return self.record.ended

    def rollback(self) -> None:
        if self._rollback is None:
            return
        undo, self._rollback = self._rollback, None
        undo()
        self.record.ended = time.monotonic()
        self.record.ended_at = _now_iso()

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()


class Faults:
    def __init__(self, stack: Stack, journal: list[FaultRecord] | None = None) -> None:
        self.stack = stack
        self.journal = journal if journal is not None else []
        self._active: list[Fault] = []

    def _inject(self, kind: str, target: str, do: Callable[[], None], undo: Callable[[], None],
                **details: Any) -> Fault:
        self.stack.service(target)  # fail on an unknown target before anything happens
        record = FaultRecord(kind, target, _now_iso(), time.monotonic(), details=details)
        do()
        fault = Fault(record, undo)
        self.journal.append(record)
        self._active.append(fault)
        return fault

    def kill(self, target: str, sig: int = signal.SIGKILL) -> Fault:
        """Signal every process of ``target`` (SIGKILL: it is gone); rollback starts it again."""
        def undo() -> None:
            self.stack.service(target).stop()
            self.stack.start_service(target)
        return self._inject("kill", target, lambda: self.stack.kill(target, sig), undo,
                            signal=signal.Signals(sig).name)

    def stop(self, target: str, grace_s: float | None = None) -> Fault:
        """Stop ``target`` gracefully (its stop signal, SIGKILL after the grace); rollback starts it."""
        return self._inject("stop", target, lambda: self.stack.stop_service(target, grace_s),
                            lambda: self.stack.start_service(target))

    def pause(self, target: str) -> Fault:
        """Freeze ``target`` (SIGSTOP): it holds its connections and answers nothing; rollback SIGCONTs."""
        def undo() -> None:
            self.stack.resume(target)
            self.stack.wait_healthy(target)
        return self._inject("pause", target, lambda: self.stack.pause(target), undo, signal="SIGSTOP")

    def lose_volume(self, target: str) -> Fault:
        """Remove ``target``'s container and delete its data volume (Docker only): the data is gone.

        The rollback starts it on a new, empty volume: what recovery has to work from is what
        disaster recovery restores, not what was on the disk.
        """
        service = self.stack.service(target)
        if not hasattr(service, "lose_volume"):
            raise NotImplementedError(f"volume loss needs a container provider; {target} runs as a local process")
        return self._inject("volume-loss", target, service.lose_volume,
                            lambda: self.stack.start_service(target), volume=service.volume)

    def rollback_all(self) -> list[str]:
        """Undo every fault still active, newest first; report what could not be undone."""
        errors = []
        while self._active:
            fault = self._active.pop()
            try:
                fault.rollback()
            except Exception as exc:  # noqa: BLE001 - the remaining rollbacks must still run
                errors.append(f"rollback of {fault.record.kind} {fault.record.target}: {exc}")
        return errors

"""The one injector: every fault goes through it, is journaled, and is always rolled back.

Rolled back on success and on failure (the ``Fault`` is a context manager, and ``rollback_all``
undoes whatever a scenario left active); a runner killed mid-fault leaves its paused services
and toxics to the stack's reaper, which takes the whole stack down.
"""
from __future__ import annotations

import enum
import inspect
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..errors import FaultError, InstrumentError
from .catalogue import Catalogue, FaultKind, Rollback
from .conditions import Watcher
from .kinds import CATALOGUE

if TYPE_CHECKING:
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
    ended: float | None = None      # when the rollback finished: the target is healthy again
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    rollback_error: str | None = None

    @property
    def condition(self) -> dict[str, Any] | None:
        """Whether, when and how the fault reached its condition (None until it is rolled back)."""
        return self.details.get("condition")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("started")
        data.pop("ended")
        data["params"] = {k: _json_value(v) for k, v in self.params.items()}
        data["duration_s"] = round(self.ended - self.started, 3) if self.ended is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FaultRecord":
        """A record read back (e.g. from another process): its times are relative, its duration kept."""
        duration = data.get("duration_s")
        return cls(data["kind"], data["target"], data["started_at"], 0.0, data.get("ended_at"), duration,
                   data.get("params") or {}, data.get("details") or {}, data.get("rollback_error"))


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name  # signal.SIGTERM -> "SIGTERM"
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


class Fault:
    """An injected fault; use as a context manager, or call ``rollback()``. Rolling back twice is a no-op.

    ``handle`` is what the fault kind returned: its rollback, and for some kinds what they made
    (a flood's fleet, whose acknowledged readings the ledger must then find).
    """

    def __init__(self, record: FaultRecord, rollback: Rollback, subjects: tuple[str, ...],
                 verify: Callable[["Fault"], None] | None = None, watcher: Watcher | None = None) -> None:
        self.record = record
        self.handle = rollback
        self.subjects = subjects
        self._rollback: Rollback | None = rollback
        self._verify = verify
        self._watcher = watcher

    @property
    def active(self) -> bool:
        return self._rollback is not None

    @property
    def started(self) -> float:
        return self.record.started

    @property
    def ended(self) -> float:
        if self.record.ended is None:
            raise FaultError(f"{self.record.kind} of {self.record.target} has not been rolled back")
        return self.record.ended

    def until_reached(self, timeout_s: float) -> bool:
        """Wait until the fault has reached its condition (True), for at most ``timeout_s``: what
        reacts to an incident (a runbook, an operator) acts once there is one."""
        return self._watcher.wait(timeout_s) if self._watcher is not None else False

    def rollback(self) -> None:
        if self._rollback is None:
            return
        undo, self._rollback = self._rollback, None
        if self._watcher is not None:
            self._watcher.stop()  # measured while the fault is still active
        try:
            undo()
        except BaseException as exc:
            self.record.rollback_error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.record.ended = time.monotonic()
            self.record.ended_at = _now_iso()
            if self._watcher is not None:
                self.record.details["condition"] = self._watcher.finish()
        details = getattr(undo, "details", None)
        if callable(details):  # what a client fault did: messages sent, clients connected...
            self.record.details.update(details())
        if self._verify is not None:
            self._verify(self)

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.rollback()


def _effective(kind: "FaultKind", params: dict[str, Any]) -> dict[str, Any]:
    """The parameters the fault runs with, defaults included (so the journal says SIGKILL)."""
    signature = inspect.signature(kind.inject)
    try:
        bound = signature.bind(None, "", **params)
    except TypeError:
        names = list(signature.parameters)[2:]
        raise FaultError(f"{kind.name} takes {', '.join(names) or 'no parameters'}; got {', '.join(params)}") from None
    bound.apply_defaults()
    return dict(list(bound.arguments.items())[2:])


class FaultInjector:
    def __init__(self, stack: "Stack", journal: list[FaultRecord] | None = None,
                 catalogue: Catalogue | None = None) -> None:
        self.stack = stack
        self.journal = journal if journal is not None else []
        self.catalogue = catalogue if catalogue is not None else CATALOGUE
        self._active: list[Fault] = []

    @property
    def active(self) -> list[Fault]:
        """The faults injected and not rolled back yet."""
        return [f for f in self._active if f.active]

    def supported(self, kind: str, target: str) -> bool:
        fault_kind = self.catalogue[kind]
        return fault_kind.portable or not fault_kind.on_service or kind in self.stack.service(target).fault_kinds

    def refusal(self, kind: str, target: str, states: dict[str, str] | None = None) -> str | None:
        """Why ``kind`` cannot act on ``target`` as it is now (None: it can). ``states`` keeps the
        services' states already asked for across calls: on Docker each ask is a call to the engine."""
        fault_kind = self.catalogue[kind]
        if not fault_kind.on_service or fault_kind.acts_on is None:
            return None
        states = {} if states is None else states
        if target not in states:
            states[target] = self.stack.service(target).state()
        return fault_kind.refusal(target, states[target])

    def applicable(self, kind: str, target: str, states: dict[str, str] | None = None) -> bool:
        """Whether ``kind`` can act on ``target`` now: supported, and the target in a state it acts on."""
        return self.supported(kind, target) and self.refusal(kind, target, states) is None

    def inject(self, kind: str, target: str, **params: Any) -> Fault:
        """Inflict ``kind`` on ``target``; the returned Fault rolls it back (as a context manager too)."""
        fault_kind = self.catalogue[kind]
        fault_kind.check_target(self.stack, target)  # only what this run started, on loopback
        if fault_kind.on_service:
            service = self.stack.service(target)  # an unknown target fails before anything happens
            if not self.supported(kind, target):
                portable = sorted(k for k, v in self.catalogue.items() if v.on_service and v.portable)
                raise FaultError(f"{kind} is not supported on the {service.provider} provider (it supports: "
                                 f"{', '.join(portable + sorted(service.fault_kinds))})")
            if refusal := self.refusal(kind, target):
                raise FaultError(refusal)
        effective = _effective(fault_kind, params)
        # its baseline measured before anything happens; its checks run from the injection on
        watcher = (Watcher(fault_kind.condition, self.stack, target, effective)
                   if fault_kind.condition is not None else None)
        record = FaultRecord(kind, target, _now_iso(), time.monotonic(), params=effective)
        self.journal.append(record)  # journaled first: a fault that half-happened is on record
        if watcher is not None:
            watcher.start(record.started)
        try:
            rollback = fault_kind(self.stack, target, **params)
        except Exception as exc:
            record.details["inject_error"] = f"{type(exc).__name__}: {exc}"
            record.ended, record.ended_at = time.monotonic(), _now_iso()
            if watcher is not None:
                watcher.stop()
                record.details["condition"] = watcher.finish()
            raise
        if watcher is not None:
            watcher.injected(rollback)
        fault = Fault(record, rollback, fault_kind.subjects(target), verify=self._verify, watcher=watcher)
        self._active.append(fault)
        return fault

    def _verify(self, fault: Fault) -> None:
        """Rollback is verified, not assumed: the stack is as it was started, except for what
        faults still active hold. The check goes into the journal; a leftover fails the rollback."""
        held = {s for f in self._active if f.active for s in f.subjects}
        try:
            problems = [p for subject, p in self.stack.leftovers() if subject not in held]
        except InstrumentError:
            raise  # not verified, and not the stack's doing: the heal restarts the instrument
        except Exception as exc:  # noqa: BLE001 - not verified is not clean
            problems = [f"the check itself failed: {type(exc).__name__}: {exc}"]
        fault.record.details["rollback_verified"] = {"clean": not problems, "problems": problems,
                                                     "other_faults_active": sorted(held)}
        if problems:
            fault.record.rollback_error = "left behind: " + "; ".join(problems)
            raise FaultError(f"rollback of {fault.record.kind} on {fault.record.target} left the stack unclean: "
                             f"{'; '.join(problems)}")

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

"""What a scenario measures, one dataclass per family of figures: the record takes them whole
(``record.measure(LedgerFigures(...))``), the report, the journal and the trends read them back
as attributes, so a misspelt figure is an error where it is written, not a blank cell in a
report. results.json carries them as flat keys under each scenario's ``measurements``, a phased
family's keys prefixed with its phase (``after_p95_ms``); ``schema()`` is their JSON Schema,
and results.json names its version (``SCHEMA``).
"""
from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Iterable, TypeVar

SCHEMA = "fulsk-chaos/results/2"
F = TypeVar("F", bound="Figures")


def optional() -> Any:
    """A figure that is left out of results.json when it was not measured (None)."""
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True)
class Figures:
    phased: ClassVar[bool] = False  # keys are "{phase}_{name}" ("{name}" for the phase "")

    def to_json(self) -> dict[str, Any]:
        phase = getattr(self, "phase", "") if self.phased else ""
        prefix = f"{phase}_" if phase else ""
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "phase" and not (getattr(self, f.name) is None and f.metadata.get("optional"))}

    def merged(self: F, later: F) -> F:
        """This family measured again: what the later measurement set replaces what this one had."""
        return replace(self, **{f.name: getattr(later, f.name) for f in fields(later)
                                if getattr(later, f.name) is not None or not f.metadata.get("optional")})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "phase"]


@dataclass(frozen=True)
class LedgerFigures(Figures):
    """Every reading the broker acknowledged against what the database holds (checks.ledger)."""
    sent: int  # readings the fleet published
    acked: int  # of them acknowledged by the broker (QoS 1)
    stored: int  # readings of the fleet the database holds
    lost: int  # acknowledged, never stored
    unexpected: int  # stored, never sent
    duplicates: int  # stored more than once
    altered: int  # stored with another value than was sent
    unacked_stored: int  # stored though the broker never acknowledged them (allowed: QoS 1 may deliver)
    load_acked: int | None = optional()  # readings the background load's inverters had acknowledged
    load_lost: int | None = optional()  # of them lost


@dataclass(frozen=True)
class RecoveryFigures(Figures):
    """Time from the rollback (or a runbook's trigger) to users served again and ingest caught up."""
    recovery_s: float | None  # the later of the two below (null: never within the wait)
    recovery_target_s: float  # what it is held to (recovery.target_s, a runbook's target)
    api_recovery_s: float | None = optional()  # until health, API and fresh answers held for streak_s
    ingest_recovery_s: float | None = optional()  # until the broker's backlog was stored


@dataclass(frozen=True)
class FaultWindowFigures(Figures):
    """How users were answered while the fault held (checks.window)."""
    error_rate: float | None  # the probed API path's errors while the fault held
    p95_ms: float | None  # its latency
    p99_ms: float | None
    read_p95_ms: float | None  # every read users made (latest, history, list)
    read_error_rate: float | None
    max_ms: float | None
    unanswered: int  # requests that never got an answer (hangs)
    fault_samples: int  # probe samples in the window
    health_detect_s: float | None  # until /health reported the faulted dependency down
    health_reported_down: int
    acked_during_fault: int  # readings the broker acknowledged while it held
    fault_host: dict[str, Any] | None = optional()  # the host's pressure while the fault held


@dataclass(frozen=True)
class SteadyFigures(Figures):
    """One steady-state window (checks.steady): before, during, after."""
    phased: ClassVar[bool] = True
    phase: str
    p95_ms: float | None
    error_rate: float | None
    staleness_p95_s: float | None  # how far answers' newest reading was behind the broker
    live_delay_p95_ms: float | None  # broker acknowledgement to the dashboard's live feed
    host: dict[str, Any] | None = optional()  # the host's pressure over the window
    unsettled: list[str] | None = optional()  # why earlier attempts before the method were not steady
    extended: list[str] | None = optional()  # the percentiles that broke before the window was extended
    remeasured: dict[str, Any] | None = optional()  # a window measured again on a stalled host


@dataclass(frozen=True)
class DbReadFigures(Figures):
    """The database's own statement counts over a window (checks.dbload)."""
    phased: ClassVar[bool] = True
    phase: str
    db_reads: int | None  # read statements (pg_stat_statements; null: not available)
    db_reads_by_statement: dict[str, int]


@dataclass(frozen=True)
class TimelineFigures(Figures):
    """The run second by second, for the report's chart (checks.timeline)."""
    # t0, t, api_p50_ms, api_p95_ms, error_rate, acked_per_s, delivered_per_s, staleness_p95_s, recovered_s
    series: dict[str, Any]


@dataclass(frozen=True)
class AlertFigures(Figures):
    """What the monitoring paged, and when (checks.alerts)."""
    alerts: dict[str, Any] | None = optional()  # per alert: fired and resolved after (s)
    alert_bounds_s: dict[str, float] | None = optional()  # the longest a page may take to fire and to resolve
    alert_notifications: list[dict[str, Any]] | None = optional()
    alerts_vs_users: dict[str, Any] | None = optional()  # pages against what a ramp's users measured
    alerts_not_judged: str | None = optional()  # why the declared alerts were not judged


@dataclass(frozen=True)
class BlindSpotFigures(Figures):
    """Per fault, the harm users and inverters suffered beside the pages it raised (checks.blindspots):
    fault, status (blind spot, ok, noise, brief, quiet, unmonitored), why, bound_s, harms, pages."""
    blind_spots: list[dict[str, Any]]


@dataclass(frozen=True)
class RestoreFigures(Figures):
    """A restore from the ops guide's backups (drills.restore)."""
    scripts: list[dict[str, Any]] | None = optional()  # each backup tool run: arguments, exit, seconds
    restore_s: float | None = optional()
    rescued: str | None = optional()
    lost_at: str | None = optional()
    loss_took_s: float | None = optional()
    accident: dict[str, Any] | None = optional()
    backup_status: dict[str, Any] | None = optional()
    wal_archived: dict[str, Any] | None = optional()
    rto_s: float | None = optional()
    rto_target_s: float | None = optional()
    rto_margin_s: float | None = optional()


@dataclass(frozen=True)
class RpoFigures(Figures):
    """What a total loss restored from a backup lost (checks.restore.Rpo)."""
    rpo_s: float  # the span of acknowledged readings lost
    rpo_target_s: float
    rpo_margin_s: float
    lost_in_rpo: int  # readings lost within it (allowed)


@dataclass(frozen=True)
class PointInTimeFigures(Figures):
    """A point-in-time recovery (checks.restore.PointInTime)."""
    recovery_target: str  # the time recovered to (ISO 8601)
    discarded_after_target: int  # committed after it: discarded, as asked


@dataclass(frozen=True)
class RunbookFigures(Figures):
    """A runbook of the ops guide run against its trigger (runbooks)."""
    runbook: str | None = optional()
    runbook_title: str | None = optional()
    case: str | None = optional()
    provider: str | None = optional()
    recovery_margin_s: float | None = optional()
    runbook_s: float | None = optional()
    users_back_s: float | None = optional()
    drift: list[dict[str, Any]] | None = optional()
    findings: dict[str, Any] | None = optional()  # what the diagnostics named (the slow dependency, the attacker)
    replication_at_failure: Any = optional()
    backend_instances_through_frontend: dict[str, int] | None = optional()
    scaling_before_after: dict[str, Any] | None = optional()


@dataclass(frozen=True)
class IncidentFigures(Figures):
    """An alert's incident replayed (runbooks.replay): fault, page, runbook, recovery, resolution;
    each time from the fault (diagnose: from the page), None where the chain never got there."""
    incident_alert: str
    incident_severity: str
    incident_runbook: str
    incident_case: str
    detect_s: float | None = optional()
    diagnose_s: float | None = optional()
    recover_s: float | None = optional()
    resolve_s: float | None = optional()
    incident_targets: dict[str, float] | None = optional()
    paged_channels: list[str] | None = optional()      # where the page went
    fix_steps: list[dict[str, Any]] | None = optional()  # the runbook's fix steps: name and outcome
    incident_in_time: bool | None = optional()            # every link within its target


@dataclass(frozen=True)
class LoadWindowFigures(Figures):
    """Locust's figures over one window of a load run, per request group (load.judge)."""
    phased: ClassVar[bool] = True
    phase: str
    # per group (page load, api, http, websocket, mqtt publish): count, failures, error_rate, p50_ms, p95_ms,
    # p99_ms, max_ms, throughput_rps
    load: dict[str, Any]
    resources: dict[str, Any] | None = optional()  # each service's CPU and memory over the window
    load_window_s: float | None = optional()


@dataclass(frozen=True)
class LoadFigures(Figures):
    """A load run as a whole (drills.load, chaos under load)."""
    load_profile: str | None = optional()
    host_stall_share: dict[str, float] | None = optional()
    load_baselines_during_faults: dict[str, Any] | None = optional()
    locust: list[dict[str, Any]] | None = optional()
    db_statements: list[dict[str, Any]] | None = optional()
    baseline: str | None = optional()  # what was done with the profile's history: created, compared, kept
    baseline_not_compared: str | None = optional()


@dataclass(frozen=True)
class StressFigures(Figures):
    """The stress ramp's knee (load.knee), healthy or under a fault (load.under_fault)."""
    capacity_rps: float | None = optional()
    capacity_bracket_rps: list[float | None] | None = optional()
    knee_resolution: float | None = optional()
    first_broken: dict[str, Any] | None = optional()
    search_ended: str | None = optional()
    steps: list[dict[str, Any]] | None = optional()
    capacity_vs_baseline: dict[str, Any] | None = optional()
    capacity_not_compared: str | None = optional()
    under_fault: dict[str, Any] | None = optional()
    healthy_capacity: dict[str, Any] | None = optional()
    capacity_ratio: float | None = optional()
    capacity_ratio_bracket: list[float | None] | None = optional()
    capacity_ratio_not_computed: str | None = optional()


@dataclass(frozen=True)
class ScheduleFigures(Figures):
    """A fault schedule searched or replayed (drills.schedule_search)."""
    # profile, seed, examples, steps_run, minimal_failing_schedule, failure, replays, replay_failures,
    # replay_command, search_command, reproduced, nondeterministic (or: replayed)
    schedule: dict[str, Any]
    # reachable states (drills.reach) reached / declared, the first schedule that reached each, and
    # the items reached over time
    coverage: dict[str, Any] | None = optional()
    # what the search found worth keeping: drills.corpus entries (fulsk-chaos corpus add promotes them)
    corpus: list[dict[str, Any]] | None = optional()


@dataclass(frozen=True)
class ClientFigures(Figures):
    """What misbehaving MQTT clients did (faults.clients)."""
    storm_connected: int | None = optional()
    garbage_sent: int | None = optional()


FAMILIES: tuple[type[Figures], ...] = (
    LedgerFigures, RecoveryFigures, FaultWindowFigures, SteadyFigures, DbReadFigures, TimelineFigures,
    AlertFigures, BlindSpotFigures, RestoreFigures, RpoFigures, PointInTimeFigures, RunbookFigures, IncidentFigures, LoadWindowFigures, LoadFigures,
    StressFigures, ScheduleFigures, ClientFigures)


class SchemaError(ValueError):
    """Measurements that are not the documented figures."""


class Measured:
    """A scenario's figures, by family (and phase): what the record holds, or what is read back
    from results.json."""

    def __init__(self, figures: Iterable[Figures] = ()) -> None:
        self._by: dict[tuple[type, str], Figures] = {}
        self.unknown: dict[str, Any] = {}  # read back, of no family declared here (a plugin's own figures)
        for f in figures:
            self.add(f)

    def add(self, figures: Figures) -> None:
        if not isinstance(figures, Figures):
            raise TypeError(f"measure() takes figures (fulsk_chaos.figures), not {type(figures).__name__}")
        key = (type(figures), getattr(figures, "phase", ""))
        self._by[key] = self._by[key].merged(figures) if key in self._by else figures

    def get(self, family: type[F], phase: str = "") -> F | None:
        return self._by.get((family, phase))  # type: ignore[return-value]

    def phases(self, family: type[F]) -> dict[str, F]:
        return {phase: f for (t, phase), f in self._by.items() if t is family}  # type: ignore[misc]

    def __iter__(self):
        return iter(self._by.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Measured) and self._by == other._by and self.unknown == other.unknown

    def __bool__(self) -> bool:
        return bool(self._by or self.unknown)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.unknown)
        for f in self._by.values():
            out.update(f.to_json())
        return out

    @classmethod
    def read(cls, measurements: dict[str, Any], *, strict: bool = False) -> "Measured":
        """Figures from results.json's keys; ``strict``: a key no family declares is an error
        (else it is kept as it was, in ``unknown``: a plugin's own figures, a run written by
        another version)."""
        found: dict[tuple[type, str], dict[str, Any]] = {}
        unknown = []
        for key, value in measurements.items():
            where = _family_of(key)
            if where is None:
                unknown.append(key)
                continue
            family, phase, name = where
            found.setdefault((family, phase), {})[name] = value
        if strict and unknown:
            raise SchemaError(f"measurements no family of figures declares: {', '.join(sorted(unknown))}")
        measured = cls()
        measured.unknown = {k: measurements[k] for k in unknown}
        for (family, phase), values in found.items():
            kwargs = {f.name: values.get(f.name) for f in fields(family) if f.name != "phase"}
            measured.add(family(**({"phase": phase} if family.phased else {}), **kwargs))
        return measured


def _exact() -> dict[str, type[Figures]]:
    keys: dict[str, type[Figures]] = {}
    for family in FAMILIES:
        if not family.phased:
            for name in family.names():
                if name in keys:
                    raise AssertionError(f"{name} is a figure of both {keys[name].__name__} and {family.__name__}")
                keys[name] = family
    return keys


EXACT = _exact()
SUFFIXES = sorted(((name, family) for family in FAMILIES if family.phased for name in family.names()),
                  key=lambda p: -len(p[0]))  # longest first: "_live_delay_p95_ms" before "_p95_ms"


def _family_of(key: str) -> tuple[type[Figures], str, str] | None:
    if key in EXACT:
        return EXACT[key], "", key
    for name, family in SUFFIXES:
        if key == name:
            return family, "", name
        if key.endswith("_" + name):
            return family, key[: -len(name) - 1], name
    return None


# --- the JSON Schema -------------------------------------------------------------------------------
_JSON = {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"},
         dict: {"type": "object"}, list: {"type": "array"}, type(None): {"type": "null"}}


def _json_type(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        parts = [_json_type(a) for a in typing.get_args(hint)]
        return {} if {} in parts else {"anyOf": parts}
    return dict(_JSON.get(origin or hint, {}))


def _properties(family: type[Figures]) -> dict[str, dict[str, Any]]:
    hints = typing.get_type_hints(family)
    return {f.name: {**_json_type(hints[f.name]), "description": f"{family.__name__}: "
                     + (family.__doc__ or "").split("\n")[0]}
            for f in fields(family) if f.name != "phase"}


def schema() -> dict[str, Any]:
    """The JSON Schema of a scenario's ``measurements`` in results.json (``SCHEMA``)."""
    properties: dict[str, Any] = {}
    patterns: dict[str, Any] = {}
    for family in FAMILIES:
        for name, prop in _properties(family).items():
            if family.phased:
                patterns[f"^(.+_)?{re.escape(name)}$"] = prop
            else:
                properties[name] = prop
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA,
            "title": "a scenario's measurements in fulsk-chaos results.json", "type": "object",
            "properties": properties, "patternProperties": patterns, "additionalProperties": False}

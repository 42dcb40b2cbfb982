"""The one configuration: ``[tool.fulsk-chaos]`` in pyproject.toml, or a TOML file of the same keys.

Defaults are the operations guide's numbers. A bad configuration is refused before anything
starts, with one line naming the key and what is wrong with it.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["ConfigError", "Settings", "load", "from_mapping", "as_dict"]


@dataclass(frozen=True)
class BaselineSettings:
    """Performance baselines (ops guide, 'Performance Baselines')."""
    api_response_ms: float = 500.0
    page_load_ms: float = 2000.0
    db_query_ms: float = 100.0
    websocket_latency_ms: float = 50.0


@dataclass(frozen=True)
class AlertSettings:
    """Alert thresholds (ops guide, 'Application Metrics')."""
    http_response_ms: float = 2000.0
    error_rate: float = 0.05
    cpu_percent: float = 80.0     # of the machine's cores, per service (ops guide, 'System Metrics')
    memory_percent: float = 85.0  # of the machine's memory, per service


@dataclass(frozen=True)
class RecoverySettings:
    target_s: float = 30.0  # from the faulted dependency being back to the stack in steady state


@dataclass(frozen=True)
class SteadyStateSettings:
    window_s: float = 3.0   # how long the hypothesis is observed before and after a fault
    streak_s: float = 2.0   # healthy for this long without a break = steady again
    # The newest reading users are served may lag the newest one the broker acknowledged by this
    # much (five fleet intervals at the default 0.2 s): a stalled ingest fails even while /health is ok.
    max_staleness_s: float = 1.0
    # Statements the database runs per user read (pg_stat_statements): one each is a cache miss;
    # more is amplification - a stampede, or a refill that reads far more than was asked.
    max_db_reads_per_read: float = 1.5
    # Windows tried before the fault until one holds: a stack still settling from what ran before
    # (a blip on a shared stack) is measured once more; one that stays unsteady is not faulted.
    before_attempts: int = 2
    # Windows more before the fault while only a latency percentile breaks on a stalled host (see
    # ValiditySettings): nothing is at stake yet, so the experiment waits for a quiet host (a
    # neighbour's flood on a 2-core CI host) rather than calling the run invalid at once.
    quiet_host_windows: int = 4
    # Windows a steady state after the method is judged over, in all, when the first fails on a
    # latency percentile alone (api p95, live feed p95): one short stall of a small host breaks a
    # percentile of 3 s. The first window's breaks are in results.json (``after_extended``).
    percentile_windows: int = 2


@dataclass(frozen=True)
class ValiditySettings:
    """When a window measured the host or the harness rather than the stack. A window that broke
    a latency expectation while the host was stalled (Linux PSI, "some": the share of the window
    some task waited) or the observers ran late beyond these is measured once more; one that stays
    so is ``invalid``, with the figures, never a failure of the stack."""
    max_cpu_stall: float = 0.2      # waiting for a CPU
    max_io_stall: float = 0.5       # waiting for I/O (a database's fsyncs count here too)
    max_memory_stall: float = 0.2   # waiting for memory (reclaim)
    # The observers' own scheduling lag (p99: how late they sent a due request, stamped an arrival
    # or published a reading): past it they measured their own queueing.
    max_observer_lag_ms: float = 50.0


@dataclass(frozen=True)
class LedgerSettings:
    # The backend contract stores each (inverter_id, seq) once. A backend that documents
    # at-least-once storage may set this, and duplicates are then reported but not failed.
    allow_duplicates: bool = False


@dataclass(frozen=True)
class FleetSettings:
    inverters: int = 10
    sites: int = 2
    interval_s: float = 0.2  # per inverter


@dataclass(frozen=True)
class ProbeSettings:
    interval_s: float = 0.1
    api_path: str = ""  # empty: the backend contract's inverter list (reads.listing)
    # Unset: the HTTP response-time alert threshold, so a request the alert would fire on is a hang.
    timeout_s: float | None = None


@dataclass(frozen=True)
class BackendSettings:
    """The backend under test. An empty command runs the reference backend in fixtures/."""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    contract: str = ""  # its contract file (how it is spoken to and read); empty: the reference backend's


@dataclass(frozen=True)
class DockerSettings:
    """Images for ``--stack docker``: production's from a registry, or those built offline."""
    offline: bool = False  # True: the images `fulsk-chaos images build --offline` makes
    images: dict[str, str] = field(default_factory=dict)  # per service, e.g. backend = "you/fulsk:1.4"


# Stack switches that break the stack's own operations (not the backend) in realistic ways, so
# the framework can prove its recovery drills catch them (stack.bugs = ["name", ...]).
STACK_BUGS = {
    "wal-archive-off": "PostgreSQL's archive_command is `true`: every WAL segment is reported archived and "
                       "none is kept, so point-in-time recovery silently has nothing to replay",
}


@dataclass(frozen=True)
class StackSettings:
    start_timeout_s: float = 60.0
    stop_grace_s: float = 10.0
    bugs: list[str] = field(default_factory=list)  # names from STACK_BUGS; none by default
    # A streaming-replication standby of PostgreSQL (postgres-standby), for the Database Failover runbook
    standby: bool = False
    # Prometheus, Alertmanager and exporters with the ops guide's alert rules, for scenarios that
    # declare the alerts their fault must fire (and those that must stay silent)
    monitoring: bool = False


@dataclass(frozen=True)
class MonitoringSettings:
    """How the stack renders the ops guide's alert rules (fixtures/monitoring). Deployed, they use
    5 m windows and 2 m delays; a drill's faults last seconds, so windows and delays are seconds."""
    scrape_interval_s: float = 0.5
    evaluation_interval_s: float = 0.5
    window_s: float = 5.0          # every rate() window
    for_s: float = 1.0             # the application's and services' alerts
    for_sustained_s: float = 60.0  # the host's (CPU, memory, disk): sustained pressure, not a drill's spike
    group_wait_s: float = 0.5      # Alertmanager: a new alert is notified this soon
    group_interval_s: float = 1.0  # and a change (resolved) in a group this often
    repeat_interval_s: float = 3600.0  # a page still firing is sent again this often
    # The ops guide's "Alert Escalation": the channels each severity reaches, and no other
    escalation: dict[str, list[str]] = field(default_factory=lambda: {
        "low": ["slack"], "medium": ["email", "slack"], "high": ["email", "sms", "slack"],
        "critical": ["pagerduty", "phone"]})
    # FulskDataCollectionStopped: no reading stored for this long (the fleet sends every 0.2 s per
    # inverter: 15 intervals; deployed, 300 s against inverters reporting every minute)
    stale_after_s: float = 3.0
    # FulskIngestBehind: readings stored this late (users read them as stale: the freshness bound
    # is 1 s; deployed, 60 s against minute-long reporting intervals)
    behind_after_s: float = 2.0
    # FulskIngestBacklog: readings received and not yet stored (the drill's fleet sends about 50 a
    # second: 2 s of it; deployed, 1000)
    backlog_max: int = 100
    # The alert rules' template (empty: fixtures/monitoring/alerts.yml.template): an operator's own
    # rules, or a copy without some of them, to see which harm then pages nobody (checks.blindspots)
    rules: str = ""


@dataclass(frozen=True)
class IncidentTarget:
    """How soon each link of an incident's chain must hold, from the fault (the page, for diagnose)."""
    detect_s: float    # the fault to the first page
    diagnose_s: float  # the page to the runbook step that names the cause passing
    recover_s: float   # the fault to users served fresh, correct data again
    resolve_s: float   # the fault to the alert's resolved notification


def _default_incident_targets() -> dict[str, IncidentTarget]:
    """Drill timing (seconds-long windows and ``for:``, monitoring above): detect allows the
    slowest rule's condition (data collection: ``stale_after_s`` 3 s) plus its firing chain (about
    4.5 s) and a 2-core host's slack; recover is the service-restart runbook's 120 s for what pages
    a phone, resolve adds the rules' 5 s window and a group interval. Lower severities are allowed
    more, as their channels are read later. Deployed timing multiplies every figure (docs/incidents.md)."""
    return {"critical": IncidentTarget(15.0, 30.0, 120.0, 150.0),
            "high": IncidentTarget(15.0, 60.0, 300.0, 330.0),
            "medium": IncidentTarget(90.0, 300.0, 900.0, 960.0),
            "low": IncidentTarget(90.0, 600.0, 1800.0, 1860.0)}


@dataclass(frozen=True)
class IncidentSettings:
    """Incident replay (``nox -s incident``): alert, runbook and recovery, against a target per severity."""
    targets: dict[str, IncidentTarget] = field(default_factory=_default_incident_targets)

    def target(self, severity: str) -> IncidentTarget:
        if severity not in self.targets:
            raise ConfigError(f"incident.targets: no target for severity {severity!r} (known: "
                              f"{', '.join(self.targets)}): add [incident.targets.{severity or 'SEVERITY'}]")
        return self.targets[severity]


@dataclass(frozen=True)
class BackupSettings:
    """Backups and disaster recovery (ops guide, 'Backup & Recovery'); targets justified in docs/backup.md."""
    rto_s: float = 900.0           # a full restore of the reference data set: loss to fresh data served
    rpo_dump_s: float = 86400.0    # daily dumps: up to a day of readings may be lost
    rpo_wal_s: float = 60.0        # with continuous WAL archiving
    archive_timeout_s: float = 30.0  # PostgreSQL switches (and archives) a WAL segment at least this often
    retention_days: int = 30       # local backups
    archive_retention_days: int = 365  # monthly archives
    # A reading is committed a moment after the broker acknowledged it: a point-in-time restore is
    # held to keep what was acknowledged this long before the target.
    commit_margin_s: float = 1.0
    restore_timeout_s: float = 900.0  # a restore that takes longer is stopped and reported


@dataclass(frozen=True)
class FaultSettings:
    # Faults act on loopback only; a stack whose services live elsewhere must opt in explicitly.
    allow_non_loopback: bool = False


@dataclass(frozen=True)
class ScheduleProfile:
    """Bounds of one Hypothesis search for failing fault schedules."""
    max_examples: int = 3     # schedules tried (shrinking a failure tries more)
    max_steps: int = 4        # rules per schedule (injections and heals)
    max_active: int = 2       # faults active at once
    fault_s: float = 2.0      # how long each injected fault stays before the next rule
    replays: int = 3          # times a shrunk failing schedule is replayed to confirm it
    kinds: list[str] = field(default_factory=list)    # fault kinds to draw from (empty: all searchable)
    targets: list[str] = field(default_factory=list)  # services or edges to fault (empty: all)
    # The share of schedules steered toward the reachable states not reached yet (drills.guide):
    # 0 draws every step at random, 1 steers every schedule.
    guidance: float = 0.0
    # A failure that reproduces in none of its replays is reported as nondeterministic, with its
    # evidence, and fails the search only when this is true.
    count_nondeterministic: bool = False
    shrink: bool = True  # shrink a failure to the smallest schedule (a benchmark of finding may skip it)


def _default_profiles() -> dict[str, ScheduleProfile]:
    return {"quick": ScheduleProfile(),  # CI: a few short schedules
            # the quarterly drill: longer and overlapping schedules, within the drill's 15 minutes
            "drill": ScheduleProfile(max_examples=8, max_steps=6, max_active=3, fault_s=3.0, replays=3, guidance=0.75),
            # nox -s explore: rounds of 8 schedules for as long as its time budget (--schedule-budget)
            "explore": ScheduleProfile(max_examples=8, max_steps=6, max_active=3, fault_s=3.0, replays=3,
                                       guidance=0.75)}


@dataclass(frozen=True)
class ReachSettings:
    """Thresholds of the reachable states a fault search reports (drills.reach)."""
    backlog: int = 400  # readings waiting for ingest that make a large backlog (8 s of the default fleet)
    behind: int = 50    # readings waiting as the database comes back that make "ingest still retrying"


@dataclass(frozen=True)
class DbLossSettings:
    down_s: float = 5.0


@dataclass(frozen=True)
class LoadSettings:
    """Locust load: profiles are files in loadtests/profiles (or paths); see loadtests/README.md."""
    profile: str = "weekly"          # the weekly load test (nox -s load)
    stress_profile: str = "stress"   # the monthly step ramp (nox -s stress)
    chaos_profile: str = "chaos"     # the background load of chaos under load (nox -s chaos)
    workers: int = 1                 # Locust worker processes on this machine
    baseline_dir: str = "reports/baselines"  # stored figures each run is compared with
    # A p95 or error rate worse than the stored baseline by more than this fraction fails the run...
    regression_tolerance: float = 0.2
    # ...and by more than these absolute amounts: below them a difference is noise on a shared machine.
    regression_floor_ms: float = 5.0
    regression_floor_error_rate: float = 0.01
    # A generator process busier than this fraction of its core measured the generator, not the
    # stack: the run is invalid.
    generator_max_cpu: float = 0.9
    # A host busier than this fraction of all its cores had none to spare for what the stack added
    # (the scale-up runbook's instances): the figures measured the host.
    host_max_cpu: float = 0.9
    # The stress search bisects between the last step that held and the first that broke until
    # (broken - held) / held is at most this: the capacity is known to within it.
    knee_resolution: float = 0.1


@dataclass(frozen=True)
class ScenarioSettings:
    fault_s: float = 5.0  # how long each catalogue scenario's fault stays active
    db_loss: DbLossSettings = field(default_factory=DbLossSettings)


@dataclass(frozen=True)
class Settings:
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    steady_state: SteadyStateSettings = field(default_factory=SteadyStateSettings)
    validity: ValiditySettings = field(default_factory=ValiditySettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    schedules: dict[str, ScheduleProfile] = field(default_factory=_default_profiles)
    reach: ReachSettings = field(default_factory=ReachSettings)
    scenarios: ScenarioSettings = field(default_factory=ScenarioSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    incident: IncidentSettings = field(default_factory=IncidentSettings)

    @property
    def hang_s(self) -> float:
        """A request unanswered for this long is a hang: the HTTP response-time alert threshold."""
        return self.alerts.http_response_ms / 1000

    @property
    def probe_timeout_s(self) -> float:
        return self.probe.timeout_s if self.probe.timeout_s is not None else self.hang_s


# Named tables whose entries a configuration adds to (or replaces one by one), not replaces wholesale.
_NAMED_DEFAULTS = {"schedules": _default_profiles(), "incident.targets": _default_incident_targets()}
# Values that may be zero; every other number must be strictly positive.
_MAY_BE_ZERO = {"alerts.error_rate", "load.regression_floor_ms", "load.regression_floor_error_rate"}
_MAY_BE_ZERO_IN_PROFILES = {"guidance", "replays"}  # [schedules.NAME]: unguided; no replay
# Top-level tables of a pyproject.toml that are not ours and may sit beside [tool.fulsk-chaos].
_PYPROJECT_TABLES = {"tool", "project", "build-system", "dependency-groups"}


def build(cls: type, data: Any, prefix: str = "", zero_ok: bool = False) -> Any:
    """A dataclass from a TOML table, every key checked (also used for load profiles)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'configuration'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known here: {', '.join(sorted(names))})")
        values[key] = _convert(hints[key], value, path, zero_ok)
    return cls(**values)


def _convert(hint: Any, value: Any, path: str, zero_ok: bool = False) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path, zero_ok)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # `X | None`: TOML has no null, so a value is an X
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner, value, path, zero_ok)
    if origin is list and typing.get_args(hint)[0] in (int, float):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of numbers, got {value!r}")
        return [_convert(typing.get_args(hint)[0], v, f"{path}[{i}]", zero_ok) for i, v in enumerate(value)]
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        return list(value)
    if origin is dict and dataclasses.is_dataclass(typing.get_args(hint)[1]):  # named tables, e.g. profiles
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table of tables, got {value!r}")
        item, defaults = typing.get_args(hint)[1], _NAMED_DEFAULTS.get(path, {})
        # an entry that is a default already keeps what the table does not say (e.g. one target of a severity)
        return {**defaults, **{k: build(item, {**(dataclasses.asdict(defaults[k]) if k in defaults else {}), **v}
                                          if isinstance(v, dict) else v, f"{path}.{k}") for k, v in value.items()}}
    if origin is dict and typing.get_origin(typing.get_args(hint)[1]) is list:  # e.g. escalation: lists by name
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table of lists, got {value!r}")
        return {k: _convert(typing.get_args(hint)[1], v, f"{path}.{k}") for k, v in value.items()}
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{path}: expected a table of strings, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if hint in (int, float):
        ok = isinstance(value, int) if hint is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{path}: expected {'an integer' if hint is int else 'a number'}, "
                              f"got {type(value).__name__} {value!r}")
        may_be_zero = zero_ok or path in _MAY_BE_ZERO or (path.startswith("schedules.") and
                                                          path.rsplit(".", 1)[-1] in _MAY_BE_ZERO_IN_PROFILES)
        if value < 0 or (value == 0 and not may_be_zero):
            raise ConfigError(f"{path}: must be {'zero or more' if may_be_zero else 'positive'}, "
                              f"got {value!r}")
        return hint(value)
    raise ConfigError(f"{path}: unsupported setting type {hint!r}")  # pragma: no cover - a bug of ours


def from_mapping(data: dict[str, Any]) -> Settings:
    settings = build(Settings, data, "")
    for name in ("load.generator_max_cpu", "load.host_max_cpu", "load.knee_resolution", "validity.max_cpu_stall",
                 "validity.max_io_stall", "validity.max_memory_stall"):
        section, key = name.split(".")
        if getattr(getattr(settings, section), key) > 1:
            raise ConfigError(f"{name}: a fraction between 0 and 1, got {getattr(getattr(settings, section), key)!r}")
    unknown = sorted(set(settings.stack.bugs) - set(STACK_BUGS))
    if unknown:
        raise ConfigError(f"stack.bugs: unknown switch {unknown[0]!r} (known: {', '.join(STACK_BUGS)})")
    if settings.alerts.error_rate > 1:
        raise ConfigError(f"alerts.error_rate: a fraction between 0 and 1, got {settings.alerts.error_rate!r}")
    for name, profile in settings.schedules.items():
        if profile.guidance > 1:
            raise ConfigError(f"schedules.{name}.guidance: a fraction between 0 and 1, got {profile.guidance!r}")
    return settings


def load(path: Path | str | None = None, search_from: Path | None = None) -> Settings:
    """Read the settings from ``path`` (a TOML file), else from the nearest pyproject.toml."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        data = _read(path)
        return _from_file(path, _table_of(path, data, explicit=True))
    start = search_from or Path.cwd()
    for directory in [start, *start.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return _from_file(candidate, _table_of(candidate, _read(candidate), explicit=False))
    return Settings()


def _table_of(path: Path, data: dict[str, Any], explicit: bool) -> Any:
    """The settings table of a file: ``[tool.fulsk-chaos]`` if it has one, else (for a file named
    with --chaos-config) its top level. Nothing of ours is silently ignored: settings at the top
    level beside a [tool.fulsk-chaos] table are refused."""
    tool = data.get("tool")
    if tool is not None and not isinstance(tool, dict):
        raise ConfigError(f"{path}: tool: expected a table, got {type(tool).__name__}")
    if tool is not None and "fulsk-chaos" in tool:
        stray = sorted(set(data) - _PYPROJECT_TABLES)
        if explicit and stray:
            raise ConfigError(f"{path}: {stray[0]}: a top-level key beside [tool.fulsk-chaos] would be ignored; "
                              f"put the settings either all at the top level or all under [tool.fulsk-chaos]")
        return tool["fulsk-chaos"]
    if not explicit:
        return {}  # a pyproject.toml without our table: the defaults
    settings = {k: v for k, v in data.items() if k not in _PYPROJECT_TABLES}
    if not settings and set(data) & _PYPROJECT_TABLES:
        raise ConfigError(f"{path}: no [tool.fulsk-chaos] table and no settings at the top level")
    return settings  # other tools' tables ([tool.black], ...) are theirs, not ours


def _from_file(path: Path, table: Any) -> Settings:
    try:
        return from_mapping(table)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def as_dict(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)

"""The backend contract as data: how a backend under test is spoken to and read, declared in one
TOML file per backend (``fixtures/backend/contract.toml`` for the reference backend) and read
with the configuration's strict checks (an unknown key or a wrong type is one line naming it).

The framework thinks in canonical readings - ``inverter_id``, ``seq``, ``site_id``, ``ts``
(epoch seconds), ``power_w``, ``energy_wh`` - and the contract translates: what an inverter
publishes (topic, field names, units, timestamp format), what each read users make returns
(a JSON path to the readings, the fields, their units), the live feed's messages, the SQL that
returns stored readings under canonical column names, the health payload, and what the backend
can do at all (capabilities). A backend without a sequence number is identified by inverter and
timestamp (``identity = "ts"``): a reading's key is then its timestamp in milliseconds.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import build
from .errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REFERENCE = FIXTURES / "backend" / "contract.toml"
CONTRACT_ENV = "FULSK_CONTRACT"  # how a load generator's processes get the contract: its JSON
CANONICAL = ("inverter_id", "seq", "site_id", "ts", "power_w", "energy_wh")
TIMESTAMPS = ("epoch_s", "epoch_ms", "iso8601")
POWER = {"W": 1.0, "kW": 1000.0}      # to watts
ENERGY = {"Wh": 1.0, "kWh": 1000.0}   # to watt-hours


def at(body: Any, path: str) -> Any:
    """The value at a dotted JSON path (``readings``, ``data.items``, ``0.ts``); ``""`` is the
    body itself. KeyError when it is not there."""
    value = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def to_epoch(value: Any, form: str) -> float:
    """A timestamp as the backend writes it, in epoch seconds."""
    if form == "iso8601" or isinstance(value, str):
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, datetime):
        return value.timestamp()
    number = float(value)
    return number / 1000 if form == "epoch_ms" else number


def from_epoch(seconds: float, form: str) -> Any:
    if form == "epoch_ms":
        return int(round(seconds * 1000))
    if form == "iso8601":
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return seconds


@dataclass(frozen=True)
class Fields:
    """Where each canonical field is, by name or dotted path; ``""``: the backend has none."""
    inverter_id: str = "inverter_id"
    seq: str = "seq"
    site_id: str = "site_id"
    ts: str = "ts"
    power_w: str = "power_w"
    energy_wh: str = "energy_wh"
    last_seen: str = ""  # a listing's: when the inverter was last heard from


@dataclass(frozen=True)
class Units:
    timestamp: str = "epoch_s"  # epoch_s | epoch_ms | iso8601
    power: str = "W"            # W | kW
    energy: str = "Wh"          # Wh | kWh


@dataclass(frozen=True)
class Publish:
    """What an inverter sends: MQTT topic and payload."""
    topic: str = "fulsk/inverters/{inverter_id}/telemetry"
    qos: int = 1
    fields: Fields = field(default_factory=Fields)
    units: Units = field(default_factory=Units)

    def payload(self, reading: dict[str, Any]) -> dict[str, Any]:
        """A canonical reading as the backend wants it published."""
        f, u = self.fields, self.units
        out: dict[str, Any] = {}
        for name in CANONICAL:
            wire = getattr(f, name)
            if not wire or name not in reading:
                continue
            value = reading[name]
            if name == "ts":
                value = from_epoch(value, u.timestamp)
            elif name == "power_w":
                value = round(value / POWER[u.power], 6)
            elif name == "energy_wh":
                value = round(value / ENERGY[u.energy], 7)
            out[wire] = value
        return out


@dataclass(frozen=True)
class Read:
    """One read users make: its path (``{inverter}``, ``{from}``, ``{to}`` filled in, times as
    epoch seconds or as the units say), where its readings are in the answer, and their fields."""
    path: str = ""
    items: str = ""      # a JSON path to the list of readings (history, listing); "" : the answer is one
    fields: Fields = field(default_factory=Fields)
    units: Units = field(default_factory=Units)
    absent_status: int = 404  # the status of "no reading yet" (latest)
    as_of: str = ""           # a JSON path to when the answer was computed (its timestamp unit), if it says
    max_age_s: float = 0.0    # how far behind its as_of (else its request) an answer may be: a cache's TTL

    def rows(self, body: Any) -> list[dict[str, Any]]:
        """The answer's readings in canonical form (only the fields it carries). KeyError or
        ValueError: the answer is not what the contract says."""
        found = at(body, self.items) if self.items else body
        if self.items and not isinstance(found, list):
            raise ValueError(f"{self.items!r} is not a list")
        return [self.canonical(row) for row in (found if self.items else [found])]

    def canonical(self, row: Any) -> dict[str, Any]:
        f, u = self.fields, self.units
        out: dict[str, Any] = {}
        for name in (*CANONICAL, "last_seen"):
            path = getattr(f, name)
            if not path:
                continue
            try:
                value = at(row, path)
            except KeyError:
                continue
            if name in ("ts", "last_seen"):
                value = to_epoch(value, u.timestamp)
            elif name == "power_w":
                value = float(value) * POWER[u.power]
            elif name == "energy_wh":
                value = float(value) * ENERGY[u.energy]
            elif name == "seq":
                value = int(value)
            elif name == "inverter_id":
                value = str(value)
            out[name] = value
        return out


@dataclass(frozen=True)
class Reads:
    latest: Read = field(default_factory=lambda: Read("/api/inverters/{inverter}/latest"))
    history: Read = field(default_factory=lambda: Read("/api/inverters/{inverter}/readings?from={from}&to={to}",
                                                       items="readings"))
    listing: Read = field(default_factory=lambda: Read("/api/inverters", items="inverters",
                                                       fields=Fields(last_seen="last_seen")))
    # per-site energy totals ("": none): never above what had been sent when it answered; below what the
    # broker had acknowledged when it was computed, it lags (checks.users.judge_generation)
    generation: Read = field(default_factory=lambda: Read("/api/generation", items="sites", as_of="computed_at",
                                                          max_age_s=0.5))


@dataclass(frozen=True)
class Feed:
    """The dashboard's live feed (WebSocket): where, and where a message carries its readings."""
    path: str = "/ws/readings"
    items: str = "readings"
    ignore: list[str] = field(default_factory=lambda: ["hello"])  # message types that carry none
    type_field: str = "type"
    fields: Fields = field(default_factory=Fields)
    units: Units = field(default_factory=Units)

    def rows(self, message: Any) -> list[dict[str, Any]]:
        """A message's readings in canonical form; none for a message of a type that carries none."""
        if isinstance(message, dict) and message.get(self.type_field) in self.ignore:
            return []
        return Read(self.path, self.items, self.fields, self.units).rows(message)


@dataclass(frozen=True)
class Ledger:
    """The truth in the database: ``query`` returns stored readings under canonical column names
    (``inverter_id``, ``seq`` or none, ``site_id``, ``ts`` as timestamptz, ``power_w``,
    ``energy_wh``), for the inverter ids in ``%(ids)s``."""
    query: str = ("SELECT inverter_id, seq, site_id, ts, power_w, energy_wh FROM readings "
                  "WHERE inverter_id = ANY(%(ids)s)")
    identity: str = "seq"  # seq | ts: what makes a reading itself, beside its inverter
    inverters: str = "SELECT DISTINCT inverter_id FROM readings"  # every inverter id stored
    newest: str = "SELECT max(ts) FROM readings"  # the time of the newest stored reading (runbooks check it)
    # an operator's accident a point-in-time restore undoes: delete every reading of site %(site)s
    delete_site: str = "DELETE FROM readings WHERE site_id = %(site)s"
    # the readings committed between %(after)s and %(before)s (a point-in-time restore discards them)
    committed: str = ("SELECT inverter_id, seq FROM readings WHERE pg_xact_commit_timestamp(xmin) > %(after)s "
                      "AND pg_xact_commit_timestamp(xmin) < %(before)s")


@dataclass(frozen=True)
class Cache:
    """What the backend keeps in Redis: ``derived``, the key patterns (SCAN MATCH) of what it
    derives from the database, which no longer holds after the database or Redis is restored:
    the recovery tools drop them (CACHE_KEYS)."""
    derived: list[str] = field(default_factory=lambda: ["fulsk:*"])


@dataclass(frozen=True)
class Health:
    path: str = "/health"
    status: str = "status"          # JSON path to the overall status
    healthy: list[str] = field(default_factory=lambda: ["ok"])
    dependencies: str = "dependencies"  # JSON path to per-dependency objects ("": not reported)
    dependency_status: str = "status"
    down: list[str] = field(default_factory=lambda: ["down"])
    latency: str = "latency_ms"     # a dependency's latency in ms, within its object ("": not reported)
    names: dict[str, str] = field(default_factory=dict)  # the backend's name of a service, where not the service's

    def dependency(self, service: str) -> str:
        return self.names.get(service, service)


@dataclass(frozen=True)
class Run:
    """How a stack runs the backend. Empty: the reference backend (fixtures/backend)."""
    command: list[str] = field(default_factory=list)  # on the local stack, in the contract's directory
    setup: list[str] = field(default_factory=list)    # run there once, until ``ready_when`` exists
    ready_when: str = ""
    image: str = ""            # on Docker; built offline from the lines below when ``files`` are given
    packages: list[str] = field(default_factory=list)  # Debian packages of that image
    files: list[str] = field(default_factory=list)     # copied from the contract's directory to /opt/fulsk
    image_command: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)  # programs the local stack needs: Debian package


@dataclass(frozen=True)
class Capabilities:
    dependency_health: bool = True   # /health reports each dependency's state
    instance_header: str = ""        # the header naming the instance that answered (scale-out)
    metrics: str = ""                # its Prometheus metrics path
    idempotent_writes: bool = True   # a reading delivered twice is stored once
    received_metric: str = ""        # its metrics' counter of telemetry messages received ("": none)
    instance_pending: str = ""       # what the instance header says of an instance with no identity yet


@dataclass(frozen=True)
class Contract:
    name: str = "reference"
    publish: Publish = field(default_factory=Publish)
    reads: Reads = field(default_factory=Reads)
    feed: Feed = field(default_factory=Feed)
    ledger: Ledger = field(default_factory=Ledger)
    health: Health = field(default_factory=Health)
    cache: Cache = field(default_factory=Cache)
    capabilities: Capabilities = field(default_factory=Capabilities)
    run: Run = field(default_factory=Run)
    home: str = ""  # the contract file's directory (set when read, not written in it)

    def key(self, reading: dict[str, Any]) -> tuple[str, int]:
        """A canonical reading's identity: (inverter, seq), or (inverter, timestamp in ms)."""
        if self.ledger.identity == "ts":
            return str(reading["inverter_id"]), int(round(float(reading["ts"]) * 1000))
        return str(reading["inverter_id"]), int(reading["seq"])

    def feed_keys(self, data: str) -> list[tuple[str, int]]:
        """The readings a live-feed message carries; none for one that cannot be read (they count
        as missed)."""
        try:
            return [self.key(row) for row in self.feed.rows(json.loads(data))]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return []

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(contract: Contract, where: str) -> Contract:
    for name, units in (("publish", contract.publish.units), ("reads.latest", contract.reads.latest.units),
                        ("reads.history", contract.reads.history.units),
                        ("reads.listing", contract.reads.listing.units), ("feed", contract.feed.units)):
        for key, value, known in (("timestamp", units.timestamp, TIMESTAMPS), ("power", units.power, POWER),
                                  ("energy", units.energy, ENERGY)):
            if value not in known:
                raise ConfigError(f"{where}: {name}.units.{key}: {value!r} is not one of {', '.join(known)}")
    if contract.ledger.identity not in ("seq", "ts"):
        raise ConfigError(f"{where}: ledger.identity: {contract.ledger.identity!r} is not seq or ts")
    if contract.ledger.identity == "seq" and not contract.publish.fields.seq:
        raise ConfigError(f"{where}: ledger.identity is seq, but publish.fields.seq is empty: the inverters would "
                          f"send none (identity = \"ts\" for a backend without a sequence number)")
    if contract.publish.qos not in (0, 1, 2):
        raise ConfigError(f"{where}: publish.qos: {contract.publish.qos!r} is not 0, 1 or 2")
    if contract.run.command and not contract.home:
        raise ConfigError(f"{where}: run.command needs the contract's directory (read it from its file)")
    if contract.run.files and not (contract.run.image and contract.run.image_command):
        raise ConfigError(f"{where}: run.files builds an image: run.image and run.image_command say its name and command")
    for key, placeholders in (("query", ["%(ids)s"]), ("delete_site", ["%(site)s"]),
                              ("committed", ["%(after)s", "%(before)s"])):
        missing = [p for p in placeholders if p not in getattr(contract.ledger, key)]
        if missing:
            raise ConfigError(f"{where}: ledger.{key} must use {' and '.join(missing)} (see docs/stack.md, [ledger])")
    return contract


def from_mapping(data: dict[str, Any], where: str = "contract") -> Contract:
    return _check(build(Contract, data, "", zero_ok=True), where)


BACKENDS = {"reference": REFERENCE,  # the backends under fixtures/, by name
            "node": FIXTURES / "backends" / "node" / "contract.toml"}


def resolve(backend: str) -> Path:
    """A backend's contract file from ``--backend``: a name of fixtures/, a contract file, or a
    directory holding contract.toml."""
    path = Path(backend)
    if backend in BACKENDS:
        return BACKENDS[backend]
    if path.is_dir() and (path / "contract.toml").is_file():
        return (path / "contract.toml").resolve()
    if path.is_file():
        return path.resolve()
    raise ConfigError(f"--backend {backend}: no backend of that name (known: {', '.join(BACKENDS)}) and no contract "
                      f"file or directory holding contract.toml there")


def from_env(environ: dict[str, str]) -> Contract:
    """The contract a process was started with ($FULSK_CONTRACT), else the reference backend's."""
    text = environ.get(CONTRACT_ENV)
    return from_mapping(json.loads(text), CONTRACT_ENV) if text else load()


def load(path: Path | str | None = None) -> Contract:
    """A backend's contract from its TOML file (the reference backend's by default)."""
    path = Path(path) if path else REFERENCE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such contract file (backend.contract)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    if "home" in data:
        raise ConfigError(f"{path}: home: unknown key (a contract's directory is where its file is)")
    try:
        return from_mapping({**data, "home": str(path.resolve().parent)}, str(path))
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(str(path)) else f"{path}: {text}") from None

"""The one configuration: ``[tool.fulsk-chaos]`` in pyproject.toml, or a TOML file of the same keys.

Defaults are the operations guide's numbers. A bad configuration is refused before anything
starts, with one line naming the key and what is wrong with it.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key and the problem."""


@dataclass(frozen=True)
class Baselines:
    """Performance baselines (ops guide, 'Performance Baselines')."""
    api_response_ms: float = 500.0
    page_load_ms: float = 2000.0
    db_query_ms: float = 100.0
    websocket_latency_ms: float = 50.0


@dataclass(frozen=True)
class Alerts:
    """Alert thresholds (ops guide, 'Application Metrics')."""
    http_response_ms: float = 2000.0
    error_rate: float = 0.05


@dataclass(frozen=True)
class Recovery:
    target_s: float = 30.0  # from the faulted dependency being back to the stack in steady state


@dataclass(frozen=True)
class SteadyState:
    window_s: float = 3.0   # how long the hypothesis is observed before a fault
    streak_s: float = 2.0   # healthy for this long without a break = steady again


@dataclass(frozen=True)
class Fleet:
    inverters: int = 10
    sites: int = 2
    interval_s: float = 0.2  # per inverter


@dataclass(frozen=True)
class Probe:
    interval_s: float = 0.1
    api_path: str = "/api/inverters"
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Backend:
    """The backend under test. An empty command runs the reference backend in fixtures/."""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Docker:
    """Images for ``--stack docker``: production's from a registry, or those built offline."""
    offline: bool = False  # True: the images `fulsk-chaos images build --offline` makes
    images: dict[str, str] = field(default_factory=dict)  # per service, e.g. backend = "you/fulsk:1.4"


@dataclass(frozen=True)
class Stack:
    start_timeout_s: float = 60.0
    stop_grace_s: float = 10.0


@dataclass(frozen=True)
class DbLoss:
    down_s: float = 5.0


@dataclass(frozen=True)
class Scenarios:
    db_loss: DbLoss = field(default_factory=DbLoss)


@dataclass(frozen=True)
class Config:
    baselines: Baselines = field(default_factory=Baselines)
    alerts: Alerts = field(default_factory=Alerts)
    recovery: Recovery = field(default_factory=Recovery)
    steady_state: SteadyState = field(default_factory=SteadyState)
    fleet: Fleet = field(default_factory=Fleet)
    probe: Probe = field(default_factory=Probe)
    backend: Backend = field(default_factory=Backend)
    stack: Stack = field(default_factory=Stack)
    docker: Docker = field(default_factory=Docker)
    scenarios: Scenarios = field(default_factory=Scenarios)


# Values that may be zero; every other number must be strictly positive.
_MAY_BE_ZERO = {"alerts.error_rate"}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'configuration'}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known here: {', '.join(sorted(names))})")
        values[key] = _convert(hints[key], value, path)
    return cls(**values)


def _convert(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings, got {value!r}")
        return list(value)
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
        if value < 0 or (value == 0 and path not in _MAY_BE_ZERO):
            raise ConfigError(f"{path}: must be {'zero or more' if path in _MAY_BE_ZERO else 'positive'}, "
                              f"got {value!r}")
        return hint(value)
    raise ConfigError(f"{path}: unsupported setting type {hint!r}")  # pragma: no cover - a bug of ours


def from_mapping(data: dict[str, Any]) -> Config:
    config = _build(Config, data, "")
    unknown = set(config.docker.images) - {"postgres", "redis", "mqtt", "toxiproxy", "backend", "frontend"}
    if unknown:
        raise ConfigError(f"docker.images.{sorted(unknown)[0]}: not a service of the stack "
                          f"(postgres, redis, mqtt, toxiproxy, backend, frontend)")
    if config.alerts.error_rate > 1:
        raise ConfigError(f"alerts.error_rate: a fraction between 0 and 1, got {config.alerts.error_rate!r}")
    return config


def load(path: Path | str | None = None, search_from: Path | None = None) -> Config:
    """Read the configuration from ``path`` (a TOML file), else the nearest pyproject.toml."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        data = _read(path)
        # A file may hold the keys at its top level or under [tool.fulsk-chaos], as pyproject does.
        return _from_file(path, data["tool"].get("fulsk-chaos", {}) if "tool" in data else data)
    start = search_from or Path.cwd()
    for directory in [start, *start.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return _from_file(candidate, _read(candidate).get("tool", {}).get("fulsk-chaos", {}))
    return Config()


def _from_file(path: Path, table: Any) -> Config:
    try:
        return from_mapping(table)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def as_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)

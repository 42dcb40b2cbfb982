"""Load profiles: the traffic mix and rates of one load test, in a TOML file operators edit.

One profile drives everything: the Locust users (loadtests/locustfile.py reads it from the
environment), how long the run lasts, the stress ramp's steps, and which figures are judged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import build
from ..errors import ConfigError

PROFILES = Path(__file__).resolve().parents[2] / "loadtests" / "profiles"
ENV = "FULSK_LOAD_PROFILE"  # how the locustfile gets its profile: a path, or the resolved profile as JSON


@dataclass(frozen=True)
class DashboardLoad:
    """Dashboard users (closed model): a page view loads the page and the calls its script makes,
    then the user thinks; between page views they read the API."""
    users: int = 0
    think_s: list[float] = field(default_factory=lambda: [1.0, 3.0])  # between tasks, uniform
    page_weight: int = 1
    api_weight: int = 3


@dataclass(frozen=True)
class ApiLoad:
    """API reads at a set rate. ``open``: requests are due at fixed times whatever the server does,
    latency counted from each due time (no coordinated omission). ``closed``: users who wait for
    each answer, paced to the same rate (what a stalled server can hide behind)."""
    mode: str = "open"
    rate: float = 0.0          # requests per second, all users together
    users: int = 1             # open: arrival generators the rate is split over; closed: users
    max_in_flight: int = 200   # open, per user: a request due while this many are unanswered fails, unsent
    steps: list[float] = field(default_factory=list)  # stress: a rate per step, replacing ``rate``
    step_s: float = 30.0
    paths: list[str] = field(default_factory=list)  # read these in turn instead of the dashboard's reads


@dataclass(frozen=True)
class ViewerLoad:
    """Live viewers on the WebSocket feed: delay from each reading's publish to its arrival."""
    users: int = 0


@dataclass(frozen=True)
class InverterLoad:
    """Inverters over MQTT: QoS 1, unique (inverter_id, seq), every acknowledgement in the ledger."""
    users: int = 0
    interval_s: float = 1.0


@dataclass(frozen=True)
class LoadProfile:
    name: str = "custom"
    description: str = ""
    duration_s: float = 60.0   # ignored by a stress ramp (its steps last as long as they last)
    warmup_s: float = 3.0      # after every user has started: not judged
    spawn_rate: float = 100.0  # users started per second
    timeout_s: float = 10.0    # an HTTP request unanswered for this long fails
    dashboard: DashboardLoad = field(default_factory=DashboardLoad)
    api: ApiLoad = field(default_factory=ApiLoad)
    viewers: ViewerLoad = field(default_factory=ViewerLoad)
    inverters: InverterLoad = field(default_factory=InverterLoad)

    def __post_init__(self) -> None:
        if self.api.mode not in ("open", "closed"):
            raise ConfigError(f"profile {self.name}: api.mode must be open or closed, got {self.api.mode!r}")
        if self.api.steps and self.api.mode != "open":
            raise ConfigError(f"profile {self.name}: a stress ramp (api.steps) needs api.mode = open: a closed "
                              f"model slows down with the server and would hide where it breaks")
        if len(self.dashboard.think_s) != 2 or self.dashboard.think_s[0] > self.dashboard.think_s[1]:
            raise ConfigError(f"profile {self.name}: dashboard.think_s must be [min, max], got {self.dashboard.think_s}")
        if not self.users:
            raise ConfigError(f"profile {self.name}: no users at all (dashboard, api, viewers or inverters)")

    @property
    def users(self) -> dict[str, int]:
        """Users per Locust class (the locustfile's names), those with none left out."""
        counts = {"DashboardUser": self.dashboard.users,
                  "ApiUser": self.api.users if (self.api.rate or self.api.steps) else 0,
                  "LiveViewer": self.viewers.users, "InverterUser": self.inverters.users}
        return {name: n for name, n in counts.items() if n > 0}

    @property
    def stepped(self) -> bool:
        return bool(self.api.steps)

    @property
    def run_s(self) -> float:
        """How long the load runs once every user has started."""
        return len(self.api.steps) * self.api.step_s if self.stepped else self.duration_s

    def rate_at(self, elapsed_s: float) -> float:
        """The API arrival rate (all users) ``elapsed_s`` after the schedule began; 0 once a ramp ends."""
        if not self.stepped:
            return self.api.rate
        step = int(elapsed_s // self.api.step_s)
        return self.api.steps[step] if 0 <= step < len(self.api.steps) else 0.0

    def with_(self, **changes: Any) -> "LoadProfile":
        """A copy with top-level fields or ``section__field`` changed, e.g. ``api__rate=50``."""
        top = {k: v for k, v in changes.items() if "__" not in k}
        for key, value in changes.items():
            if "__" in key:
                section, name = key.split("__", 1)
                top[section] = dataclasses.replace(top.get(section, getattr(self, section)), **{name: value})
        return dataclasses.replace(self, **top)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @property
    def fingerprint(self) -> str:
        """The traffic mix, whatever the run's length: runs with the same one are comparable."""
        mix = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("name", "description", "duration_s")}
        return hashlib.sha256(json.dumps(mix, sort_keys=True).encode()).hexdigest()[:12]


def from_mapping(data: dict[str, Any], name: str = "custom") -> LoadProfile:
    return build(LoadProfile, {"name": name, **data}, f"profile {name}", zero_ok=True)  # 0 users: none of them


def load_profile(name_or_path: str | Path) -> LoadProfile:
    """A profile by name (loadtests/profiles/NAME.toml) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.toml")))
        raise ConfigError(f"load profile {name_or_path}: no file {path} (profiles here: {known})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(data, path.stem)


def from_env(env: dict[str, str] | None = None) -> LoadProfile:
    """The profile a Locust process was started with ($FULSK_LOAD_PROFILE: JSON, a name or a path)."""
    value = (env if env is not None else os.environ).get(ENV, "")
    if not value:
        raise ConfigError(f"${ENV} is not set: name a load profile (e.g. {ENV}=weekly) or a TOML file")
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        return from_mapping({k: v for k, v in data.items() if k != "name"}, data.get("name", "custom"))
    return load_profile(value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``60s``, ``5m``, ``1h30m``, ``1.5s``."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, None: 1}[match.group(2)]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise ConfigError(f"duration {text!r}: expected e.g. 60s, 5m or 1h30m")
    return total

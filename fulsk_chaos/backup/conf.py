"""Where the backup tools find everything: one KEY=VALUE file, as operators keep /etc/fulsk/backup.env.

The tools (``backup.sh``, ``disaster-recovery.sh``) read it from ``--config``, else from
``$FULSK_BACKUP_CONF``, else /etc/fulsk/backup.env; a variable of the same name in the
environment wins over the file. A stack started by fulsk-chaos writes its own (``backup.env``
in the stack's directory), so the tools work against it as they would in production.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..contract import Contract
from ..errors import FulskChaosError

DEFAULT_PATH = Path("/etc/fulsk/backup.env")
ENV_VAR = "FULSK_BACKUP_CONF"


class BackupError(FulskChaosError, RuntimeError):
    """A backup or a restore failed; the message says where and why."""


@dataclass(frozen=True)
class BackupConf:
    backup_dir: Path                 # BACKUP_DIR: the backups, backup.log, latest_backup.tar.gz
    database_url: str                # DATABASE_URL: PostgreSQL, reached directly
    redis_url: str                   # REDIS_URL
    wal_archive: Path                # WAL_ARCHIVE: where archive_command puts WAL segments (gzipped)
    restore_staging: Path            # PG_RESTORE_STAGING: a data directory the database starts from
    redis_snapshot: Path             # REDIS_SNAPSHOT: the RDB file Redis loads when it starts
    control: str                     # CONTROL: a command taking "stop|start|wipe SERVICE"
    config_paths: tuple[Path, ...] = ()  # CONFIG_PATHS: the stack's configuration, saved with each backup
    archive_dir: Path | None = None  # ARCHIVE_DIR: long-term copies of --archive backups
    retention_days: int = 30         # RETENTION_DAYS
    archive_retention_days: int = 365  # ARCHIVE_RETENTION_DAYS
    # CACHE_KEYS: derived from the database, dropped after a restore (the backend's contract, [cache])
    cache_keys: tuple[str, ...] = field(default_factory=lambda: tuple(Contract().cache.derived))
    writers: tuple[str, ...] = ("backend",)  # WRITERS: services writing to the database, stopped while a dump restores
    connect_timeout_s: int = 5       # CONNECT_TIMEOUT
    restore_timeout_s: float = 900.0  # RESTORE_TIMEOUT

    @property
    def log_path(self) -> Path:
        return self.backup_dir / "backup.log"

    @property
    def long_term_dir(self) -> Path:
        return self.archive_dir or self.backup_dir / "archive"

    def to_env(self) -> str:
        values = {_KEYS[f.name]: getattr(self, f.name) for f in fields(self) if f.name in _KEYS}
        lines = ["# fulsk backup configuration (read by backup.sh and disaster-recovery.sh)"]
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, tuple):
                value = " ".join(str(v) for v in value)
            lines.append(f"{key}={shlex.quote(str(value))}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        path.write_text(self.to_env())
        path.chmod(0o600)  # it holds the database's password
        return path


_KEYS = {"backup_dir": "BACKUP_DIR", "database_url": "DATABASE_URL", "redis_url": "REDIS_URL",
         "wal_archive": "WAL_ARCHIVE", "restore_staging": "PG_RESTORE_STAGING", "redis_snapshot": "REDIS_SNAPSHOT",
         "control": "CONTROL", "config_paths": "CONFIG_PATHS", "archive_dir": "ARCHIVE_DIR",
         "retention_days": "RETENTION_DAYS", "archive_retention_days": "ARCHIVE_RETENTION_DAYS",
         "cache_keys": "CACHE_KEYS", "writers": "WRITERS", "connect_timeout_s": "CONNECT_TIMEOUT",
         "restore_timeout_s": "RESTORE_TIMEOUT"}
_REQUIRED = ("backup_dir", "database_url", "redis_url", "wal_archive", "restore_staging", "redis_snapshot", "control")


def for_stack(stack) -> BackupConf:
    """The configuration of a stack fulsk-chaos runs: its addresses, its directories, its control socket."""
    postgres, redis = stack.service("postgres"), stack.service("redis")
    fixtures = stack.fixtures
    return BackupConf(
        backup_dir=stack.dir / "backups", database_url=stack.endpoints.database_dsn, redis_url=stack.endpoints.redis_url,
        wal_archive=postgres.spec.wal_archive(postgres.ctx), restore_staging=postgres.spec.restore_staging(postgres.ctx),
        redis_snapshot=redis.spec.snapshot_path(redis.ctx),
        control=f"{shlex.quote(sys.executable)} -m fulsk_chaos.cli ctl --socket {shlex.quote(str(stack.dir / 'control.sock'))}",
        config_paths=tuple(p for p in (fixtures / "frontend", fixtures / "mqtt", fixtures / "docker-compose.prod.yml")
                           if p.exists()),
        cache_keys=tuple(stack.contract.cache.derived),
        retention_days=stack.settings.backup.retention_days,
        archive_retention_days=stack.settings.backup.archive_retention_days,
        restore_timeout_s=stack.settings.backup.restore_timeout_s)


def written_for(stack) -> Path:
    """The stack's backup.env (FULSK_BACKUP_CONF), written by the first that needs it: the backup
    tools, the runbooks and ``fulsk-chaos up`` run against it."""
    path = stack.dir / "backup.env"
    if not path.exists():
        for_stack(stack).write(path)
    return path


def parse_env_file(text: str, where: str) -> dict[str, str]:
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise BackupError(f"{where}:{number}: expected KEY=VALUE, got {line[:60]!r}")
        parts = shlex.split(raw, comments=True)
        values[key.strip()] = " ".join(parts)
    return values


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> BackupConf:
    environ = dict(os.environ if environ is None else environ)
    path = path or Path(environ.get(ENV_VAR) or DEFAULT_PATH)
    try:
        values = parse_env_file(path.read_text(), str(path))
    except FileNotFoundError:
        raise BackupError(f"{path}: no backup configuration there: pass --config FILE or set {ENV_VAR} "
                          f"(a stack started by fulsk-chaos writes one as backup.env in its directory)") from None
    values.update({k: v for k, v in environ.items() if k in _KEYS.values()})
    by_field = {name: values.get(key) for name, key in _KEYS.items()}
    missing = [_KEYS[n] for n in _REQUIRED if not by_field[n]]
    if missing:
        raise BackupError(f"{path}: missing {', '.join(missing)}")
    kwargs: dict = {}
    for name, value in by_field.items():
        if value is None or value == "":
            continue
        if name in ("config_paths",):
            kwargs[name] = tuple(Path(p) for p in value.split())
        elif name in ("cache_keys", "writers"):
            kwargs[name] = tuple(value.split())
        elif name in ("retention_days", "archive_retention_days", "connect_timeout_s"):
            kwargs[name] = _number(int, value, _KEYS[name], path)
        elif name == "restore_timeout_s":
            kwargs[name] = _number(float, value, _KEYS[name], path)
        elif name in ("database_url", "redis_url", "control"):
            kwargs[name] = value
        else:
            kwargs[name] = Path(value)
    return BackupConf(**kwargs)


def _number(kind: type, value: str, key: str, path: Path):
    try:
        number = kind(value)
    except ValueError:
        raise BackupError(f"{path}: {key} must be a number, got {value!r}") from None
    if number <= 0:
        raise BackupError(f"{path}: {key} must be positive, got {value!r}")
    return number


def one_line(message: str, limit: int = 600) -> str:
    """A failure as one log line: its first line, and a server's own FATAL line when it quotes its log."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    fatal = [line for line in lines if "FATAL" in line or "PANIC" in line]
    text = lines[0] if lines else message
    if fatal and fatal[-1] not in text:
        text = f"{text.rstrip(':')} ... {fatal[-1]}"
    return text[:limit]

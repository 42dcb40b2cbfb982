"""``backup.sh`` and ``disaster-recovery.sh``: the ops guide's commands, with its flags.

    backup.sh [--full | --archive] [--verbose] [--config FILE]
    disaster-recovery.sh -f FILE [-v] [--partial PART[,PART]] [--to TIMESTAMP] [--config FILE]

Every run appends to BACKUP_DIR/backup.log; any failure exits non-zero with one line saying why.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import FulskChaosError
from . import archive, parts
from .conf import BackupConf, BackupError, load, one_line

PARTS = ("postgres", "redis", "config")


class Log:
    """backup.log and stderr: every line timestamped; details only with --verbose."""

    def __init__(self, conf: BackupConf | None, tool: str, verbose: bool) -> None:
        self.path = conf.log_path if conf else None
        self.tool = tool
        self.verbose = verbose

    def __call__(self, line: str, detail: bool = True) -> None:
        stamped = f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')} {self.tool}: {line}"
        if self.verbose or not detail:
            print(stamped, file=sys.stderr, flush=True)
        if self.path is not None:
            try:
                with open(self.path, "a") as log:
                    log.write(stamped + "\n")
            except OSError:
                pass  # a full disk must not hide the failure it causes: stderr still has it

    def say(self, line: str) -> None:
        self(line, detail=False)


def backup(conf: BackupConf, kind: str, log: Log) -> Path:
    """Write one backup of ``kind`` into BACKUP_DIR; return its path. Nothing is left behind on failure."""
    started = datetime.now(timezone.utc)
    conf.backup_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(conf.backup_dir).free
    log(f"{kind} backup started ({free / 2**20:.0f} MiB free in {conf.backup_dir})")
    dest = conf.backup_dir / archive.backup_name(kind, started)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=conf.backup_dir))
    try:
        manifest = {"kind": kind, "created_at": started.isoformat(), "host": socket.gethostname(),
                    "postgres": parts.dump(conf, staging / "postgres", log)}
        if kind in ("full", "archive"):
            manifest["postgres"].update(parts.base_backup(conf, staging / "postgres", log))
            manifest["postgres"]["wal_archive"] = str(conf.wal_archive)
        parts.redis_snapshot(conf, staging / "redis", log)
        manifest["config"] = parts.save_config(conf, staging / "config")
        written = archive.pack(staging, manifest, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.link_latest(dest)
    size = dest.stat().st_size
    log.say(f"OK {dest.name} ({size / 2**20:.1f} MiB, {len(written['files'])} files, "
            f"{(datetime.now(timezone.utc) - started).total_seconds():.1f} s)")
    if kind == "archive":
        copy = archive.copy_atomically(dest, conf.long_term_dir)
        log(f"archived to {copy}")
        for old in archive.prune(conf.long_term_dir, conf.archive_retention_days):
            log(f"retention: removed {old} (older than {conf.archive_retention_days} days)")
    for old in archive.prune(conf.backup_dir, conf.retention_days):
        log(f"retention: removed {old.name} (older than {conf.retention_days} days)")
    return dest


def resolve(conf: BackupConf, name: str) -> Path:
    """A path as given, else a name in BACKUP_DIR (``latest_backup.tar.gz`` is the newest backup)."""
    path = Path(name)
    if not path.exists() and not path.is_absolute() and (conf.backup_dir / name).exists():
        path = conf.backup_dir / name
    return path.resolve() if path.exists() else path


def restore(conf: BackupConf, name: str, only: list[str], target: datetime | None, log: Log,
            verify_only: bool = False) -> Path:
    path = resolve(conf, name)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=conf.backup_dir if conf.backup_dir.is_dir() else None))
    try:
        checked = archive.verify(path, extract_to=work, deep=True)
        if checked.problems:
            raise BackupError(f"{path.name} failed verification: " + "; ".join(checked.problems))
        manifest = checked.manifest
        log(f"{path.name} verified: {manifest['kind']} backup of {manifest['created_at']}, "
            f"{len(manifest['files'])} files match the manifest")
        if verify_only:
            return path
        wanted = only or [p for p in ("postgres", "redis") if _has(manifest, p)]
        has_base = "postgres/base.tar.gz" in manifest["files"]
        if target is not None and ("postgres" not in wanted or not has_base):
            raise BackupError(f"a point-in-time restore needs a --full backup of postgres (a base backup); "
                              f"{path.name} is a {manifest['kind']} backup")
        if target is not None and target.timestamp() < manifest["postgres"].get("base_ended_at", 0):
            raise BackupError(f"{path.name} was taken after {target.isoformat()}: use an older --full backup")
        for part in wanted:
            if not _has(manifest, part):
                raise BackupError(f"{path.name} has no {part} part")
        started = time.monotonic()
        if "postgres" in wanted:
            if has_base:
                parts.restore_physical(conf, work / "postgres" / "base.tar.gz",
                                       manifest["postgres"]["system_identifier"], target, log)
            else:
                parts.restore_dump(conf, work / "postgres" / "fulsk.dump", manifest, log)
        if "redis" in wanted:
            parts.restore_redis(conf, work / "redis" / "dump.rdb", log)
        if "config" in wanted:
            out = conf.backup_dir / f"restored-config-{archive.stamp_of(path.name) or 'backup'}".replace(":", "")
            shutil.copytree(work / "config", out, dirs_exist_ok=True)
            log.say(f"configuration restored to {out} (compare it with what is deployed before copying it over)")
        if "postgres" in wanted or "redis" in wanted:
            parts.drop_cached(conf, log)
        log.say(f"OK restored {', '.join(wanted)} from {path.name} in {time.monotonic() - started:.1f} s"
                + (f" to {target.isoformat()}" if target else ""))
        return path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _has(manifest: dict, part: str) -> bool:
    return any(name.startswith(part + "/") for name in manifest.get("files", {}))


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.fromtimestamp(float(text), timezone.utc)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: use ISO 8601 (2026-11-27T08:00:00Z) or epoch seconds") \
                from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _main(tool: str, build: Callable[[argparse.ArgumentParser], None],
          act: Callable[[argparse.Namespace, BackupConf, Log], None], argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=tool)
    parser.add_argument("--config", type=Path, default=None, help="the KEY=VALUE configuration "
                        "(default: $FULSK_BACKUP_CONF, else /etc/fulsk/backup.env)")
    parser.add_argument("--verbose", action="store_true", help="every step on stderr too")
    build(parser)
    args = parser.parse_args(argv)
    conf = None
    log = Log(None, tool, args.verbose)
    try:
        conf = load(args.config)
        log = Log(conf, tool, args.verbose)
        act(args, conf, log)
        return 0
    except (FulskChaosError, OSError) as exc:
        log.say(f"FAILED: {one_line(str(exc))}")
        return 1


def backup_main(argv: list[str] | None = None) -> int:
    def build(parser: argparse.ArgumentParser) -> None:
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--full", action="store_true", help="weekly: with a base backup, for point-in-time recovery")
        kind.add_argument("--archive", action="store_true", help="monthly: a full backup, copied to ARCHIVE_DIR")

    def act(args: argparse.Namespace, conf: BackupConf, log: Log) -> None:
        backup(conf, "archive" if args.archive else "full" if args.full else "daily", log)
    return _main("backup.sh", build, act, argv)


def recovery_main(argv: list[str] | None = None) -> int:
    def build(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-f", "--file", required=True, help="the backup (a path, or a name in BACKUP_DIR, "
                            "e.g. latest_backup.tar.gz)")
        parser.add_argument("-v", "--verify", action="store_true", help="verify the backup; restore nothing")
        parser.add_argument("--partial", default="", help=f"restore only these parts ({','.join(PARTS)})")
        parser.add_argument("--to", type=parse_time, default=None, metavar="TIMESTAMP",
                            help="point in time to recover the database to (needs a --full backup)")

    def act(args: argparse.Namespace, conf: BackupConf, log: Log) -> None:
        only = [p.strip() for p in args.partial.split(",") if p.strip()]
        unknown = sorted(set(only) - set(PARTS))
        if unknown:
            raise BackupError(f"--partial: unknown part {unknown[0]!r} (parts: {', '.join(PARTS)})")
        restore(conf, args.file, only, args.to, log, verify_only=args.verify)
    return _main("disaster-recovery.sh", build, act, argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("backup", "restore"):
        print("usage: python -m fulsk_chaos.backup {backup|restore} ...", file=sys.stderr)
        return 2
    return (backup_main if argv[0] == "backup" else recovery_main)(argv[1:])

"""The backup file: one timestamped tar.gz whose first member is a manifest of checksums.

A backup is published only once it has been read back in full and matches its manifest: until
then it is ``NAME.partial``, which nothing takes for a backup (not the ``latest`` link, not
retention, not a restore). Verification is what a restore does first, and refuses on.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .conf import BackupError

MANIFEST = "manifest.json"
FORMAT = 1
KINDS = ("daily", "full", "archive")
LATEST = "latest_backup.tar.gz"
_NAME = re.compile(r"^fulsk-backup-(daily|full|archive)-(\d{8}T\d{6}Z)\.tar\.gz$")
_STAMP = "%Y%m%dT%H%M%SZ"


def backup_name(kind: str, when: datetime) -> str:
    return f"fulsk-backup-{kind}-{when.astimezone(timezone.utc).strftime(_STAMP)}.tar.gz"


def stamp_of(name: str) -> datetime | None:
    """When a backup was taken, from its name (copies keep their names, not their mtimes)."""
    match = _NAME.match(name)
    return datetime.strptime(match.group(2), _STAMP).replace(tzinfo=timezone.utc) if match else None


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def pack(staging: Path, manifest: dict[str, Any], dest: Path) -> dict[str, Any]:
    """Write ``dest`` from the files under ``staging``, atomically; return the manifest written."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {**manifest, "format": FORMAT, "files": {}}
    for path in files:
        digest, size = sha256_of(path)
        manifest["files"][path.relative_to(staging).as_posix()] = {"sha256": digest, "bytes": size}
    partial = dest.with_name(dest.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            # level 1: the dump and the base backup are compressed already
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
                body = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = len(body), int(datetime.now().timestamp()), 0o600
                tar.addfile(info, io.BytesIO(body))
                for path in files:
                    tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        report = verify(partial)
        if report.problems:
            raise BackupError(f"the backup written does not read back: {'; '.join(report.problems)}")
        os.rename(partial, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_latest(dest: Path) -> None:
    """Point ``latest_backup.tar.gz`` at ``dest`` (replaced atomically)."""
    link = dest.parent / LATEST
    tmp = dest.parent / f".{LATEST}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(dest.name)
    os.replace(tmp, link)


def copy_atomically(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    partial = dest.with_name(dest.name + ".partial")
    try:
        shutil.copyfile(src, partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.rename(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest


def prune(directory: Path, keep_days: int, now: datetime | None = None) -> list[Path]:
    """Delete backups older than ``keep_days`` (by the time in their names); the newest is always kept."""
    now = now or datetime.now(timezone.utc)
    backups = sorted((stamp_of(p.name), p) for p in directory.glob("fulsk-backup-*.tar.gz") if stamp_of(p.name))
    removed = []
    for stamp, path in backups[:-1]:
        if now - stamp > timedelta(days=keep_days):
            path.unlink()
            removed.append(path)
    return removed


@dataclass
class Verification:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: Path, extract_to: Path | None = None, deep: bool = False) -> Verification:
    """Read the whole archive: every member against the manifest's checksum, nothing missing or
    extra. ``deep`` also checks that each part is what it claims (pg_restore reads the dump,
    the base backup is a complete tar, the Redis snapshot is an RDB file); it needs ``extract_to``."""
    result = Verification(path)
    if not path.is_file():
        result.problems.append(f"{path}: no such file")
        return result
    hashed: dict[str, tuple[str, int]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                result.problems.append(f"no {MANIFEST} at the start of the archive: not a fulsk backup")
                return result
            result.manifest = json.load(tar.extractfile(first))
            for member in tar:
                if not member.isfile() or member is first:
                    continue
                source = tar.extractfile(member)
                digest, size = hashlib.sha256(), 0
                out = None
                if extract_to is not None:
                    target = extract_to / member.name
                    if not target.resolve().is_relative_to(extract_to.resolve()):
                        result.problems.append(f"{member.name}: a path outside the backup")
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = open(target, "wb")
                try:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        if out:
                            out.write(chunk)
                finally:
                    if out:
                        out.close()
                hashed[member.name] = (digest.hexdigest(), size)
    except (tarfile.TarError, EOFError, zlib.error, OSError, json.JSONDecodeError) as exc:
        result.problems.append(f"the archive cannot be read to its end ({type(exc).__name__}: {exc}): "
                               f"it is truncated or corrupted")
        return result
    _against_manifest(result, hashed)
    if deep and extract_to is not None and result.ok:
        _check_parts(result, extract_to)
    return result


def _against_manifest(result: Verification, hashed: dict[str, tuple[str, int]]) -> None:
    manifest = result.manifest
    if manifest.get("format") != FORMAT or manifest.get("kind") not in KINDS:
        result.problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, kind {manifest.get('kind')!r}: "
                               f"not a backup this tool wrote (format {FORMAT}, kinds {', '.join(KINDS)})")
        return
    listed = manifest.get("files") or {}
    for name, entry in sorted(listed.items()):
        if name not in hashed:
            result.problems.append(f"{name}: listed in the manifest, missing from the archive")
        elif hashed[name] != (entry.get("sha256"), entry.get("bytes")):
            digest, size = hashed[name]
            result.problems.append(f"{name}: does not match the manifest (sha256 {digest[:12]}…, {size} bytes; "
                                   f"the manifest says {str(entry.get('sha256'))[:12]}…, {entry.get('bytes')} bytes)")
    for name in sorted(set(hashed) - set(listed)):
        result.problems.append(f"{name}: in the archive, not in the manifest")
    if "postgres/fulsk.dump" not in listed:
        result.problems.append("no database dump (postgres/fulsk.dump) in the backup")


def _check_parts(result: Verification, root: Path) -> None:
    from .parts import tool  # pg_restore, only for a deep check
    dump = root / "postgres" / "fulsk.dump"
    listing = subprocess.run([tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True)
    if listing.returncode != 0:
        result.problems.append(f"postgres/fulsk.dump: pg_restore cannot read it: {listing.stderr.strip()[:300]}")
    base = root / "postgres" / "base.tar.gz"
    if base.exists():
        try:
            with tarfile.open(base, "r:gz") as tar:
                names = set(tar.getnames())
            if not {"PG_VERSION", "backup_label"} <= names:
                result.problems.append("postgres/base.tar.gz: not a base backup (no PG_VERSION or backup_label)")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            result.problems.append(f"postgres/base.tar.gz: unreadable ({exc})")
    rdb = root / "redis" / "dump.rdb"
    if rdb.exists() and _head(rdb, 5) != b"REDIS":
        result.problems.append("redis/dump.rdb: not a Redis snapshot (no REDIS header)")


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)

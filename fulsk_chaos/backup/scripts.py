"""The ops guide's backup scripts run as an operator runs them (``run_script``), what a run said,
and the harm the drills do to what they work on: a damaged backup, a disk that fills up."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..lifecycle import Timed
from ..services import FIXTURES
from ..verdict import Expectation, at_most
from .conf import BackupError

SCRIPTS = FIXTURES / "scripts"


@dataclass(frozen=True)
class ScriptRun(Timed):
    """One run of an ops script: what it was asked, how it ended, what it said."""
    argv: tuple[str, ...]
    returncode: int
    stderr: str
    started: float  # time.monotonic()
    ended: float

    @property
    def said(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def to_json(self) -> dict[str, Any]:
        return {"command": " ".join(self.argv), "exit": self.returncode, "seconds": round(self.seconds, 2),
                "said": self.said}


@dataclass(frozen=True)
class Backup:
    run: ScriptRun
    path: Path | None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def taken_at(self) -> float | None:
        """Epoch seconds of the dump's snapshot: what a restore from the dump holds."""
        return self.manifest.get("postgres", {}).get("taken_at")


def damage(path: Path, how: str, into: Path) -> Path:
    """A damaged copy of a backup: ``truncated`` (its second half gone), ``flipped-byte`` (one
    byte inverted in the middle), ``manifest-mismatch`` (rebuilt with one part changed and the
    original manifest)."""
    bad = into / f"{how}-{path.name}"
    data = bytearray(path.read_bytes())
    if how == "truncated":
        bad.write_bytes(data[:len(data) // 2])
    elif how == "flipped-byte":
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    elif how == "manifest-mismatch":
        with tarfile.open(path, "r:gz") as src, tarfile.open(bad, "w:gz") as out:
            for member in src:
                body = src.extractfile(member).read() if member.isfile() else b""
                if member.name == "redis/dump.rdb":
                    body += b"\0"  # one byte more than the manifest says
                    member.size = len(body)
                out.addfile(member, io.BytesIO(body))
    else:
        raise ValueError(f"unknown damage {how!r}: truncated, flipped-byte, manifest-mismatch")
    return bad


class SmallFilesystem:
    """A size-limited filesystem (tmpfs) mounted under ``parent``: a backup directory that fills up.

        fs = SmallFilesystem("1m", parent)
        fs.mount()          # BackupError when this host does not let us mount (it needs root)
        with fs:            # unmounted and removed at the end
            ...
    """

    def __init__(self, size: str, parent: Path) -> None:
        self.size = size
        self.path = Path(tempfile.mkdtemp(prefix="small-fs-", dir=parent))

    def mount(self) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            self.path.rmdir()
            raise BackupError(f"cannot mount a {self.size} tmpfs at {self.path} ({done.stderr.strip()}): "
                              f"mounting needs root")
        return self.path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "--lazy", str(self.path)], capture_output=True)
        self.path.rmdir()


def run_script(name: str, args: Sequence[str], conf_path: Path, env: dict[str, str] | None = None,
               timeout_s: float = 1800.0) -> ScriptRun:
    argv = (str(SCRIPTS / name), *args)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "FULSK_BACKUP_CONF": str(conf_path), "FULSK_PYTHON": sys.executable,
                               **(env or {})})
    return ScriptRun(tuple([name, *args]), done.returncode, done.stderr, started, time.monotonic())


def ran_ok(run: ScriptRun) -> Expectation:
    return at_most(f"{' '.join(run.argv[:3])} exit status", run.returncode, 0,
                   detail=run.said if run.returncode else "")


def switch_wal(dsn: str, timeout_s: float) -> tuple[str, float]:
    """Switch to a new WAL segment and wait (``timeout_s`` at most) until the archiver reports it
    archived: everything committed before it is in the archive, if archiving works. Returns the
    segment and when it was switched (monotonic)."""
    import psycopg
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=5) as conn:
        switched = time.monotonic()
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            if last and last >= segment:
                break
            time.sleep(0.1)
    return segment, switched

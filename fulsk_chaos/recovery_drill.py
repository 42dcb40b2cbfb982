"""Recovery drills: the ops guide's backup tools run against a stack the inverter fleet keeps
writing to, and judged with numbers: RTO from the loss to fresh data served, RPO from the ledger
(the acknowledged readings that did not survive, and the span they cover), each against its
target; the API held to what the restored database says.

    with experiment:
        experiment.steady_state("before")
        backup = drill.backup()                      # backup.sh, then -v on what it wrote
        loss = drill.lose_database()                 # the data directory (or volume) destroyed
        experiment.allow_loss(drill.rpo(loss, backup, target_s))   # what the restore may lose
        drill.restore("-f", "latest_backup.tar.gz")  # disaster-recovery.sh
        drill.served_again(loss)                     # RTO (the recovery, measured)
        experiment.steady_state("after")
        drill.answers_match_database()
    experiment.verdict()                             # the ledger, with the loss allowed judged
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import psycopg
import requests

from .checks.dbload import OURS
from .checks.restore import PointInTime, Rpo
from .experiment import Experiment, make_fleet
from .lifecycle import Timed
from .probes import Fleet
from .recovery import archive
from .recovery.conf import BackupConf, BackupError, load, written_for
from .services import FIXTURES
from .verdict import Evidence, Expectation, at_most, none_of

Key = tuple[str, int]
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


class RecoveryDrill:
    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.stack = experiment.stack
        self.settings = experiment.settings
        self.record = experiment.record
        self.conf_path = written_for(self.stack)
        self.conf: BackupConf = load(self.conf_path)
        self.dsn = self.stack.endpoints.database_dsn
        self.to_epoch = time.time() - time.monotonic()
        self.scripts: list[ScriptRun] = []
        self.gone_at: float | None = None  # when the lost database's server was gone

    # --- the ops guide's tools ---------------------------------------------------------------------
    def script(self, name: str, *args: str, env: dict[str, str] | None = None) -> ScriptRun:
        run = run_script(name, args, self.conf_path, env)
        self.scripts.append(run)
        self.record.measure(scripts=[r.to_json() for r in self.scripts])
        return run

    def backup(self, *flags: str, env: dict[str, str] | None = None) -> Backup:
        """backup.sh, then what it wrote verified as the restore will (-v)."""
        self.record.note(f"backing up: backup.sh {' '.join(flags)}".rstrip())
        run = self.script("backup.sh", *flags, env=env)
        self.record.expect([ran_ok(run)])
        if run.returncode != 0:
            return Backup(run, None)
        path = (self.conf.backup_dir / archive.LATEST).resolve()
        checked = archive.verify(path)
        self.record.expect([none_of(f"problems verifying {path.name}", len(checked.problems),
                                    detail="; ".join(checked.problems))])
        return Backup(run, path, checked.manifest)

    def restore(self, *args: str) -> ScriptRun:
        self.record.note(f"restoring: disaster-recovery.sh {' '.join(args)}")
        run = self.script("disaster-recovery.sh", *args)
        self.record.expect([ran_ok(run)])
        self.record.measure(restore_s=round(run.seconds, 2))
        if run.returncode != 0:
            self._rescue()
        return run

    def _rescue(self) -> None:
        """A restore that failed may leave no database at all: start an empty one (and the backend,
        which creates its schema), so that the loss is measured and the stack serves whoever comes next."""
        postgres = self.stack.service("postgres")
        try:
            postgres.spec.check(postgres.ctx)
            return
        except Exception:  # noqa: BLE001 - not answering: rescue it
            pass
        postgres.lose_data()
        shutil.rmtree(postgres.spec.restore_staging(postgres.ctx), ignore_errors=True)
        postgres.start_healthy()
        self.stack.service("backend").restart()
        self.stack.wait_ready()
        self.record.measure(rescued="the restore left no working database: an empty one was started")

    def lose_database(self) -> float:
        """Destroy PostgreSQL's data (its directory, or its volume) with the server: return when."""
        self.experiment.begin_method(disrupts=True)
        self.schema_before = schema(self.dsn)
        lost_at = time.monotonic()
        self.stack.service("postgres").lose_data()
        # Until the server is gone it may still commit what the broker acknowledged meanwhile: those
        # readings go with the data (the RPO's), only what comes after is the broker's to keep.
        self.gone_at = time.monotonic()
        self.record.measure(lost_at=self._iso(lost_at), loss_took_s=round(self.gone_at - lost_at, 3))
        return lost_at

    def accident(self, sql: str) -> float:
        """An operator's mistake, straight on the database (e.g. a DELETE without its WHERE)."""
        self.experiment.begin_method(disrupts=True)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(sql).rowcount
        self.record.measure(accident={"sql": sql, "rows": rows})
        return time.monotonic()

    def rejected(self, args: Sequence[str], reason: str, what: str, env: dict[str, str] | None = None) -> ScriptRun:
        """A run that must fail, and say ``reason`` (a fragment of its last words)."""
        run = self.script(args[0], *args[1:], env=env)
        self.record.expect([
            none_of(f"{what}: accepted (exit status 0)", 1 if run.returncode == 0 else 0, detail=run.said),
            none_of(f"{what}: failed without saying why ({reason!r} not in its message)",
                    0 if reason in run.stderr else 1, detail=run.said)])
        return run

    def failure_detected(self, reason: str, conf: BackupConf | None = None) -> None:
        """The backup check (what monitoring runs, the runbook's first step) reports the failure."""
        from .recovery.status import backup_status
        status = backup_status(conf or self.conf)
        self.record.measure(backup_status={"last_run": status.last_run, "problems": status.problems})
        said = " ".join(status.problems)
        self.record.expect([none_of(f"backup failure undetected by the backup check ({reason!r} not reported)",
                                    0 if "the last backup failed" in said and reason in said else 1,
                                    detail=said or "it reports no problem")])

    def nothing_passes_verification(self, directory: Path) -> None:
        """A failed backup leaves nothing that could pass for a backup: no file that verifies, no
        partial file, no staging directory."""
        since = self.scripts[-1].started + self.to_epoch - 1
        new = [p for p in directory.iterdir() if p.name != "backup.log" and p.lstat().st_mtime > since]
        left = [p.name for p in new if not p.name.startswith("fulsk-backup-")]  # partial files, staging
        left += [p.name for p in directory.iterdir() if p.name not in left and (
            p.name.startswith((".staging-", ".restore-")) or p.name.endswith(".partial"))]
        passing = [p.name for p in new if p.name.startswith("fulsk-backup-") and archive.verify(p).ok]
        self.record.expect([none_of("files left by the failed backup", len(left), detail=", ".join(left[:5])),
                            none_of("new backups that pass verification after the failure", len(passing),
                                    detail=", ".join(passing))])

    def live_state(self) -> dict[str, Any]:
        """What a refused restore must not have touched: the servers (not restarted) and the rows."""
        import redis
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
            cutoff = conn.execute("SELECT now() - interval '1 second'").fetchone()[0]
            rows, digest = conn.execute(OURS + " SELECT count(*), md5(string_agg(inverter_id || seq::text || "
                                        "power_w::text, ',' ORDER BY inverter_id, seq)) FROM readings "
                                        "WHERE ts < %s", (cutoff,)).fetchone()
        client = redis.Redis.from_url(self.stack.endpoints.redis_url, socket_timeout=5)
        try:
            run_id = client.info("server")["run_id"]
        finally:
            client.close()
        return {"postgres_started": started.isoformat(), "cutoff": cutoff, "rows": rows, "digest": digest,
                "redis_run_id": run_id}

    def untouched(self, before: dict[str, Any]) -> None:
        now = self.live_state()
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            rows, digest = conn.execute(OURS + " SELECT count(*), md5(string_agg(inverter_id || seq::text || "
                                        "power_w::text, ',' ORDER BY inverter_id, seq)) FROM readings "
                                        "WHERE ts < %s", (before["cutoff"],)).fetchone()
        changed = [what for what, same in (
            ("PostgreSQL was restarted", now["postgres_started"] == before["postgres_started"]),
            ("Redis was restarted", now["redis_run_id"] == before["redis_run_id"]),
            (f"the readings stored before it changed ({before['rows']} rows, now {rows})",
             (rows, digest) == (before["rows"], before["digest"])),
        ) if not same]
        self.record.expect([none_of("live data or servers touched by the refused restore", len(changed),
                                    detail="; ".join(changed))])

    # --- measurements ------------------------------------------------------------------------------
    def served_again(self, since: float, what: str = "RTO (loss to fresh data served)",
                     target_s: float | None = None) -> float | None:
        """Wait until users are served fresh, correct readings again; judge the time from ``since``."""
        target_s = target_s if target_s is not None else self.settings.backup.rto_s
        s = self.settings
        back = self.experiment.served_again(
            self.scripts[-1].ended, time.monotonic() + s.recovery.target_s + s.hang_s + s.steady_state.streak_s)
        rto = None if back is None else back - since
        restore = self.scripts[-1]
        self.record.expect([at_most(what, rto if rto is not None else float("inf"), target_s, "s",
                                    detail=f"restore {restore.seconds:.1f} s, then "
                                           + (f"{back - restore.ended:.1f} s to a steady streak" if back else
                                              "users were never served fresh data again"))])
        self.record.measure(rto_s=None if rto is None else round(rto, 2), rto_target_s=target_s,
                            rto_margin_s=None if rto is None else round(target_s - rto, 2))
        return rto

    def answers_match_database(self, inverter_ids: Sequence[str] | None = None, *, phase: str = "after the restore"
                               ) -> list[str]:
        """What users are served must be what the database holds now: each inverter's latest reading
        (a cache entry that predates the restore names a reading the database no longer has, or an
        older one) and its recent history."""
        ids = list(inverter_ids or self.experiment.fleet.inverter_ids)
        lag = self.settings.steady_state.max_staleness_s
        base = self.stack.endpoints.frontend_url
        wrong: list[str] = []
        now = time.time()
        start, end = round(now - 30, 3), round(now - 2, 3)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn, requests.Session() as http:
            for inverter in ids:
                newest = _latest(conn, inverter)
                answer = http.get(f"{base}/api/inverters/{inverter}/latest", timeout=self.settings.hang_s)
                if answer.status_code == 404:
                    if newest is not None:
                        wrong.append(f"{inverter}: no latest reading served; the database has #{newest[0]}")
                    continue
                if answer.status_code != 200:
                    wrong.append(f"{inverter}: latest answered {answer.status_code}")
                    continue
                seq = int(answer.json()["seq"])
                stored = conn.execute(OURS + " SELECT extract(epoch FROM ts) FROM readings WHERE inverter_id = %s "
                                      "AND seq = %s", (inverter, seq)).fetchone()
                if stored is None:
                    wrong.append(f"{inverter}: latest is #{seq}, which the database does not hold")
                elif newest is not None and float(stored[0]) < newest[1] - lag:
                    wrong.append(f"{inverter}: latest is #{seq}, {newest[1] - float(stored[0]):.1f} s older than "
                                 f"the database's #{newest[0]}")
                before = _seqs(conn, inverter, start, end)
                history = http.get(f"{base}/api/inverters/{inverter}/readings?from={start}&to={end}",
                                   timeout=self.settings.hang_s)
                after = _seqs(conn, inverter, start, end)
                served = {int(r["seq"]) for r in history.json().get("readings", [])} if history.ok else None
                if served is None:
                    wrong.append(f"{inverter}: history answered {history.status_code}")
                elif not before <= served <= after:
                    wrong.append(f"{inverter}: history serves {len(served)} readings, the database has "
                                 f"{len(after)} ({len(served - after)} it does not hold, {len(before - served)} "
                                 f"missing)")
        self.record.expect([none_of(f"answers the database contradicts ({phase})", len(wrong),
                                    evidence={"inverters": len(ids)}, detail="; ".join(wrong[:3]))],
                           [Evidence(f"inverters whose answers were compared ({phase})", len(ids), 1)])
        return wrong

    def schema_matches(self) -> None:
        after = schema(self.dsn)
        differ = sorted(set(self.schema_before) ^ set(after))
        self.record.expect([none_of("schema differences after the restore (tables, columns, types, indexes)",
                                    len(differ), detail=", ".join(differ[:5]))])

    # --- loss, judged by the ledger --------------------------------------------------------------
    def archive_wal(self) -> float:
        """Switch to a new WAL segment and wait until the archiver reports it archived: what
        ``archive_timeout`` does on its own. Return when (monotonic): everything committed before
        it is in the archive, if archiving works."""
        with psycopg.connect(self.dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True, connect_timeout=5) as conn:
            switched = time.monotonic()
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            deadline = time.monotonic() + self.settings.backup.archive_timeout_s
            while time.monotonic() < deadline:
                last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
                if last and last >= segment:
                    break
                time.sleep(0.1)
        self.record.measure(wal_archived={"segment": segment, "at": self._iso(switched)})
        return switched

    def rpo(self, lost_at: float, kept_until: float, target_s: float, what: str) -> Rpo:
        """The loss a restore after a total loss may cause: only what was acknowledged after
        ``kept_until`` (monotonic: the backup's snapshot, or the last archived WAL) and before the
        loss, spanning at most ``target_s`` (``experiment.allow_loss`` it before the restore: from
        then on answers are not due to hold those readings; checks.restore judges it)."""
        return Rpo(lost_at, self.gone_at or lost_at, kept_until, target_s, what, self.settings.backup.commit_margin_s)

    def point_in_time(self, target: datetime, restore: ScriptRun) -> PointInTime:
        """What a point-in-time ``restore`` to ``target`` may discard, measured once it is done: when
        it had the database stopped (the stack committed until then what the target discards), and
        what was committed after the target and before the stop yet is present (``experiment.
        allow_loss`` it; checks.restore judges it with the ledger)."""
        stopped = self.stopped_at("postgres", restore.started) or restore.ended
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            late = conn.execute(
                OURS + " SELECT inverter_id, seq FROM readings WHERE pg_xact_commit_timestamp(xmin) > %s "
                "AND pg_xact_commit_timestamp(xmin) < %s",
                (target, datetime.fromtimestamp(stopped + self.to_epoch, timezone.utc))).fetchall()
        return PointInTime(target.timestamp() - self.to_epoch, target.isoformat(), stopped,
                           self.settings.backup.commit_margin_s, [(i, int(seq)) for i, seq in late])

    def stopped_at(self, service: str, after: float) -> float | None:
        """When the restore had the stack stop ``service`` (its control socket's log)."""
        return next((t for t, action, name in self.stack.control_log()
                     if name == service and action == "stop" and t >= after), None)

    def quiet_inverters(self) -> Fleet:
        """Inverters of their own (not started), tracked by the ledger, for a scenario to silence:
        nothing refreshes what a cache holds of them after a restore."""
        quiet = make_fleet(self.stack, self.settings)
        self.experiment.track(quiet)
        return quiet

    def monotonic(self, epoch: float) -> float:
        return epoch - self.to_epoch

    def _iso(self, monotonic: float) -> str:
        return datetime.fromtimestamp(monotonic + self.to_epoch, timezone.utc).isoformat()


def _latest(conn: psycopg.Connection, inverter: str) -> tuple[int, float] | None:
    row = conn.execute(OURS + " SELECT seq, extract(epoch FROM ts) FROM readings WHERE inverter_id = %s "
                       "ORDER BY ts DESC LIMIT 1", (inverter,)).fetchone()
    return (int(row[0]), float(row[1])) if row else None


def _seqs(conn: psycopg.Connection, inverter: str, start: float, end: float) -> set[int]:
    rows = conn.execute(OURS + " SELECT seq FROM readings WHERE inverter_id = %s AND ts >= to_timestamp(%s) "
                        "AND ts <= to_timestamp(%s)", (inverter, start, end)).fetchall()
    return {int(r[0]) for r in rows}


def schema(dsn: str) -> list[str]:
    """The public schema as comparable lines: every column with its type, every index."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        columns = conn.execute(
            OURS + " SELECT table_name || '.' || column_name || ' ' || data_type || "
            "CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1").fetchall()
        indexes = conn.execute(OURS + " SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "ORDER BY 1").fetchall()
    return [r[0] for r in columns] + [r[0] for r in indexes]

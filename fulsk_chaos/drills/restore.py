"""Restore drills: the ops guide's backup tools run against a stack the inverter fleet keeps
writing to, and judged with numbers: RTO from the loss to fresh data served, RPO from the ledger
(the acknowledged readings that did not survive, and the span they cover: checks.restore), each
against its target; the API held to what the restored database says (checks.answers).

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

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import psycopg

from ..backup import archive
from ..backup.conf import BackupConf, load, written_for
from ..backup.scripts import Backup, ScriptRun, ran_ok, run_script, switch_wal
from ..checks import answers
from ..checks.restore import PointInTime, Rpo
from ..figures import RestoreFigures
from .experiment import Experiment
from .instruments import make_fleet
from ..probes import Fleet
from ..probes.truth import OURS, answers_beside_database, live_state, rows_until, schema
from ..verdict import Expectation, at_most, none_of


class RestoreDrill:
    """The ops guide's backup tools as a drill's method: what they do to the stack, and their
    recovery measured (RTO), on the experiment (its phases, its record, its ledger)."""

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
        self.record.measure(RestoreFigures(scripts=[r.to_json() for r in self.scripts]))
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
        self.record.measure(RestoreFigures(restore_s=round(run.seconds, 2)))
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
        self.record.measure(RestoreFigures(rescued="the restore left no working database: an empty one was started"))

    def lose_database(self) -> float:
        """Destroy PostgreSQL's data (its directory, or its volume) with the server: return when."""
        self.experiment.begin_method(disrupts=True)
        self.schema_before = schema(self.dsn)
        lost_at = time.monotonic()
        self.stack.service("postgres").lose_data()
        # Until the server is gone it may still commit what the broker acknowledged meanwhile: those
        # readings go with the data (the RPO's), only what comes after is the broker's to keep.
        self.gone_at = time.monotonic()
        self.record.measure(RestoreFigures(lost_at=self._iso(lost_at), loss_took_s=round(self.gone_at - lost_at, 3)))
        return lost_at

    def accident(self, sql: str, params: dict[str, Any] | None = None) -> float:
        """An operator's mistake, straight on the database (e.g. a DELETE without its WHERE; the
        contract's ``ledger.delete_site``). One that touched no row created nothing to recover
        from: the verdict is then ``error``, never ``pass``."""
        self.experiment.begin_method(disrupts=True)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(sql, params).rowcount
        self.record.measure(RestoreFigures(accident={"sql": sql, "params": params, "rows": rows}))
        self.record.expect([Expectation("the accident: its condition reached (rows it changed)", int(rows > 0), "==", 1,
                                        evidence={"rows": rows}, detail=f"{rows} rows changed by {sql}",
                                        kind="condition")])
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
        from ..backup.status import backup_status
        status = backup_status(conf or self.conf)
        self.record.measure(RestoreFigures(backup_status={"last_run": status.last_run, "problems": status.problems}))
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
        return live_state(self.dsn, self.stack.endpoints.redis_url, self.stack.contract)

    def untouched(self, before: dict[str, Any]) -> None:
        now = self.live_state()
        rows, digest = rows_until(self.dsn, before["cutoff"], self.stack.contract)
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
        self.record.measure(RestoreFigures(rto_s=None if rto is None else round(rto, 2), rto_target_s=target_s,
                                           rto_margin_s=None if rto is None else round(target_s - rto, 2)))
        return rto

    def answers_match_database(self, inverter_ids: Sequence[str] | None = None, *, phase: str = "after the restore"
                               ) -> list[str]:
        """What users are served must be what the database holds now (checks.answers)."""
        ids = list(inverter_ids or self.experiment.fleet.inverter_ids)
        found = answers_beside_database(self.dsn, self.stack.endpoints.frontend_url, ids, self.settings.hang_s,
                                        contract=self.stack.contract)
        self.record.expect(*answers.judge(found, self.settings.steady_state.max_staleness_s, phase))
        return answers.contradictions(found, self.settings.steady_state.max_staleness_s)

    def schema_matches(self) -> None:
        after = schema(self.dsn)
        differ = sorted(set(self.schema_before) ^ set(after))
        self.record.expect([none_of("schema differences after the restore (tables, columns, types, indexes)",
                                    len(differ), detail=", ".join(differ[:5]))])

    # --- loss, judged by the ledger --------------------------------------------------------------
    def archive_wal(self) -> float:
        """Have PostgreSQL archive its WAL now (what ``archive_timeout`` does): return when (monotonic)."""
        segment, switched = switch_wal(self.dsn, self.settings.backup.archive_timeout_s)
        self.record.measure(RestoreFigures(wal_archived={"segment": segment, "at": self._iso(switched)}))
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
            late = conn.execute(f"{OURS} {self.stack.contract.ledger.committed}", {
                "after": target, "before": datetime.fromtimestamp(stopped + self.to_epoch, timezone.utc)}).fetchall()
        identity = (lambda v: int(round(v.timestamp() * 1000))) if self.stack.contract.ledger.identity == "ts" else int
        return PointInTime(target.timestamp() - self.to_epoch, target.isoformat(), stopped,
                           self.settings.backup.commit_margin_s, [(i, identity(v)) for i, v in late])

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

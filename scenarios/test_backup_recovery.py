"""Backup and disaster recovery: the ops guide's backup.sh and disaster-recovery.sh, run while the
inverter fleet writes and users read, and judged as RTO and RPO against their targets.

Hypothesis: a backup can be restored. After a total loss of the database (its data directory or
volume destroyed), the latest backup brings the stack back to serving fresh, correct data within
``backup.rto_s``; the acknowledged readings lost are only those after the backup (the WAL archive
after the last archived segment) and span at most ``backup.rpo_dump_s`` (``backup.rpo_wal_s``);
nothing acknowledged while the database was gone is lost, nothing is stored twice or altered. A
point-in-time restore holds every reading acknowledged before its target and nothing committed
after it. After any restore users are served what the restored database holds, never what a
cache remembers from before. A damaged backup is refused, by -v and by a restore, leaving the
live data untouched; a backup that fails says so, leaves nothing that passes for a backup, and
the backup check reports it.

Method: backup.sh (daily or --full); then the data destroyed, an accidental DELETE, a damaged
backup, a full disk, an unreachable database, or Redis restored from its snapshot; then
disaster-recovery.sh as the guide writes it. Rollback: the stack is healed after each scenario.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from fulsk_chaos.backup import BackupError, load, written_for
from fulsk_chaos.backup.scripts import SmallFilesystem, damage

pytestmark = [pytest.mark.scenario, pytest.mark.recovery]


@pytest.mark.parametrize("kind", [pytest.param("daily", marks=[pytest.mark.quick, pytest.mark.provider]), "full"])
def test_total_loss(kind, experiment, restore_drill, chaos_settings):
    """daily: the dump restored (what was acknowledged after the backup may be lost); full: the
    base backup and the WAL archive replayed to its end (only what was acknowledged after the last
    archived WAL segment may be lost)."""
    targets, window = chaos_settings.backup, chaos_settings.steady_state.window_s
    with experiment:
        experiment.steady_state("before")
        backup = restore_drill.backup(*(["--full"] if kind == "full" else []))
        time.sleep(window)
        if kind == "daily":
            kept_until, target, what = restore_drill.monotonic(backup.taken_at), targets.rpo_dump_s, "the backup"
        else:  # archive_timeout passing, without waiting for it
            kept_until, target, what = restore_drill.archive_wal(), targets.rpo_wal_s, "the last WAL archived"
            time.sleep(window)
        lost_at = restore_drill.lose_database()
        experiment.allow_loss(restore_drill.rpo(lost_at, kept_until, target, what))
        restore_drill.restore("-f", "latest_backup.tar.gz")
        restore_drill.served_again(lost_at)
        experiment.steady_state("after")
        restore_drill.answers_match_database()
        restore_drill.schema_matches()
    experiment.verdict()


def test_point_in_time(experiment, restore_drill, chaos_settings):
    """An accidental DELETE, undone by recovering the database to a moment before it. Some
    inverters go quiet after the target: what a cache remembers of them the database no longer has."""
    window = chaos_settings.steady_state.window_s
    quiet = restore_drill.quiet_inverters()
    with experiment:
        experiment.steady_state("before")
        restore_drill.backup("--full")
        quiet.start()
        time.sleep(window)
        target = datetime.now(timezone.utc)
        time.sleep(window)
        quiet.stop()
        site = next(iter(experiment.fleet.sent().values()))["site_id"]
        restore_drill.accident(experiment.stack.contract.ledger.delete_site, {"site": site})
        run = restore_drill.restore("-f", "latest_backup.tar.gz", "--partial", "postgres",
                                     "--to", target.isoformat())
        experiment.allow_loss(restore_drill.point_in_time(target, run))
        restore_drill.served_again(run.started, "RTO (restore begun to fresh data served)")
        experiment.steady_state("after")
        restore_drill.answers_match_database([*experiment.fleet.inverter_ids, *quiet.inverter_ids])
    experiment.verdict()


@pytest.mark.parametrize("how, reason", [("truncated", "truncated or corrupted"),
                                         ("flipped-byte", "failed verification"),
                                         ("manifest-mismatch", "does not match the manifest")])
def test_damaged_backup_refused(how, reason, experiment, restore_drill, tmp_path):
    with experiment:
        experiment.steady_state("before")
        good = restore_drill.backup()
        bad = damage(good.path, how, tmp_path)
        before = restore_drill.live_state()
        experiment.begin_method()
        restore_drill.rejected(["disaster-recovery.sh", "-v", "-f", str(bad)], reason, f"-v of a {how} backup")
        restore_drill.rejected(["disaster-recovery.sh", "-f", str(bad)], reason, f"a restore of a {how} backup")
        restore_drill.untouched(before)
        experiment.steady_state("after")
    experiment.verdict()


@pytest.mark.parametrize("cause", ["disk-full", "database-unreachable"])
def test_backup_failure(cause, experiment, restore_drill, stack):
    """The Backup Failure runbook's cases: the failure is loud, leaves nothing, and is detected;
    once the cause is gone a retried backup succeeds and verifies."""
    with experiment:
        experiment.steady_state("before")
        experiment.begin_method()
        if cause == "disk-full":
            small = SmallFilesystem("1m", stack.dir)  # less than a --full backup of the stack takes
            try:
                small.mount()
            except BackupError as exc:
                pytest.skip(str(exc))
            with small as directory:
                env = {"BACKUP_DIR": str(directory)}
                restore_drill.rejected(["backup.sh", "--full"], "No space left on device", "a backup to a full disk",
                                        env=env)
                restore_drill.nothing_passes_verification(directory)
                restore_drill.failure_detected("No space left on device", load(written_for(stack), env))
        else:
            with experiment.inject("pause", "postgres") as paused:
                restore_drill.rejected(["backup.sh"], "unreachable", "a backup of a database that does not answer")
            experiment.recover(paused)
            restore_drill.nothing_passes_verification(restore_drill.conf.backup_dir)
            restore_drill.failure_detected("unreachable")
        restore_drill.backup()  # the runbook's retry, once the cause is gone
        experiment.steady_state("after")
    experiment.verdict()


def test_redis_snapshot_restore(experiment, restore_drill, stack, chaos_settings):
    """Redis restored from a snapshot older than the database: the cached answers it brings back
    must not be served (the database is the truth)."""
    quiet = restore_drill.quiet_inverters()  # they go quiet after the snapshot: nothing refreshes them
    with experiment:
        experiment.steady_state("before")
        quiet.start()
        time.sleep(1.0)
        restore_drill.backup()
        time.sleep(2 * chaos_settings.steady_state.max_staleness_s + 0.5)
        quiet.stop()
        experiment.begin_method()
        run = restore_drill.restore("--partial", "redis", "-f", "latest_backup.tar.gz")
        restore_drill.served_again(run.started, "restore begun to fresh data served",
                                    target_s=chaos_settings.recovery.target_s)
        experiment.steady_state("after")
        restore_drill.answers_match_database([*experiment.fleet.inverter_ids, *quiet.inverter_ids])
    experiment.verdict()

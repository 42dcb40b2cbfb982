"""The incidents a runbook drill creates (conditions: a backup that fails, a primary that dies)
and what it checks once the runbook ran (checks), registered by name for the runbook files
(fixtures/runbooks). Another module registers more the same way (intrusion, scaling)."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import psycopg

from ..figures import RunbookFigures
from ..backup import archive
from ..backup.conf import BackupError, load, written_for
from ..backup.scripts import SmallFilesystem, run_script
from ..backup.status import backup_status
from ..checks.restore import Rpo
from ..verdict import Expectation, at_most, none_of
from .model import RunbookError, Trigger
from .drill import RunbookDrill, check, condition
from .runner import RunbookRun





STALE_DAYS = 60  # older than the 30 days of retention: what a broken prune leaves to fill the disk


def fill_with_stale_backups(directory: os.PathLike, leave_free: int) -> list[str]:
    """Old backups, as a retention that stopped working leaves them, until ``leave_free`` bytes are left."""
    written: list[str] = []
    now = datetime.now(timezone.utc)
    for day in range(STALE_DAYS, 10 * STALE_DAYS):
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
        if free <= leave_free:
            break
        when = now - timedelta(days=day)
        path = os.path.join(directory, archive.backup_name("daily", when))
        size = min(1 << 20, free - leave_free)
        with open(path, "wb") as out:
            out.write(os.urandom(size))
        os.utime(path, (when.timestamp(), when.timestamp()))
        written.append(path)
    return written


@condition("backup-fails")
@contextlib.contextmanager
def backup_fails(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """The nightly backup.sh fails, for ``params.cause``: disk-full (BACKUP_DIR on a small
    filesystem full of backups a broken retention left), or database-unreachable (PostgreSQL
    paused: connections hang)."""
    stack, cause = drill.stack, trigger.params.get("cause")
    if cause == "disk-full":
        small = SmallFilesystem(str(trigger.params.get("size", "16m")), stack.dir)
        try:
            small.mount()
        except BackupError as exc:
            raise RunbookError(f"{trigger.case}: {exc}") from None
        with small as directory:
            fill_with_stale_backups(directory, leave_free=16 * 1024)
            env = {"BACKUP_DIR": str(directory)}
            nightly = run_script("backup.sh", [], written_for(stack), env)
            drill.valid_if("trigger: the nightly backup.sh failed on the full disk", nightly.returncode != 0,
                           nightly.returncode, nightly.stderr.strip()[-200:])
            yield env
    elif cause == "database-unreachable":
        with drill.experiment.inject("pause", "postgres"):
            nightly = run_script("backup.sh", [], written_for(stack))
            drill.valid_if("trigger: the nightly backup.sh failed on the unreachable database",
                           nightly.returncode != 0, nightly.returncode, nightly.stderr.strip()[-200:])
            yield {}
    else:
        raise RunbookError(f"{trigger.case}: backup-fails needs params.cause: disk-full or database-unreachable")


# --- checks ------------------------------------------------------------------------------------
@check("backup-verifies")
def backup_verifies(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """Not the runbook's word for it: the newest backup, made after the trigger, passes verification,
    and the backup check (last run, age, integrity) is clear."""
    conf = load(written_for(drill.stack), drill.env)
    latest = conf.backup_dir / archive.LATEST
    newest = latest.resolve() if latest.exists() else None
    onset = datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - run.started)
    fresh = newest is not None and (archive.stamp_of(newest.name) or onset) >= onset.replace(microsecond=0)
    problems = archive.verify(newest).problems if newest is not None else ["no backup"]
    status = backup_status(conf)
    return [none_of("problems with the backup made after the trigger", len(problems) if fresh else 1,
                    detail="; ".join(problems) if fresh else f"the newest backup ({newest and newest.name}) "
                                                             f"predates the trigger"),
            none_of("backup check problems after the runbook", len(status.problems), detail="; ".join(status.problems))]


@check("names-slow-dependency")
def names_slow_dependency(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """The diagnostics named the dependency the slowness was put on (the edge's upstream)."""
    slow = (trigger.target or "").split("-")[-1]
    named = run.findings.get("slow_dependency")
    return [Expectation("the diagnostics named the slow dependency", 1 if named == slow else 0, "==", 1,
                        detail=f"named {named!r}, slowness was on {slow!r}")]


@check("api-baseline")
def api_baseline(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """After the fix, the API meets the ops guide's response-time baseline again (p95, one window)."""
    exp = drill.experiment
    obs = exp.observe("after the fix")
    api = obs.samples.target("api")
    p95 = api.quantile_ms(0.95) if len(api) else None
    return [at_most("api p95 after the fix (ops guide baseline)", p95, drill.settings.baselines.api_response_ms, "ms",
                    evidence={"samples": len(api)})]


# --- a failing primary --------------------------------------------------------------------------
def replication_state(stack: Any) -> dict[str, Any]:
    """What the primary says of its standby: WAL sent but not replayed (bytes) and the replay lag."""
    with psycopg.connect(stack.service("postgres").address, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
            "EXTRACT(EPOCH FROM replay_lag)::float FROM pg_stat_replication").fetchone()
    if row is None:
        return {"standby_connected": False}
    return {"standby_connected": True, "state": row[1], "replay_lag_bytes": row[2], "replay_lag_s": row[3]}


@condition("primary-fails")
@contextlib.contextmanager
def primary_fails(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """The primary's server dies (SIGKILL) and stays down: only a failover brings the stack back.
    The replication lag at that moment is recorded; acknowledged readings lost are judged against
    the runbook's RPO. No rollback: the scenario has a stack of its own (``stack: {standby: true}``)."""
    stack = drill.stack
    if "postgres-standby" not in stack.services:
        raise RunbookError(f"{trigger.case}: primary-fails needs a standby: give the runbook 'stack: {{standby: true}}'")
    lag = replication_state(stack)
    drill.valid_if("trigger: the standby was streaming when the primary failed", lag.get("state") == "streaming",
                   lag.get("state"))
    failed_at = time.monotonic()
    stack.service("postgres").kill(signal.SIGKILL)
    gone_at = time.monotonic()
    rpo_s = drill.runbook.rpo_s if drill.runbook and drill.runbook.rpo_s is not None else 0.0
    drill.experiment.allow_loss(Rpo(failed_at, gone_at, failed_at - rpo_s, rpo_s, f"{rpo_s:g} s before the failure",
                                    drill.settings.backup.commit_margin_s))
    drill.experiment.record.measure(RunbookFigures(replication_at_failure=lag))
    yield {}


@check("failover-integrity")
def failover_integrity(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """One primary, the promoted standby, and the backend writing to it. From here the ledger reads
    the truth there."""
    primaries, down = [], []
    for name in ("postgres", "postgres-standby"):
        try:
            with psycopg.connect(drill.stack.service(name).address, connect_timeout=2) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    primaries.append(name)
        except psycopg.Error:
            down.append(name)
    if primaries == ["postgres-standby"]:
        drill.stack.database = "postgres-standby"
    return [Expectation("the promoted standby is the one primary", 1 if primaries == ["postgres-standby"] else 0,
                        "==", 1, detail=f"primaries: {primaries or 'none'}; not answering: {down or 'none'}")]

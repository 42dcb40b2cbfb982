"""Is there a good, recent backup? The check monitoring runs (and the Backup Failure runbook's
first step): the last run's outcome in backup.log, the newest backup's age, and whether it verifies."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import archive
from .conf import BackupConf

_LINE = re.compile(r"^(\S+) backup\.sh: (OK|FAILED:?)\s*(.*)$")


@dataclass
class BackupStatus:
    last_run: str | None = None        # "OK ..." or "FAILED: ...", the last outcome backup.sh logged
    last_run_at: datetime | None = None
    newest: str | None = None          # the newest backup's file name
    newest_age_h: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backup_status(conf: BackupConf, max_age_h: float = 26.0, now: datetime | None = None,
                  verify: bool = True) -> BackupStatus:
    """``max_age_h``: a daily backup, plus the slack of a late run."""
    now = now or datetime.now(timezone.utc)
    status = BackupStatus()
    try:
        lines = conf.log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        match = _LINE.match(line)
        if match:
            status.last_run = f"{match.group(2).rstrip(':')} {match.group(3)}".strip()
            status.last_run_at = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
            break
    if status.last_run is None:
        status.problems.append(f"{conf.log_path}: no backup run recorded")
    elif status.last_run.startswith("FAILED"):
        status.problems.append(f"the last backup failed at {status.last_run_at.isoformat()}: "
                               f"{status.last_run[len('FAILED '):]}")
    backups = sorted((archive.stamp_of(p.name), p) for p in conf.backup_dir.glob("fulsk-backup-*.tar.gz")
                     if archive.stamp_of(p.name)) if conf.backup_dir.is_dir() else []
    if not backups:
        status.problems.append(f"no backup in {conf.backup_dir}")
        return status
    stamp, newest = backups[-1]
    status.newest, status.newest_age_h = newest.name, (now - stamp) / timedelta(hours=1)
    if status.newest_age_h > max_age_h:
        status.problems.append(f"the newest backup, {newest.name}, is {status.newest_age_h:.0f} h old "
                               f"(more than {max_age_h:g} h)")
    if verify:
        checked = archive.verify(newest)
        if checked.problems:
            status.problems.append(f"the newest backup, {newest.name}, does not verify: {'; '.join(checked.problems)}")
    return status

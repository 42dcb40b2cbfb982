"""Backups and disaster recovery: the ops guide's tools (``backup.sh``, ``disaster-recovery.sh``)
and the drills that measure them as RTO and RPO against their targets."""
from .archive import LATEST, Verification, verify
from .conf import BackupConf, BackupError, load, written_for

__all__ = ["LATEST", "BackupConf", "BackupError", "Verification", "load", "verify", "written_for"]

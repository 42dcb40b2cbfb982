"""PostgreSQL's streaming-replication standby (the ops guide's ``postgres-standby``): a hot standby
cloned from the primary with ``pg_basebackup -R``, replicating through its own proxied edge (so
network faults reach replication too). Not in every stack: ``stack.standby = true`` adds it.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ..errors import StackError
from .postgres import Postgres, _bindir_candidates, dsn
from .spec import ServiceContext, find_binary, hand_over

NAME = "postgres-standby"


def primary_conninfo(ctx: ServiceContext) -> str:
    """The primary, as the standby reaches it (through the proxy on its edge)."""
    return dsn(ctx.topology, ctx.upstream_port("postgres"), "postgres")


class PostgresStandby(Postgres):
    name = NAME
    depends_on = ("postgres",)
    profile = "standby"
    compose_service = NAME  # in the file's "standby" profile

    def prepare(self, ctx: ServiceContext) -> None:
        """A data directory cloned from the primary (with standby.signal and primary_conninfo), once;
        in a container, the image's entrypoint clones it (FULSK_PRIMARY_CONNINFO)."""
        self.prepare_archive(ctx)
        if ctx.in_container:
            return
        data = self.data_dir(ctx)
        if (data / "PG_VERSION").exists():
            return
        hand_over(ctx.workdir, ctx.run_as)
        clone(find_binary("pg_basebackup", *_bindir_candidates("pg_basebackup")), primary_conninfo(ctx), data,
              ctx.run_as, timeout_s=ctx.settings.stack.start_timeout_s)

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {**super().env(ctx), "FULSK_PRIMARY_CONNINFO": primary_conninfo(ctx)}

    def after_start(self, ctx: ServiceContext) -> None:
        """Nothing to create: a standby is read-only, and has what the primary has."""

    def ready(self, ctx: ServiceContext) -> None:
        """Streaming from the primary, not merely up."""
        import psycopg
        self.check(ctx)
        with psycopg.connect(dsn(ctx.topology, ctx.port, "postgres"), connect_timeout=2) as conn:
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            recovering = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if recovering and (row is None or row[0] != "streaming"):
            raise RuntimeError(f"not streaming from the primary (wal receiver: {row[0] if row else 'none'})")


def clone(pg_basebackup: str, conninfo: str, data: Path, user: str | None, timeout_s: float) -> None:
    """pg_basebackup -R until the primary answers (it may still be starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run([pg_basebackup, "-d", conninfo, "-D", str(data), "-R", "-X", "stream",
                               "-c", "fast", "--no-sync"], user=user, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise StackError(f"pg_basebackup of the primary for {NAME} failed: {done.stderr.strip()[-400:]}")
        subprocess.run(["rm", "-rf", str(data)])
        time.sleep(0.5)


STANDBY = SPEC = PostgresStandby()  # only where stack.standby is set (its profile)

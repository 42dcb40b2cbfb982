"""PostgreSQL 15: the production database (TimescaleDB is used by the backend when present)."""
from __future__ import annotations

import glob
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StackError
from .spec import ServiceContext, ServiceSpec, Topology, find_binary, hand_over

if TYPE_CHECKING:  # imported where used: bootstrap.sh reads the catalogue before pip installs them
    import psycopg

DB_USER = "fulsk_user"  # the ops guide's database user
DB_NAME = "fulsk"
SOCKET_DIR = "/var/run/postgresql"  # in the image (the official image's)


# PostgreSQL's archive_command (it runs it in the data directory). Each cluster archives into a
# directory of its own, named by its system identifier (the first 8 bytes of pg_control): a cluster
# created anew (initdb after a loss) restarts its segment names, and must never be taken for the
# one whose segments are already there. A segment already archived is accepted only if identical.
ARCHIVE_SCRIPT = "archive-wal.sh"
ARCHIVE_WAL = """#!/bin/sh
set -eu
dir="$archive/$(od -An -tu8 -N8 global/pg_control | tr -d ' ')"
mkdir -p "$dir"
if [ -f "$dir/$2.gz" ]; then
  gunzip -c "$dir/$2.gz" | cmp -s - "$1"
  exit
fi
gzip -1 -c "$1" > "$dir/$2.gz.tmp"
mv "$dir/$2.gz.tmp" "$dir/$2.gz"
"""


def dsn(topology: Topology, port: int, dbname: str = DB_NAME) -> str:
    return f"postgresql://{DB_USER}:{topology.db_password}@127.0.0.1:{port}/{dbname}"


def _bindir_candidates(tool: str) -> list[str]:
    return sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True)


def create_database(major_version: int) -> str:
    """The statement creating POSTGRES_DB. FILE_COPY (PostgreSQL 15+): one WAL record, not every
    page of the template, so the segment each stop archives is smaller and its checkpoint writes less."""
    strategy = " STRATEGY FILE_COPY" if major_version >= 15 else ""
    return f'CREATE DATABASE "{DB_NAME}" OWNER "{DB_USER}"{strategy}'


class Postgres(ServiceSpec):
    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown, as the official image's STOPSIGNAL
    user_when_root = "postgres"
    registry_image = "timescale/timescaledb:latest-pg15"
    offline_image = "fulsk-chaos/postgres:15"
    packages = ("postgresql-15",)
    serves = ("postgresql",)
    compose_service = "postgres"
    # the server, and its own tools: the backup tools', the standby's clone, the runbooks' psql
    commands = {c: "postgresql-15" for c in ("postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_dump", "pg_restore")} | {
        "pg_isready": "postgresql-client-15", "psql": "postgresql-client-15"}

    def image_lines(self, fixtures: Path) -> list[str]:
        return ["ENV PATH=/usr/lib/postgresql/15/bin:$PATH",
                "COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh",
                'ENTRYPOINT ["docker-entrypoint.sh"]']

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        return {"postgres-entrypoint.sh": fixtures / "images" / "postgres-entrypoint.sh"}

    def data_dir(self, ctx: ServiceContext) -> Path:
        return ctx.workdir / "data"

    def volume_path(self, ctx: ServiceContext) -> Path | None:
        return self.data_dir(ctx)

    def wal_archive(self, ctx: ServiceContext) -> Path:
        """Where every completed WAL segment is archived: beside the data, not in it, so it
        survives the loss of the data directory (or volume)."""
        return ctx.workdir / "wal-archive"

    def restore_staging(self, ctx: ServiceContext) -> Path:
        """A restore puts a data directory here; the next start on empty data begins from it."""
        return ctx.workdir / "restore"

    def prepare(self, ctx: ServiceContext) -> None:
        """Initialise the cluster from POSTGRES_* as the official image's entrypoint does, or move
        in the data directory a restore staged (in a container, the image's entrypoint does both).

        POSTGRES_DB is created in single-user mode before the server's first start, without fsync as
        initdb's --no-sync: created by the server, it waited 0.25-0.4 s for the disk to take what
        initdb had just written, on every stack's start."""
        data = self.data_dir(ctx)
        archive = self.prepare_archive(ctx)
        if ctx.in_container:
            return
        if (data / "PG_VERSION").exists():
            hand_over(archive, ctx.run_as)
            return
        staged = self.restore_staging(ctx)
        if (staged / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            staged.rename(data)
            data.chmod(0o700)
            hand_over(ctx.workdir, ctx.run_as)
            return
        env = self.env(ctx)
        pwfile = ctx.workdir / "pwfile"
        pwfile.write_text(env["POSTGRES_PASSWORD"] + "\n")
        hand_over(ctx.workdir, ctx.run_as)
        initdb = find_binary("initdb", *_bindir_candidates("initdb"))
        result = subprocess.run(
            [initdb, "-D", env["PGDATA"], "-U", env["POSTGRES_USER"], f"--pwfile={pwfile}",
             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            user=ctx.run_as, capture_output=True, text=True)
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        postgres = find_binary("postgres", *_bindir_candidates("postgres"))
        result = subprocess.run(
            [postgres, "--single", "-F", "-D", env["PGDATA"], "postgres"],
            input=create_database(int((data / "PG_VERSION").read_text())) + "\n", env={"LC_ALL": "C"},
            user=ctx.run_as, capture_output=True, text=True)
        if result.returncode != 0 or "ERROR:" in result.stderr:
            raise StackError(f"creating the {DB_NAME} database failed ({result.returncode}): "
                             f"{result.stderr.strip()[-500:]}")

    def prepare_archive(self, ctx: ServiceContext) -> Path:
        """The WAL archive and the archive_command's script (in a container: open to its postgres user)."""
        archive = self.wal_archive(ctx)
        archive.mkdir(exist_ok=True)
        (ctx.workdir / ARCHIVE_SCRIPT).write_text(ARCHIVE_WAL.replace("$archive", str(archive)))
        if ctx.in_container:
            hand_over(archive, None, in_container=True)
        return archive

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("postgres", *_bindir_candidates("postgres")),
                "-D", str(self.data_dir(ctx)), "-p", str(ctx.port),
                "-c", "listen_addresses=127.0.0.1",
                # in a container, the socket the guide's `docker-compose exec postgres psql -U fulsk_user` uses
                "-c", f"unix_socket_directories={SOCKET_DIR if ctx.in_container else ''}",
                "-c", "max_connections=100", "-c", "shared_buffers=128MB",
                # dynamic shared memory as files in the data directory, gone with it: as POSIX segments
                # in /dev/shm, each SIGKILLed server left its own behind (40, 21 MB, in a day of runs)
                "-c", "dynamic_shared_memory_type=mmap",
                "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "wal_level=replica",
                # continuous archiving, for point-in-time recovery; commit times, to judge one
                "-c", "archive_mode=on", "-c", f"archive_command={self.archive_command(ctx)}",
                "-c", f"archive_timeout={int(ctx.settings.backup.archive_timeout_s)}",
                "-c", "track_commit_timestamp=on",
                "-c", "log_min_messages=warning", "-c", "log_connections=off",
                # the database's own account of its load, for checks that must not trust the backend's
                "-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=top"]

    def archive_command(self, ctx: ServiceContext) -> str:
        if "wal-archive-off" in ctx.settings.stack.bugs:
            return "true"
        return f"sh {ctx.workdir / ARCHIVE_SCRIPT} %p %f"

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {"LC_ALL": "C", "POSTGRES_USER": DB_USER, "POSTGRES_PASSWORD": ctx.topology.db_password,
                "POSTGRES_DB": DB_NAME, "PGDATA": str(self.data_dir(ctx)),
                "FULSK_RESTORE_STAGING": str(self.restore_staging(ctx)),
                # for the server's own tools (psql, pg_isready) run beside it, as the guide runs them
                "PGPORT": str(ctx.port), "PGDATABASE": DB_NAME}

    def address(self, ctx: ServiceContext) -> str:
        return dsn(ctx.topology, ctx.port)

    def client(self, ctx: ServiceContext) -> psycopg.Connection:
        import psycopg
        return psycopg.connect(self.address(ctx), connect_timeout=5)

    def check(self, ctx: ServiceContext) -> None:
        import psycopg
        with psycopg.connect(dsn(ctx.topology, ctx.port, "postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")

    def after_start(self, ctx: ServiceContext) -> None:
        import psycopg
        with psycopg.connect(dsn(ctx.topology, ctx.port, "postgres"), connect_timeout=5,
                             autocommit=True) as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return  # replaying a restore: read-only, and what it restores has both already
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
                conn.execute(create_database(conn.info.server_version // 10000))
        with psycopg.connect(dsn(ctx.topology, ctx.port), connect_timeout=5, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


SPEC = Postgres()

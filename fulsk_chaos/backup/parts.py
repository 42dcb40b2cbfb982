"""The parts of a backup, each saved and restored with its server's own tools: PostgreSQL (a dump,
and for --full a base backup to replay archived WAL onto), Redis (an RDB snapshot), configuration.

TimescaleDB, where the extension exists, is restored by its documented procedure: the same
extension version, ``timescaledb_pre_restore()`` before pg_restore, ``timescaledb_post_restore()``
after. Here it does not exist and the plain PostgreSQL path runs.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psycopg

from ..services.postgres import _bindir_candidates
from ..services.spec import find_binary
from .conf import BackupConf, BackupError, one_line

Log = Callable[[str], None]
RECOVERY_SETTINGS = ("restore_command", "recovery_target_time", "recovery_target_action")


def tool(name: str) -> str:
    return find_binary(name, *_bindir_candidates(name))


def run(argv: list[str], what: str, timeout_s: float, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: no result within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {one_line(done.stderr or done.stdout)}")
    return done.stdout


def connect(conf: BackupConf, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
    kwargs: dict[str, Any] = {"connect_timeout": conf.connect_timeout_s, "autocommit": autocommit}
    if dbname:
        kwargs["dbname"] = dbname
    try:
        return psycopg.connect(conf.database_url, **kwargs)
    except psycopg.OperationalError as exc:
        raise BackupError(f"the database is unreachable at {_where(conf.database_url)}: "
                          f"{str(exc).strip().splitlines()[0]}") from None


def _where(url: str) -> str:
    return url.split("@")[-1]  # never the password


def control(conf: BackupConf, action: str, service: str, log: Log) -> None:
    """Stop, start or wipe one of the stack's services, as the configuration says to."""
    log(f"{action} {service}")
    run([*shlex.split(conf.control), action, service], f"{action} {service}", conf.restore_timeout_s)


# --- PostgreSQL: saving -------------------------------------------------------------------------
def dump(conf: BackupConf, into: Path, log: Log) -> dict[str, Any]:
    """pg_dump of a snapshot whose row counts are recorded too: the manifest knows exactly what
    the dump holds, and when it was taken (what a restore from it can promise)."""
    into.mkdir(parents=True, exist_ok=True)
    with connect(conf, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot, taken_at, version, system = conn.execute(
            "SELECT pg_export_snapshot(), extract(epoch FROM clock_timestamp()), current_setting('server_version'), "
            "(SELECT system_identifier FROM pg_control_system())").fetchone()
        timescale = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        tables = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1").fetchall()]
        counts = {t: conn.execute(f'SELECT count(*) FROM public."{t}"').fetchone()[0] for t in tables}
        log(f"snapshot {snapshot} at {datetime.fromtimestamp(float(taken_at), timezone.utc).isoformat()}: "
            + ", ".join(f"{t} {n} rows" for t, n in counts.items()))
        started = time.monotonic()
        run([tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", f"--file={into / 'fulsk.dump'}",
             conf.database_url], "pg_dump", conf.restore_timeout_s,
            env={"PGCONNECT_TIMEOUT": str(conf.connect_timeout_s)})
        conn.rollback()
    log(f"pg_dump in {time.monotonic() - started:.1f} s")
    return {"server_version": version, "system_identifier": str(system),
            "timescaledb": timescale[0] if timescale else None,
            "taken_at": float(taken_at), "tables": counts}


def base_backup(conf: BackupConf, into: Path, log: Log) -> dict[str, Any]:
    """A base backup (tar, with the WAL it needs to be consistent): what archived WAL is replayed onto."""
    started = time.time()
    run([tool("pg_basebackup"), f"--dbname={conf.database_url}", f"--pgdata={into / 'base'}", "--format=tar",
         "--gzip", "--wal-method=fetch", "--checkpoint=fast", "--no-password"], "pg_basebackup",
        conf.restore_timeout_s, env={"PGCONNECT_TIMEOUT": str(conf.connect_timeout_s)})
    (into / "base" / "base.tar.gz").rename(into / "base.tar.gz")
    shutil.rmtree(into / "base")
    log(f"base backup in {time.time() - started:.1f} s")
    return {"base_started_at": started, "base_ended_at": time.time()}


# --- PostgreSQL: restoring ----------------------------------------------------------------------
def archive_current_wal(conf: BackupConf, log: Log, timeout_s: float = 60.0) -> None:
    """If the live server still answers, have it archive its current WAL segment first: what it
    wrote up to now can then be replayed."""
    try:
        conn = connect(conf, "postgres")
    except BackupError as exc:
        log(f"{exc}: restoring from the archived WAL alone")
        return
    with conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            if last and last >= segment:
                log(f"WAL archived through {segment}")
                return
            time.sleep(0.2)
    log(f"WAL segment {segment} was not archived within {timeout_s:.0f} s: replaying what the archive has")


def restore_physical(conf: BackupConf, base: Path, system: str, target: datetime | None, log: Log) -> None:
    """Replace the cluster with the base backup and replay archived WAL onto it, to ``target`` or
    to the end of the archive; then it is promoted and takes writes again. ``system``: the
    cluster's system identifier, which names its directory in the WAL archive."""
    archive_current_wal(conf, log)
    control(conf, "stop", "postgres", log)
    control(conf, "wipe", "postgres", log)
    staging = conf.restore_staging
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(base, "r:gz") as tar:
        # our own base backup, verified against its manifest: extracted as it is (modes, links)
        tar.extractall(staging, **({"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}))
    (staging / "recovery.signal").touch()
    archived = f"{conf.wal_archive}/{system}/%f.gz"
    settings = [f"restore_command = 'test -f {archived} && gunzip -c {archived} > %p'"]
    if target is not None:
        settings += [f"recovery_target_time = '{target.isoformat()}'", "recovery_target_action = 'promote'"]
    with open(staging / "postgresql.auto.conf", "a") as auto:
        auto.write("\n# disaster-recovery.sh\n" + "\n".join(settings) + "\n")
    staging.chmod(0o700)
    log(f"replaying archived WAL from {conf.wal_archive}/{system} " + (f"to {target.isoformat()}" if target else "to its end"))
    control(conf, "start", "postgres", log)
    with connect(conf, "postgres") as conn:
        deadline = time.monotonic() + conf.restore_timeout_s
        while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise BackupError(f"still replaying WAL after {conf.restore_timeout_s:.0f} s")
            time.sleep(0.2)
        for name in RECOVERY_SETTINGS:
            conn.execute(f"ALTER SYSTEM RESET {name}")
        conn.execute("SELECT pg_reload_conf()")
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    log(f"recovered and promoted (timeline {timeline})")


def restore_dump(conf: BackupConf, dump_file: Path, manifest: dict[str, Any], log: Log) -> None:
    """pg_restore in one transaction: the database holds the dump, or (on any error) what it held.

    The writers (``WRITERS``) are stopped first and started again last, whatever happened: the
    restore must have the database to itself. A backend that reaches it meanwhile creates its
    schema under the restore (which then fails on the duplicate), or stores and acknowledges
    readings that ``--clean`` then drops; stopped, it leaves them to the broker, which keeps them
    for its session until it is back."""
    for writer in conf.writers:
        control(conf, "stop", writer, log)
    failed = True
    try:
        _restore_dump(conf, dump_file, manifest, log)
        failed = False
    finally:
        for writer in conf.writers:
            try:
                control(conf, "start", writer, log)
            except BackupError as exc:
                if not failed:
                    raise
                log(f"{exc} (after the restore failed)")  # the restore's own error is the one to see


def _restore_dump(conf: BackupConf, dump_file: Path, manifest: dict[str, Any], log: Log) -> None:
    """A server that does not answer is started (after a total loss it starts on an empty data
    directory); one that cannot start is not wiped: that is the operator's call, said in the error."""
    try:
        connect(conf, "postgres").close()
    except BackupError as exc:
        log(f"{exc}: starting it")
        try:
            control(conf, "start", "postgres", log)
        except BackupError as why:
            raise BackupError(f"PostgreSQL does not start ({why}); if its data directory is damaged beyond "
                              f"use, wipe it ({conf.control} wipe postgres) and run this again") from None
    with connect(conf, "postgres") as conn:
        database = psycopg.conninfo.conninfo_to_dict(conf.database_url)["dbname"]
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{database}"')
            log(f"database {database} created (it did not exist)")
    wanted = manifest.get("postgres", {}).get("timescaledb")
    with connect(conf) as conn:
        if wanted:
            available = {r[0] for r in conn.execute(
                "SELECT version FROM pg_available_extension_versions WHERE name = 'timescaledb'").fetchall()}
            if wanted not in available:
                raise BackupError(f"the backup needs TimescaleDB {wanted}; this server has "
                                  f"{', '.join(sorted(available)) or 'none'}: install that version first")
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS timescaledb VERSION '{wanted}'")
            conn.execute("SELECT timescaledb_pre_restore()")
            log(f"timescaledb_pre_restore() (TimescaleDB {wanted})")
    try:
        run([tool("pg_restore"), "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
             f"--dbname={conf.database_url}", str(dump_file)], "pg_restore", conf.restore_timeout_s)
    finally:
        if wanted:
            with connect(conf) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
                log("timescaledb_post_restore()")
    expected = manifest.get("postgres", {}).get("tables", {})
    with connect(conf) as conn:
        short = []
        for table, rows in expected.items():
            now = conn.execute(f'SELECT count(*) FROM public."{table}"').fetchone()[0]
            if now < rows:
                short.append(f"{table}: {now} rows, the backup has {rows}")
    if short:
        raise BackupError("restored, but rows are missing: " + "; ".join(short))
    log("dump restored: " + ", ".join(f"{t} ≥ {n} rows" for t, n in expected.items()))


# --- Redis and configuration --------------------------------------------------------------------
def redis_snapshot(conf: BackupConf, into: Path, log: Log) -> None:
    into.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run([find_binary("redis-cli", "/usr/bin/redis-cli"), "-u", conf.redis_url, "--rdb", str(into / "dump.rdb")],
        "redis-cli --rdb", 120)
    log(f"redis snapshot: {(into / 'dump.rdb').stat().st_size} bytes in {time.monotonic() - started:.1f} s")


def restore_redis(conf: BackupConf, rdb: Path, log: Log) -> None:
    """Redis loads its snapshot when it starts: stop it (it saves on the way out), put the file, start it."""
    control(conf, "stop", "redis", log)
    tmp = conf.redis_snapshot.with_name(conf.redis_snapshot.name + ".restore")
    shutil.copyfile(rdb, tmp)
    tmp.chmod(0o666)
    os.replace(tmp, conf.redis_snapshot)
    control(conf, "start", "redis", log)


def drop_cached(conf: BackupConf, log: Log) -> None:
    """The cache holds what the database held: after a restore, what it says is no longer true."""
    import redis
    client = redis.Redis.from_url(conf.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        dropped = 0
        for pattern in conf.cache_keys:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(batch), 500):
                dropped += client.delete(*batch[i:i + 500])
        log(f"cache: {dropped} derived keys dropped ({' '.join(conf.cache_keys)})")
    except redis.RedisError as exc:
        raise BackupError(f"the cache could not be cleared ({exc}): its answers may predate the restore") from None
    finally:
        client.close()


def save_config(conf: BackupConf, into: Path) -> list[str]:
    saved = []
    for path in conf.config_paths:
        if path.is_dir():
            shutil.copytree(path, into / path.name, dirs_exist_ok=True)
        elif path.is_file():
            into.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into / path.name)
        else:
            raise BackupError(f"CONFIG_PATHS: {path} does not exist")
        saved.append(str(path))
    return saved


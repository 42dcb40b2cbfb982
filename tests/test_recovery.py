"""The backup tools' own behaviour, on real files and real processes: the archive format and its
verification, retention, the configuration file, the scripts' command lines, the backup check,
and the stack's control socket."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fulsk_chaos import config
from fulsk_chaos.backup import archive
from fulsk_chaos.backup.conf import BackupConf, BackupError, load, one_line, written_for
from fulsk_chaos.backup.scripts import damage
from fulsk_chaos.backup.status import backup_status
from fulsk_chaos.services import FIXTURES

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)


def _backup(directory: Path, kind: str = "daily", when: datetime = NOW, files: dict[str, bytes] | None = None) -> Path:
    """A real backup file, written by the tool's own packer."""
    staging = directory / f"staging-{kind}-{when:%H%M%S%f}"
    for name, body in (files or {"postgres/fulsk.dump": b"PGDMP" + os.urandom(4000),
                                 "redis/dump.rdb": b"REDIS0011" + os.urandom(100),
                                 "config/nginx.conf": b"events {}\n"}).items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(body)
    dest = directory / archive.backup_name(kind, when)
    archive.pack(staging, {"kind": kind, "created_at": when.isoformat()}, dest)
    return dest


def test_a_packed_backup_verifies_and_lists_every_file_with_its_checksum(tmp_path):
    path = _backup(tmp_path)
    checked = archive.verify(path)
    assert checked.ok, checked.problems
    assert set(checked.manifest["files"]) == {"postgres/fulsk.dump", "redis/dump.rdb", "config/nginx.conf"}
    assert all(len(entry["sha256"]) == 64 for entry in checked.manifest["files"].values())
    with tarfile.open(path) as tar:
        assert tar.getnames()[0] == archive.MANIFEST  # read first: a stream can be judged as it goes


@pytest.mark.parametrize("how, said", [("truncated", "truncated or corrupted"),
                                       ("flipped-byte", ""),
                                       ("manifest-mismatch", "redis/dump.rdb: does not match the manifest")])
def test_each_kind_of_damage_is_found_and_named(tmp_path, how, said):
    bad = damage(_backup(tmp_path), how, tmp_path)
    checked = archive.verify(bad)
    assert not checked.ok
    assert said in " ".join(checked.problems)


def test_a_member_missing_from_the_manifest_or_from_the_archive_is_named(tmp_path):
    path = _backup(tmp_path)
    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(path) as src, tarfile.open(extra, "w:gz") as out:
        for member in src:
            if member.name != "config/nginx.conf":  # dropped: listed, missing
                out.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("postgres/smuggled.sql")
        info.size = 3
        out.addfile(info, io.BytesIO(b"x;\n"))
    problems = " ".join(archive.verify(extra).problems)
    assert "config/nginx.conf: listed in the manifest, missing from the archive" in problems
    assert "postgres/smuggled.sql: in the archive, not in the manifest" in problems


def test_something_that_is_not_a_backup_is_refused_as_such(tmp_path):
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(FIXTURES / "render.sh", arcname="render.sh")
    assert "not a fulsk backup" in archive.verify(other).problems[0]
    assert "no such file" in archive.verify(tmp_path / "missing.tar.gz").problems[0]


def test_a_backup_that_fails_while_packing_leaves_no_file_behind(tmp_path):
    staging = tmp_path / "staging"
    (staging / "postgres").mkdir(parents=True)
    (staging / "postgres" / "fulsk.dump").write_bytes(b"PGDMP")
    dest = tmp_path / "out" / archive.backup_name("daily", NOW)  # its directory does not exist
    with pytest.raises(OSError):
        archive.pack(staging, {"kind": "daily", "created_at": NOW.isoformat()}, dest)
    assert not dest.exists() and not dest.with_name(dest.name + ".partial").exists()


def test_retention_keeps_thirty_days_by_the_time_in_the_name_and_always_the_newest(tmp_path):
    names = {age: _backup(tmp_path, when=NOW - timedelta(days=age)) for age in (0, 1, 29, 31, 45)}
    for path in names.values():
        os.utime(path, (NOW.timestamp(), NOW.timestamp()))  # mtimes lie (copies); names do not
    (tmp_path / "notes.txt").write_text("not a backup")
    removed = archive.prune(tmp_path, 30, now=NOW)
    assert sorted(removed) == sorted([names[31], names[45]])
    assert all(names[age].exists() for age in (0, 1, 29)) and (tmp_path / "notes.txt").exists()
    only_old = tmp_path / "old"
    only_old.mkdir()
    newest = _backup(only_old, when=NOW - timedelta(days=90))
    assert archive.prune(only_old, 30, now=NOW) == [] and newest.exists()  # never the last backup


def test_latest_link_is_replaced_atomically(tmp_path):
    first, second = _backup(tmp_path, when=NOW - timedelta(days=1)), _backup(tmp_path)
    archive.link_latest(first)
    archive.link_latest(second)
    assert (tmp_path / archive.LATEST).resolve() == second.resolve()


# --- configuration ------------------------------------------------------------------------------
def _conf(tmp_path: Path, **over: str) -> Path:
    values = {"BACKUP_DIR": str(tmp_path / "backups"), "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/fulsk",
              "REDIS_URL": "redis://127.0.0.1:2/0", "WAL_ARCHIVE": str(tmp_path / "wal"),
              "PG_RESTORE_STAGING": str(tmp_path / "restore"), "REDIS_SNAPSHOT": str(tmp_path / "dump.rdb"),
              "CONTROL": "true", **over}
    path = tmp_path / "backup.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v is not None))
    return path


def test_the_configuration_round_trips_and_the_environment_wins(tmp_path):
    conf = load(_conf(tmp_path, RETENTION_DAYS="7", CONFIG_PATHS=f"'{tmp_path}/a b' {tmp_path}/c"), environ={})
    assert conf.retention_days == 7 and conf.backup_dir == tmp_path / "backups"
    again = load(conf.write(tmp_path / "again.env"), environ={"BACKUP_DIR": "/elsewhere"})
    assert again.backup_dir == Path("/elsewhere") and again.retention_days == 7
    assert oct((tmp_path / "again.env").stat().st_mode & 0o777) == "0o600"  # it holds a password


@pytest.mark.parametrize("over, said", [({"DATABASE_URL": None}, "missing DATABASE_URL"),
                                        ({"RETENTION_DAYS": "a month"}, "RETENTION_DAYS must be a number"),
                                        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS must be positive")])
def test_a_bad_configuration_is_refused_with_one_line(tmp_path, over, said):
    with pytest.raises(BackupError, match=said):
        load(_conf(tmp_path, **over), environ={})


def test_no_configuration_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(BackupError, match="pass --config FILE or set FULSK_BACKUP_CONF"):
        load(environ={"FULSK_BACKUP_CONF": str(tmp_path / "nowhere.env")})


def _script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(FIXTURES / "scripts" / name), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FULSK_PYTHON": sys.executable, **(env or {})})


def test_scripts_fail_with_one_line_and_log_it(tmp_path):
    conf = _conf(tmp_path)
    unknown = _script("disaster-recovery.sh", "--config", str(conf), "-f", "x", "--partial", "postgres,disks")
    assert unknown.returncode == 1 and "--partial: unknown part 'disks'" in unknown.stderr
    unreachable = _script("backup.sh", "--config", str(conf), env={"CONNECT_TIMEOUT": "1"})
    assert unreachable.returncode == 1
    assert "FAILED: the database is unreachable at 127.0.0.1:1/fulsk" in unreachable.stderr
    assert "u:p@" not in unreachable.stderr  # never the password
    log = (tmp_path / "backups" / "backup.log").read_text()
    assert "backup.sh: FAILED: the database is unreachable" in log
    assert list((tmp_path / "backups").iterdir()) == [tmp_path / "backups" / "backup.log"]  # nothing else left
    usage = _script("backup.sh", "--full", "--archive")
    assert usage.returncode == 2 and "not allowed with argument" in usage.stderr


@pytest.mark.parametrize("start_fails", [False, True])
def test_a_dump_restore_stops_the_writers_first_and_starts_them_last_even_when_it_fails(tmp_path, start_fails):
    """The restore must have the database to itself: a backend let in creates its schema under it,
    or has readings stored, acknowledged and then dropped by --clean. The control command is a
    script that records what it is asked; the database does not answer, so the restore fails."""
    from fulsk_chaos.backup import parts
    asked = tmp_path / "asked"
    control = tmp_path / "control"
    control.write_text(f'#!/bin/sh\necho "$*" >> {asked}\n'
                       + ('[ "$*" = "start backend" ] && { echo "backend does not start" >&2; exit 1; }\n'
                          if start_fails else "") + "exit 0\n")
    control.chmod(0o755)
    conf = load(_conf(tmp_path, CONTROL=str(control), WRITERS="backend worker", CONNECT_TIMEOUT="1"), environ={})
    assert conf.writers == ("backend", "worker")
    said: list[str] = []
    with pytest.raises(BackupError, match="the database is unreachable at 127.0.0.1:1/fulsk"):
        parts.restore_dump(conf, tmp_path / "fulsk.dump", {}, said.append)
    assert asked.read_text().splitlines() == [
        "stop backend", "stop worker", "start postgres", "start backend", "start worker"]
    assert any("backend does not start" in line for line in said) == start_fails  # said, not instead


def test_a_point_in_time_restore_from_a_daily_backup_is_refused_before_anything_is_touched(stack, tmp_path):
    env = {"FULSK_BACKUP_CONF": str(written_for(stack)), "BACKUP_DIR": str(tmp_path)}
    made = _script("backup.sh", env=env)
    assert made.returncode == 0, made.stderr
    started, actions = stack.service("postgres").pid, len(stack.control_log())
    run = _script("disaster-recovery.sh", "-f", archive.LATEST, "--to", NOW.isoformat(), env=env)
    assert run.returncode == 1 and "a point-in-time restore needs a --full backup" in run.stderr
    assert stack.service("postgres").pid == started and len(stack.control_log()) == actions


def test_one_line_names_the_servers_fatal_line():
    message = "start postgres: exited; log:\nLOG: starting\nFATAL:  recovery ended before target\nLOG: shut down"
    assert one_line(message) == "start postgres: exited; log ... FATAL:  recovery ended before target"


# --- the backup check ---------------------------------------------------------------------------
def test_the_backup_check_reports_a_failed_run_an_old_backup_and_a_damaged_one(tmp_path):
    conf = load(_conf(tmp_path), environ={})
    conf.backup_dir.mkdir()
    assert "no backup run recorded" in " ".join(backup_status(conf, now=NOW).problems)
    good = _backup(conf.backup_dir, when=NOW - timedelta(hours=2))
    conf.log_path.write_text(f"{NOW:%Y-%m-%dT%H:%M:%SZ} backup.sh: OK {good.name}\n")
    assert backup_status(conf, now=NOW).ok
    with open(conf.log_path, "a") as log:
        log.write(f"{NOW:%Y-%m-%dT%H:%M:%SZ} backup.sh: FAILED: pg_dump failed: No space left on device\n")
    status = backup_status(conf, now=NOW + timedelta(days=2))
    said = " ".join(status.problems)
    assert "the last backup failed" in said and "No space left on device" in said
    assert "is 50 h old" in said
    good.write_bytes(good.read_bytes()[:100])
    assert "does not verify" in " ".join(backup_status(conf, now=NOW).problems)


# --- stack switches -----------------------------------------------------------------------------
def test_an_unknown_stack_switch_is_refused():
    with pytest.raises(config.ConfigError, match="stack.bugs: unknown switch 'wal-off'"):
        config.from_mapping({"stack": {"bugs": ["wal-off"]}})
    assert config.from_mapping({"stack": {"bugs": ["wal-archive-off"]}}).stack.bugs == ["wal-archive-off"]


# --- on a running stack -------------------------------------------------------------------------
@pytest.mark.provider
def test_the_control_socket_stops_starts_and_wipes_a_service_for_another_process(stack):
    sock = stack.dir / "control.sock"
    cli = [sys.executable, "-m", "fulsk_chaos.cli", "ctl", "--socket", str(sock)]

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
    assert ctl("status", "redis").stdout.strip() == "redis: running"
    assert ctl("stop", "redis").stdout.strip() in ("redis: exited", "redis: removed")
    assert not stack.service("redis").running
    assert ctl("start", "redis").stdout.strip() == "redis: running"
    refused = ctl("wipe", "backend")
    assert refused.returncode == 1 and "backend keeps no data of its own to lose" in refused.stderr
    assert "no service 'disk'" in ctl("stop", "disk").stderr
    assert [(a, s) for _, a, s in stack.control_log()][-2:] == [("stop", "redis"), ("start", "redis")]


@pytest.mark.provider
def test_the_stack_writes_a_backup_configuration_the_tools_can_use(stack):
    conf: BackupConf = load(written_for(stack), environ={})
    assert conf.database_url == stack.endpoints.database_dsn and conf.backup_dir == stack.dir / "backups"
    run = _script("disaster-recovery.sh", "-v", "-f", "nothing.tar.gz", env={"FULSK_BACKUP_CONF": str(written_for(stack))})
    assert run.returncode == 1 and "nothing.tar.gz: no such file" in run.stderr
    assert conf.wal_archive.is_dir()  # archive_command writes there from the first segment

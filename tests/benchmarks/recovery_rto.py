"""Benchmark: the RTO of a full restore of a realistic data set, with its size.

Loads READINGS readings (default one million: 1000 inverters x 1000 readings) into a fresh
stack, takes a daily and a --full backup with backup.sh, then twice destroys the database and
restores it with disaster-recovery.sh: from the dump, and from the base backup with the WAL
archive. RTO is measured from the loss until the API, through the frontend, serves the newest
reading of every sampled inverter again. Prints the figures; nothing is asserted.
Usage: python tests/benchmarks/recovery_rto.py [READINGS] [local|docker]
"""
from __future__ import annotations

import sys
import time

import psycopg
import requests

from fulsk_chaos.config import load
from fulsk_chaos.backup.conf import written_for
from fulsk_chaos.backup.scripts import run_script
from fulsk_chaos.stack import Stack

INVERTERS = 1000


def bulk_load(dsn: str, readings: int) -> None:
    per = max(1, readings // INVERTERS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO inverters (inverter_id, site_id, last_seen) SELECT 'bench-inv' || i, "
                     "'bench-site' || (i %% 50), now() FROM generate_series(1, %s) i ON CONFLICT DO NOTHING",
                     (INVERTERS,))
        conn.execute("INSERT INTO readings (inverter_id, seq, ts, site_id, power_w, energy_wh) "
                     "SELECT 'bench-inv' || i, s, now() - (%s - s) * interval '1 minute', 'bench-site' || (i %% 50), "
                     "round((random() * 5000)::numeric, 1), round((random() * 2)::numeric, 4) "
                     "FROM generate_series(1, %s) i, generate_series(1, %s) s", (per, INVERTERS, per))
        conn.execute("VACUUM ANALYZE readings")


def served(frontend: str, expected: dict[str, int]) -> bool:
    try:
        if requests.get(f"{frontend}/health", timeout=2).status_code != 200:
            return False
        for inverter, seq in expected.items():
            answer = requests.get(f"{frontend}/api/inverters/{inverter}/latest", timeout=2)
            if answer.status_code != 200 or answer.json().get("seq") != seq:
                return False
        return True
    except requests.RequestException:
        return False


def main() -> None:
    readings = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    provider = sys.argv[2] if len(sys.argv) > 2 else "local"
    stack = Stack(load(), provider)
    stack.start()
    try:
        dsn, frontend = stack.endpoints.database_dsn, stack.endpoints.frontend_url
        t0 = time.monotonic()
        bulk_load(dsn, readings)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"data set: {rows} readings, database {size / 2**20:.0f} MiB (loaded in {time.monotonic() - t0:.0f} s); "
              f"{provider} stack")
        sample = {f"bench-inv{i}": readings // INVERTERS for i in (1, INVERTERS // 2, INVERTERS)}
        results = []
        for kind, flags in (("dump (daily)", []), ("base backup + WAL (--full)", ["--full"])):
            made = run_script("backup.sh", flags, written_for(stack))
            if made.returncode:
                raise SystemExit(f"backup.sh {' '.join(flags)} failed: {made.said}")
            backup = (stack.dir / "backups" / "latest_backup.tar.gz").resolve()
            lost_at = time.monotonic()
            stack.service("postgres").lose_data()
            restore = run_script("disaster-recovery.sh", ["-f", backup.name], written_for(stack))
            if restore.returncode:
                raise SystemExit(f"disaster-recovery.sh failed: {restore.said}")
            while not served(frontend, sample):
                time.sleep(0.2)
            rto = time.monotonic() - lost_at
            with psycopg.connect(dsn) as conn:
                back = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            results.append((kind, made.seconds, backup.stat().st_size, restore.seconds, rto, back))
        target = stack.settings.backup.rto_s
        print(f"{'restore from':28} {'backup':>8} {'size':>9} {'restore':>9} {'RTO':>8} {'rows back':>10}  (target {target:.0f} s)")
        for kind, took, size_b, restore_s, rto, back in results:
            print(f"{kind:28} {took:>6.1f} s {size_b / 2**20:>5.1f} MiB {restore_s:>7.1f} s {rto:>6.1f} s {back:>10}  "
                  f"margin {target - rto:.0f} s")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()

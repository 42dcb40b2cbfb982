"""The standby a stack gains with ``stack.standby``: a streaming replica of the primary, through
a proxied edge of its own, on both providers."""
from __future__ import annotations

import time

import psycopg
import pytest

pytestmark = [pytest.mark.provider, pytest.mark.stack(standby=True)]


def test_a_standby_streams_the_primary_through_its_own_edge(stack):
    edge = stack.topology.edge("postgres-standby", "postgres")
    primary, standby = stack.service("postgres").address, stack.service("postgres-standby").address
    with psycopg.connect(standby, connect_timeout=5) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        status, port = conn.execute("SELECT status, sender_port FROM pg_stat_wal_receiver").fetchone()
    assert status == "streaming" and port == edge.listen  # through the proxy: network faults reach it
    with psycopg.connect(primary, connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS standby_probe (n int)")
        conn.execute("INSERT INTO standby_probe VALUES (42)")
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(standby, connect_timeout=5) as conn:
                if conn.execute("SELECT n FROM standby_probe").fetchone() == (42,):
                    break
        except psycopg.errors.UndefinedTable:
            pass
        assert time.monotonic() < deadline, "the row written on the primary never reached the standby"
        time.sleep(0.2)
    assert stack.endpoints.database_dsn == primary  # the truth is on the primary until a failover


def test_the_default_stack_has_no_standby(request):
    """(The shared stack: only a test that asks for a standby gets one.)"""
    shared = request.getfixturevalue("_chaos_stack")
    assert "postgres-standby" not in shared.services

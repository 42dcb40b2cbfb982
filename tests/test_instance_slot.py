"""The reference backend's instance slots, on the stack's PostgreSQL: one MQTT client id per live
replica, slot 0 (the backend's own persistent session) held while any replica runs."""
from __future__ import annotations

import asyncio
import secrets
import sys

import psycopg
import pytest

from fulsk_chaos.stack.stack import FIXTURES

pytestmark = pytest.mark.provider


@pytest.fixture
def slots(stack, monkeypatch):
    """InstanceSlot factory under an id of the test's own: its slots share no lock with the stack's backend."""
    monkeypatch.syspath_prepend(str(FIXTURES / "backend"))
    from fulsk_backend.instance import InstanceSlot
    base = f"fulsk-test-{secrets.token_hex(3)}"
    made: list[InstanceSlot] = []

    def make() -> InstanceSlot:
        made.append(InstanceSlot(stack.endpoints.database_dsn, base))
        return made[-1]
    yield make
    asyncio.run(_release(made))
    sys.modules.pop("fulsk_backend.instance", None)


async def _release(made) -> None:
    for slot in made:
        await slot.release()


def holders(stack, space: int) -> dict[int, int]:
    """slot -> the pid of the session holding it."""
    with psycopg.connect(stack.endpoints.database_dsn) as conn:
        rows = conn.execute("SELECT objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                            "AND classid::bigint = %s", (space,)).fetchall()
    return dict(rows)


def test_a_replica_whose_lease_connection_broke_takes_its_slot_back_from_its_own_stale_session(stack, slots):
    """The replica lost its side of the lease while the server kept the session (a fault on the
    database link): it must end that session and hold the slot again, not keep the id unleased."""
    async def scenario():
        first = slots()
        assert await first.acquire() == 0
        stale = first._conn  # the server still holds this session: as if its packets went nowhere
        first._conn = None
        stale_pid = holders(stack, first.space)[0]
        keeper = asyncio.create_task(first.keep())
        try:
            for _ in range(100):
                if holders(stack, first.space).get(0) not in (None, stale_pid):
                    break
                await asyncio.sleep(0.05)
            assert first.slot == 0 and not keeper.done()
            assert holders(stack, first.space)[0] != stale_pid
            second = slots()
            assert await second.acquire() == 1  # the slot is held again: a new replica takes another
        finally:
            keeper.cancel()
            await stale.close()
    asyncio.run(scenario())


def test_a_replica_moves_down_to_slot_zero_once_it_is_free(stack, slots):
    """A backend restarted while its predecessor's session was still ending got slot 1: it must
    come back to slot 0, whose persistent session holds what the broker kept for the backend."""
    async def scenario():
        first, second = slots(), slots()
        assert (await first.acquire(), await second.acquire()) == (0, 1)
        keeper = asyncio.create_task(second.keep())
        await first.release()
        await asyncio.wait_for(keeper, 10)
        assert (second.slot, second.previous, second.client_id) == (0, 1, second.base_id)
        await second.let_go()
        assert holders(stack, second.space) == {0: holders(stack, second.space)[0]}
    asyncio.run(scenario())


def test_a_replica_whose_slot_another_live_replica_took_gives_up_the_id(stack, slots):
    async def scenario():
        first = slots()
        assert await first.acquire() == 0
        with psycopg.connect(stack.endpoints.database_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (holders(stack, first.space)[0],))
        second = slots()
        assert await second.acquire() == 0  # while the first was cut off
        await asyncio.wait_for(first.keep(), 15)
        assert first.slot is None and first.name == "unslotted"
        assert await first.acquire() == 1
    asyncio.run(scenario())

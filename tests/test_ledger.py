"""The ledger check: lost, unexpected, duplicated and altered readings are each told apart."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulsk_chaos.checks import check_ledger


def values(power: float = 1000.0, ts: float = 1_790_000_000.123) -> dict:
    return {"site_id": "s", "ts": ts, "power_w": power, "energy_wh": round(power / 3600, 4)}


def rows(*stored: dict) -> list[dict]:
    """Stored rows as PostgreSQL gives them back (a timestamptz for ts)."""
    return [{**v, "ts": datetime.fromtimestamp(v["ts"], tz=timezone.utc)} for v in stored]


def test_a_clean_ledger():
    sent = {("a", 1): values(), ("a", 2): values(2.0), ("b", 1): values()}
    result = check_ledger(sent, sent, {k: rows(v) for k, v in sent.items()})
    assert result.ok and (result.sent, result.acked, result.stored) == (3, 3, 3)
    assert result.lost == result.unexpected == result.duplicates == result.altered == []
    assert all(e.held for e in result.expectations())


def test_acknowledged_and_missing_is_lost():
    sent = {("a", 1): values(), ("a", 2): values()}
    result = check_ledger(sent, sent, {("a", 1): rows(values())})
    assert not result.ok
    assert result.lost == [("a", 2)]
    assert "1 LOST (a#2)" in result.describe()
    (lost,) = [e for e in result.expectations() if not e.held]
    assert lost.name.startswith("lost") and lost.measured == 1 and "a#2" in lost.detail


def test_unacknowledged_and_missing_is_not_lost():
    # The broker never promised it: the publisher would have retried.
    sent = {("a", 1): values(), ("a", 2): values()}
    result = check_ledger(sent, {("a", 1)}, {("a", 1): rows(values())})
    assert result.ok and result.lost == []


def test_unacknowledged_but_stored_is_allowed_and_counted():
    result = check_ledger({("a", 1): values()}, set(), {("a", 1): rows(values())})
    assert result.ok and result.unacked_stored == 1


def test_stored_but_never_sent_is_unexpected():
    result = check_ledger({("a", 1): values()}, {("a", 1)}, {("a", 1): rows(values()), ("a", 99): rows(values())})
    assert not result.ok and result.unexpected == [("a", 99)]


def test_stored_twice_is_a_duplicate_and_fails_unless_allowed():
    sent = {("a", 1): values()}
    stored = {("a", 1): rows(values(), values())}
    strict = check_ledger(sent, sent, stored)
    assert not strict.ok and strict.duplicates == [("a", 1)]
    assert [e.name for e in strict.expectations() if not e.held] == ["duplicates (stored more than once)"]
    lenient = check_ledger(sent, sent, stored, allow_duplicates=True)
    assert lenient.ok and lenient.duplicates == [("a", 1)]  # still reported, in the measurements
    assert lenient.figures().duplicates == 1


@pytest.mark.parametrize("field, stored_value", [
    ("power_w", 999.9), ("energy_wh", 0.0), ("site_id", "other"), ("ts", 1_790_000_000.124)])
def test_stored_with_other_values_is_altered(field, stored_value):
    sent = {("a", 1): values()}
    changed = rows({**values(), field: stored_value}) if field != "ts" else rows(values(ts=stored_value))
    result = check_ledger(sent, sent, {("a", 1): changed})
    assert not result.ok
    assert [(a.key, a.field) for a in result.altered] == [(("a", 1), field)]
    assert "ALTERED" in result.describe()


def test_timestamps_stored_to_the_microsecond_or_as_text_are_the_same_reading():
    sent = {("a", 1): values(ts=1_790_000_000.123)}
    iso = datetime.fromtimestamp(1_790_000_000.123, tz=timezone.utc).isoformat()
    assert check_ledger(sent, sent, {("a", 1): rows(values(ts=1_790_000_000.1230004))}).ok
    assert check_ledger(sent, sent, {("a", 1): [{**values(), "ts": iso}]}).ok  # parsed, not compared as text
    assert not check_ledger(sent, sent, {("a", 1): [{**values(), "ts": "yesterday"}]}).ok


def test_an_ack_for_something_never_sent_is_a_broken_record():
    with pytest.raises(ValueError, match="never sent"):
        check_ledger({("a", 1): values()}, {("a", 2)}, {})


keys = st.tuples(st.sampled_from(["inv1", "inv2", "inv3"]), st.integers(1, 40))


@given(sent_keys=st.sets(keys), data=st.data())
def test_every_key_is_classified_exactly_as_the_definitions_say(sent_keys, data):
    sent = {k: values(float(k[1])) for k in sent_keys}
    acked = data.draw(st.sets(st.sampled_from(sorted(sent)))) if sent else set()
    stored_list = data.draw(st.lists(keys | st.sampled_from(sorted(sent)) if sent else keys))
    stored: dict = {}
    for key in stored_list:
        stored.setdefault(key, []).extend(rows(sent.get(key, values())))
    result = check_ledger(sent, acked, stored)
    assert set(result.lost) == acked - set(stored)
    assert set(result.unexpected) == set(stored) - set(sent)
    assert set(result.duplicates) == {k for k, r in stored.items() if len(r) > 1}
    assert result.altered == []
    assert result.ok == (not result.lost and not result.unexpected and not result.duplicates)
    assert result.unacked_stored == len((set(sent) - acked) & set(stored))

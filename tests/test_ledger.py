"""The ledger check: lost, unexpected and duplicated readings are each told apart."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulsk_chaos.checks import check_ledger


def test_a_clean_ledger():
    sent = {("a", 1), ("a", 2), ("b", 1)}
    result = check_ledger(sent, sent, Counter(sent))
    assert result.ok and (result.sent, result.acked, result.stored) == (3, 3, 3)
    assert result.lost == result.unexpected == result.duplicates == []


def test_acknowledged_and_missing_is_lost():
    result = check_ledger({("a", 1), ("a", 2)}, {("a", 1), ("a", 2)}, Counter({("a", 1): 1}))
    assert not result.ok
    assert result.lost == [("a", 2)]
    assert "1 LOST (a#2)" in result.describe()


def test_unacknowledged_and_missing_is_not_lost():
    # The broker never promised it: the publisher would have retried.
    result = check_ledger({("a", 1), ("a", 2)}, {("a", 1)}, Counter({("a", 1): 1}))
    assert result.ok and result.lost == []


def test_unacknowledged_but_stored_is_allowed_and_counted():
    result = check_ledger({("a", 1)}, set(), Counter({("a", 1): 1}))
    assert result.ok and result.unacked_stored == 1


def test_stored_but_never_sent_is_unexpected():
    result = check_ledger({("a", 1)}, {("a", 1)}, Counter({("a", 1): 1, ("a", 99): 1}))
    assert not result.ok and result.unexpected == [("a", 99)]


def test_stored_twice_is_a_duplicate_but_not_a_failure():
    result = check_ledger({("a", 1)}, {("a", 1)}, Counter({("a", 1): 2}))
    assert result.ok and result.duplicates == [("a", 1)]


def test_an_ack_for_something_never_sent_is_a_broken_record():
    with pytest.raises(ValueError, match="never sent"):
        check_ledger({("a", 1)}, {("a", 2)}, Counter())


keys = st.tuples(st.sampled_from(["inv1", "inv2", "inv3"]), st.integers(1, 40))


@given(sent=st.sets(keys), data=st.data())
def test_every_key_is_classified_exactly_as_the_definitions_say(sent, data):
    acked = data.draw(st.sets(st.sampled_from(sorted(sent)))) if sent else set()
    stored = Counter(data.draw(st.lists(keys | st.sampled_from(sorted(sent)) if sent else keys)))
    result = check_ledger(sent, acked, stored)
    assert set(result.lost) == acked - set(stored)
    assert set(result.unexpected) == set(stored) - sent
    assert set(result.duplicates) == {k for k, n in stored.items() if n > 1}
    assert result.ok == (not result.lost and not result.unexpected)
    assert result.unacked_stored == len((sent - acked) & set(stored))

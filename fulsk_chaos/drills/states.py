"""The states of the Fulsk stack a thorough fault search should reach at least once (the model
is drills.reach): each scored from a ``Moment``, each with the hint that steers a guided search
toward it. Thresholds come from the configuration ([reach]); a user's own states, declared with
``REACHABLE.item``, come after these.
"""
from __future__ import annotations

from ..config import ReachSettings
from .reach import REACHABLE, FaultView, Moment, ReachCatalogue


def _scaled(value: int | None, wanted: int) -> float:
    return 0.0 if value is None else value / max(1, wanted)


def catalogue(thresholds: ReachSettings = ReachSettings()) -> ReachCatalogue:
    """The default catalogue, with the configuration's thresholds ([reach]); REACHABLE's items (a
    user's) come after it."""
    c = ReachCatalogue()

    def keep_ingest_out(m: Moment, nxt: FaultView | None) -> bool:
        if not m.ingest_out():  # cut the ingest path first...
            return nxt is not None and m.ingest_out(nxt)
        return nxt is not None  # ...then keep it cut while the backlog grows: inject, do not heal

    @c.item("ingest-back-with-backlog",
            f"the backend's ingest came back (its fault, or the broker's, healed) with at least {thresholds.backlog} "
            "readings waiting for it", hint=keep_ingest_out)
    def _(m: Moment) -> float:
        if m.healed is None or not m.ingest_out(m.healed):
            return 0.0
        return _scaled(m.backlog, thresholds.backlog)

    def both(m: Moment, nxt: FaultView | None) -> bool:
        if nxt is None:
            return False
        r = m.roles
        return ((not m.cache_out() and nxt.does(("out", "slow"), r.cache, by=r.backend)) or
                (not m.database_slow() and nxt.does("slow", r.database, by=r.backend)))

    @c.item("cache-out-database-slow",
            "users' latest readings answered while the cache was out and the database slow: every answer a "
            "slow database read", hint=both)
    def _(m: Moment) -> float:
        if m.cache_out() and m.database_slow():
            return 1.0 if m.answered else 0.9
        return 0.4 * (m.cache_out() + m.database_slow())

    def cache(m: Moment, nxt: FaultView | None) -> bool:
        return nxt is not None and not m.cache_out() and nxt.does(("out", "slow"), m.roles.cache, by=m.roles.backend)

    @c.item("read-while-cache-out", "users' latest readings answered from the database while the cache was out",
            hint=cache)
    def _(m: Moment) -> float:
        return (1.0 if m.answered else 0.5) if m.cache_out() else 0.0

    def database_then_heal(m: Moment, nxt: FaultView | None) -> bool:
        db_out = m.any("out", m.roles.database)
        if not db_out:
            return nxt is not None and nxt.does("out", m.roles.database)
        return nxt is None and m.active[-1].does("out", m.roles.database)  # heal it once readings wait

    @c.item("database-back-ingest-behind",
            f"the database came back while at least {thresholds.behind} readings were still waiting to be stored "
            "(ingest retrying)", hint=database_then_heal)
    def _(m: Moment) -> float:
        if m.healed is None or not m.healed.does("out", m.roles.database):
            return 0.0
        return _scaled(m.backlog, thresholds.behind)

    def same(m: Moment, nxt: FaultView | None) -> bool:
        return nxt is not None and any(nxt.hits & f.hits for f in m.active)

    @c.item("same-service-twice", "two faults active at once on the same service (or its edges)", hint=same)
    def _(m: Moment) -> float:
        hit = [s for f in m.active for s in f.hits]
        return 1.0 if len(hit) > len(set(hit)) else 0.5 * bool(m.active)

    @c.item("three-at-once", "three faults active at once", hint=lambda m, nxt: nxt is not None)
    def _(m: Moment) -> float:
        return len(m.active) / 3

    def two_heal_one_inject(m: Moment, nxt: FaultView | None) -> bool:
        if len(m.active) >= 2 and not m.schedule[-1].is_heal:
            return nxt is None
        return nxt is not None

    @c.item("injected-while-recovering",
            "a fault injected right after another was healed, while the stack was still faulted and recovering",
            hint=two_heal_one_inject)
    def _(m: Moment) -> float:
        return 1.0 if m.after_partial_heal and not m.schedule[-1].is_heal else 0.0

    def backend_after_database(m: Moment, nxt: FaultView | None) -> bool:
        r = m.roles
        if not m.any("out", r.database):
            return nxt is not None and nxt.does("out", r.database)
        if not m.any("out", r.backend):
            return nxt is not None and nxt.does("out", r.backend) and not nxt.client
        return nxt is None and m.active[-1].does("out", r.backend)

    @c.item("backend-back-without-database", "the backend came back (its fault healed) while the database was out",
            hint=backend_after_database)
    def _(m: Moment) -> float:
        r = m.roles
        if m.healed is not None and m.healed.does("out", r.backend) and not m.healed.client:
            return 1.0 if m.any("out", r.database) else 0.3
        return 0.3 * m.any("out", r.database)

    def broker_and_backend(m: Moment, nxt: FaultView | None) -> bool:
        r = m.roles
        return nxt is not None and ((not m.any("out", r.broker) and nxt.does("out", r.broker) and not nxt.client) or
                                    (not m.any("out", r.backend) and nxt.does("out", r.backend) and not nxt.client))

    @c.item("broker-and-backend-out", "the broker and the backend out at once", hint=broker_and_backend)
    def _(m: Moment) -> float:
        r = m.roles
        return (m.any("out", r.broker) + m.any("out", r.backend)) / 2

    def flood_on_cut(m: Moment, nxt: FaultView | None) -> bool:
        if nxt is None:
            return False
        return nxt.does("load", m.roles.broker) if m.ingest_out() else m.ingest_out(nxt)

    @c.item("flood-while-ingest-out", "the broker flooded while the ingest path was cut: the backlog grows at the "
            "flood's rate", hint=flood_on_cut)
    def _(m: Moment) -> float:
        return (m.ingest_out() + m.any("load", m.roles.broker)) / 2

    for item in REACHABLE:  # a user's, declared with REACHABLE.item
        c.items.setdefault(item.name, item)
    return c

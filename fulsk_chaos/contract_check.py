"""``fulsk-chaos contract check``: a backend's contract tried once against a running stack, before
any drill trusts it. A few inverters publish as the contract says; then each item is read as the
drills read it - the ledger query, each read users make, the live feed, the health answer - and
judged by the same checks. One line per item: ``ok``, or what is wrong and what to change. A
drill run on a contract that does not hold would blame the stack for the contract's mistakes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import requests

from .checks import judge_answer, settle
from .checks.ledger import ContractError, stored_with_prefix
from .contract import Contract
from .drills.instruments import user_targets
from .probes import Fleet, LiveFeed, Sample
from .stack import Stack

DEPENDENCIES = ("postgres", "redis", "mqtt")


@dataclass(frozen=True)
class Item:
    name: str      # what of the contract: "ledger", "reads.latest", "feed", ...
    ok: bool
    said: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.said}"


def check(stack: Stack, contract: Contract | None = None, *, inverters: int = 2, readings: int = 4,
          interval_s: float = 0.25) -> list[Item]:
    """Publish ``readings`` per inverter as ``contract`` says (the stack's own by default) and
    judge every item of it once."""
    contract = contract or stack.contract
    e = stack.endpoints
    feed = LiveFeed(e.frontend_url.replace("http://", "ws://", 1) + contract.feed.path, contract=contract,
                    max_duration_s=120)
    fleet = Fleet(e.mqtt_host, e.mqtt_port, inverters=inverters, sites=1, interval_s=interval_s,
                  max_messages=inverters * readings, max_duration_s=60, contract=contract)
    feed.launch()
    feed.wait_started()
    try:
        fleet.launch()
        fleet.wait_started()
        time.sleep(readings * interval_s + 1.0)
        fleet.stop(settle_s=2.0)
        time.sleep(1.0)  # the last readings on their way to the feed
    finally:
        feed.stop()
    found = [_publish(fleet, inverters * readings, contract), _ledger(stack, fleet, contract)]
    found += _reads(stack, fleet, contract)
    found.append(_feed(feed, fleet, contract))
    found.append(_health(stack, contract))
    return found


def _publish(fleet: Fleet, due: int, contract: Contract) -> Item:
    acked = len(fleet.acked())
    return Item("publish", acked == due,
                f"{acked} of {due} readings acknowledged by the broker on {contract.publish.topic!r}" if acked == due else
                f"only {acked} of {due} readings were acknowledged on {contract.publish.topic!r}: check publish.topic "
                f"and publish.qos, and that the backend's broker is the stack's")


def _ledger(stack: Stack, fleet: Fleet, contract: Contract) -> Item:
    try:
        result = settle(fleet, stack.endpoints.database_dsn, timeout_s=10, quiet_s=2.0, contract=contract)
    except ContractError as exc:
        return Item("ledger.query", False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a query the database refuses: the contract's to fix
        return Item("ledger.query", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}: fix ledger.query")
    if result.acked and result.ok:
        return _inverters(stack, fleet, contract) or Item(
            "ledger", True, f"{result.stored} of {result.acked} acknowledged readings stored once, unaltered")
    hint = ("a field stored with another value: check publish.units and publish.fields (what is sent) and the "
            "query's conversions to canonical units" if result.altered else
            "acknowledged readings the query does not find: check ledger.query, ledger.identity and publish.fields")
    return Item("ledger", False, f"{result.describe()}: {hint}")


def _inverters(stack: Stack, fleet: Fleet, contract: Contract) -> Item | None:
    """What is wrong with ``ledger.inverters`` (every stored inverter, as ``inverter_id``), if anything."""
    try:
        found = stored_with_prefix(stack.endpoints.database_dsn, fleet.prefix, contract=contract)
    except Exception as exc:  # noqa: BLE001 - a query the database refuses: the contract's to fix
        return Item("ledger.inverters", False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}: fix ledger.inverters "
                                               f"(it must return the stored inverter ids as a column inverter_id)")
    if set(found) != set(fleet.inverter_ids):
        return Item("ledger.inverters", False, f"found {sorted(found)} of the inverters {sorted(fleet.inverter_ids)}: "
                                               f"fix ledger.inverters")
    return None


def _reads(stack: Stack, fleet: Fleet, contract: Contract) -> list[Item]:
    record = fleet.record()
    found = []
    names = {"latest": "reads.latest", "history": "reads.history", "api": "reads.listing",
             "generation": "reads.generation"}
    for target in user_targets(stack.settings, fleet.inverter_ids, contract):
        if target.name not in names:
            continue
        path, meta = target.request(0)
        started = time.monotonic()
        try:
            response = requests.get(stack.endpoints.frontend_url + path, timeout=5)
            body: Any = response.json() if target.json else None
            status: int | None = response.status_code
        except (requests.RequestException, ValueError) as exc:
            found.append(Item(names[target.name], False, f"GET {path}: {exc}: check its path"))
            continue
        sample = Sample(target.name, started, time.monotonic() - started, status, body=body, meta=meta)
        served = judge_answer(sample, record)
        name = names[target.name]
        if served is not None and served.wrong is None:
            found.append(Item(name, True, f"GET {path}: {status}, the readings sent"))
        elif served is None:
            found.append(Item(name, False, f"GET {path}: {status}, nothing could be judged: check its path"))
        else:
            found.append(Item(name, False, f"GET {path}: {served.wrong}: check {name}.items, fields and units"))
    return found


def _feed(feed: LiveFeed, fleet: Fleet, contract: Contract) -> Item:
    arrived = set(feed.arrivals()) & fleet.acked()
    if arrived:
        return Item("feed", True, f"{len(arrived)} of the readings sent arrived on {contract.feed.path}")
    return Item("feed", False, f"none of the {len(fleet.acked())} readings sent arrived on {contract.feed.path} as "
                               f"the contract reads its messages: check feed.path, feed.items and feed.fields")


def _health(stack: Stack, contract: Contract) -> Item:
    path = contract.health.path
    started = time.monotonic()
    try:
        response = requests.get(stack.endpoints.frontend_url + path, timeout=5)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return Item("health", False, f"GET {path}: {exc}: check health.path")
    sample = Sample("health", started, time.monotonic() - started, response.status_code, body=body,
                    meta={"health": asdict(contract.health)})
    if not sample.ok:
        return Item("health", False, f"GET {path}: {response.status_code} {str(body)[:120]} is not healthy as "
                                     f"health.status and health.healthy say, on a healthy stack")
    states = {d: sample.dependency(d) for d in DEPENDENCIES}
    if contract.capabilities.dependency_health and None in states.values():
        unread = [d for d, s in states.items() if s is None]
        return Item("health", False, f"GET {path}: no state for {', '.join(unread)} where health.dependencies "
                                     f"says (or declare capabilities.dependency_health = false)")
    return Item("health", True, f"GET {path}: healthy" + (
        f"; {', '.join(f'{d} {s}' for d, s in states.items())}" if contract.capabilities.dependency_health else ""))

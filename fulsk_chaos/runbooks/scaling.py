"""Scale Up Services: the high load it is for, and what scaling out must give users.

Not the runbook's word for it (``docker-compose ps`` lists containers; it does not show that they
serve): every instance asked for runs and answers requests with fresh, true data under an id
of its own, nothing through the frontend fails, every
backend instance's live feed carries every reading (an instance that only sees its share of the
readings leaves its dashboards with gaps), and under the same load the ops guide's baselines
hold after scaling. The load's figures before and after are measured side by side.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import aiohttp
import psutil
import requests

from ..checks import Served, judge_answer
from ..checks.steady import no_wrong_answers
from ..contract import Contract
from ..errors import FulskChaosError
from ..figures import LoadFigures, RunbookFigures
from ..load import LoadTest, load_profile
from ..load import judge as load_judge
from ..probes import Sample
from ..probes.fleet import Key
from ..probes.live import feed_keys
from ..verdict import Expectation, at_most, none_of
from .drill import RunbookDrill, check, condition
from .model import RunbookError, Trigger
from .runner import RunbookRun

BURSTS, BURST_SIZE = 3, 24   # concurrent requests, each on a connection of its own
FEED_ATTEMPTS = 60           # connections tried until every backend instance's feed is held


@condition("high-load")
@contextlib.contextmanager
def high_load(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """Locust load through the frontend (``params.profile``, default the chaos profile) for the
    whole runbook: a window of ``params.before_s`` under load before the first step, another of
    ``params.after_s`` after the last (the check). Its acknowledged readings join the ledger."""
    if drill.load_dir is None:
        raise RunbookError(f"{trigger.case}: high-load needs a directory for the load's files (RunbookDrill.load_dir)")
    try:
        profile = load_profile(str(trigger.params.get("profile", "chaos")))
    except FulskChaosError as exc:
        raise RunbookError(f"{trigger.case}: {exc}") from None
    load = LoadTest(drill.stack, profile, Path(drill.load_dir), run_s=profile.duration_s)
    drill.load = load
    try:
        load.start()
        time.sleep(float(trigger.params.get("before_s", 6)))
        drill.load_before = (load.measured_from, time.time())
        yield {}
    finally:
        result = load.stop()
        if result is not None:
            drill.experiment.track(result.ledger)  # what the load's inverters were acknowledged, stored once


def instance_answers(asks: Sequence[tuple[str, str, dict[str, Any]]], header: str, size: int = BURST_SIZE
                     ) -> list[tuple[str | None, Sample]]:
    """Each ask (url, probe target, meta) on a new connection, ``size`` at a time: which backend
    instance answered (its ``header``: the contract's instance identity), and the answer as a
    probe sample."""
    def ask(one: tuple[str, str, dict[str, Any]]) -> tuple[str | None, Sample]:
        url, target, meta = one
        started = time.monotonic()
        try:
            response = requests.get(url, timeout=5, headers={"Connection": "close"})
        except requests.RequestException as exc:
            return None, Sample(target, started, time.monotonic() - started, None, str(exc), meta=meta)
        try:
            body = response.json()
        except ValueError:
            body = None
        return (response.headers.get(header),
                Sample(target, started, time.monotonic() - started, response.status_code, body=body, meta=meta))
    with ThreadPoolExecutor(size) as pool:
        return list(pool.map(ask, asks))


def instances_serving(url: str, header: str, bursts: int = BURSTS, size: int = BURST_SIZE) -> tuple[Counter, int]:
    """Which backend instance answered each of ``bursts`` bursts of ``size`` concurrent requests,
    each on a new connection; and how many failed."""
    answers = instance_answers([(url, "api", {})] * (bursts * size), header, size)
    served = Counter(i for i, sample in answers if sample.ok and i is not None)
    return served, len(answers) - sum(served.values())


def _answers_per_instance(drill: RunbookDrill) -> list[Expectation]:
    """Each instance's answers for the fleet's latest readings: fresh (its ingest keeps up, on its
    own MQTT session) and true. Users reach whichever instance their connection lands on."""
    url, settings, contract = drill.stack.endpoints.backend_url, drill.settings, drill.stack.contract
    inverters = drill.experiment.fleet.inverter_ids
    asks = [(url + contract.reads.latest.path.format(inverter=inverter), "latest", {"inverter_id": inverter})
            for inverter, _ in zip(itertools.cycle(inverters), range(BURSTS * BURST_SIZE))]
    answers = instance_answers(asks, contract.capabilities.instance_header)
    record = drill.experiment.fleet.record()
    per_instance: dict[str, list[Served]] = {}
    for instance, sample in answers:
        served = judge_answer(sample, record)
        if instance not in (None, contract.capabilities.instance_pending) and served is not None:
            per_instance.setdefault(instance, []).append(served)
    limit = settings.steady_state.max_staleness_s
    found = []
    for instance, served in sorted(per_instance.items()):
        judged = [s for s in served if s.wrong is None]
        stale = [s for s in judged if not s.fresh(limit)]
        found.append(at_most(f"answers of {instance}: stale (newest reading > {limit:g} s behind the broker)",
                             len(stale) / len(judged) if judged else None, settings.alerts.error_rate,
                             evidence={"judged": len(judged)},
                             detail=f"{len(stale)} of {len(judged)} stale, the worst "
                                    f"{max(s.staleness_s or 0 for s in stale):.1f} s behind" if stale else ""))
    found.append(no_wrong_answers("scaled out: ", [s for served in per_instance.values() for s in served]))
    return found


async def _feeds(url: str, expected: int, listen_s: float, contract: Contract) -> dict[str, dict[Key, float]]:
    """Hold one live feed per backend instance (new connections until each instance has one,
    told by its hello), then record what each carries for ``listen_s``."""
    arrivals: dict[str, dict[Key, float]] = {}
    timeout = aiohttp.ClientTimeout(total=None, connect=2, sock_connect=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        held: dict[str, aiohttp.ClientWebSocketResponse] = {}
        try:
            for _ in range(FEED_ATTEMPTS):
                if len(held) >= expected:
                    break
                try:
                    ws = await session.ws_connect(url, heartbeat=5)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    continue  # an instance refusing its feed: judged by the count held
                try:
                    hello = await ws.receive_json(timeout=5)
                except (TypeError, ValueError, asyncio.TimeoutError):
                    hello = {}  # no hello (the backend contract's): the feed's instance is unknown
                instance = str(hello.get("instance")) if hello.get("type") == "hello" else "unknown"
                if instance in held:
                    await ws.close()
                else:
                    held[instance] = ws
                    arrivals[instance] = {}

            async def listen(instance: str, ws: aiohttp.ClientWebSocketResponse) -> None:
                with contextlib.suppress(asyncio.TimeoutError):
                    async with asyncio.timeout(listen_s):
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                return
                            now = time.monotonic()
                            for key in feed_keys(message.data, contract):
                                arrivals[instance].setdefault(key, now)
            await asyncio.gather(*(listen(i, ws) for i, ws in held.items()))
        finally:
            for ws in held.values():
                await ws.close()
    return arrivals


def _spread(served: Counter, failed: int) -> str:
    return ", ".join(f"{i}: {n}" for i, n in sorted(served.items())) + f"; {failed} failed"


def _running(drill: RunbookDrill, service: str) -> int:
    return sum(state == "running" for state in drill.stack.instances(service))


@check("scaled-out")
def scaled_out(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """Every instance the runbook asked for (``params.scale``: service -> count) runs; each
    backend instance answers under an id of its own, fresh and true, and its live feed carries
    every reading; nothing through the frontend fails (how nginx spread it is shown);
    under the same load, the guide's baselines hold after scaling (before: shown beside them)."""
    wanted = {str(k): int(v) for k, v in dict(trigger.params.get("scale") or {}).items()}
    if not wanted:
        raise RunbookError(f"{trigger.case}: scaled-out needs params.scale (service: instances)")
    found: list[Expectation] = [
        Expectation(f"{service} instances running", _running(drill, service), "==", count) for service, count in wanted.items()]
    endpoints = drill.stack.endpoints
    backends = wanted.get("backend", 1)
    # On their shared port each new connection goes to one instance at random: every one answers.
    listing, header = drill.stack.contract.reads.listing.path, drill.stack.contract.capabilities.instance_header
    served, failed = instances_serving(endpoints.backend_url + listing, header)
    # one still leasing its slot is counted once it has it
    named = set(served) - {drill.stack.contract.capabilities.instance_pending}
    # Fewer ids than instances: some do not answer, or share an MQTT client id (and take its session in turn).
    found.append(Expectation("backend instances answering on the backend's port, each under an id of its own",
                             len(named), "==", backends, detail=_spread(served, failed),
                             evidence={"requests": sum(served.values()) + failed}))
    # Through the frontend, nginx's pooled connections decide: shown (how the load was spread), and
    # none of it may fail.
    spread, failed = instances_serving(endpoints.frontend_url + listing, header)
    drill.experiment.record.measure(RunbookFigures(backend_instances_through_frontend=dict(spread)))
    found.append(none_of("requests through the frontend that failed, scaled out", failed,
                         evidence={"requests": sum(spread.values()) + failed}, detail=_spread(spread, failed)))
    # every reading acknowledged while the feeds listen, on every instance's feed
    listen_s, grace_s = 4.0, 1.0
    started = time.monotonic()
    contract = drill.stack.contract
    feeds = asyncio.run(_feeds(endpoints.backend_url.replace("http://", "ws://", 1) + contract.feed.path, backends,
                               listen_s, contract))
    due = drill.experiment.fleet.acked(after=started + grace_s, before=started + listen_s - grace_s)
    found.append(Expectation("backend instances whose live feed could be held", len(feeds), "==", backends,
                             detail=", ".join(sorted(feeds))))
    for instance, arrived in sorted(feeds.items()):
        missed = len(due - set(arrived))
        found.append(at_most(f"live feed of {instance}: readings missed", missed / len(due) if due else None,
                             drill.settings.alerts.error_rate, evidence={"readings": len(due)},
                             detail=f"{missed} of {len(due)} acknowledged readings never arrived"))
    found += _answers_per_instance(drill)
    found += _load_after(drill, trigger)
    return found


def _load_after(drill: RunbookDrill, trigger: Trigger) -> list[Expectation]:
    """The load's window after the last step, judged; the window before the first, and the
    scaling between them, shown; no request may fail while scaling."""
    load: LoadTest | None = drill.load
    if load is None or drill.load_before is None:
        return []
    after_s = float(trigger.params.get("after_s", 6))
    after_start, host_before = time.time(), psutil.cpu_times()
    time.sleep(after_s)
    busy = host_busy(host_before, psutil.cpu_times())
    result = load.stop()
    if result is None:
        return [Expectation("the load ran through the runbook", 0, "==", 1, detail="Locust had stopped")]
    settings, exp = drill.settings, drill.experiment
    phases = {"before scaling": drill.load_before, "while scaling": (drill.load_before[1], after_start),
              "after scaling": (after_start, after_start + after_s)}
    judged = {phase: load_judge.window(result, settings, *span, phase=phase, resources=False)
              for phase, span in phases.items()}
    exp.record.expect(judged["after scaling"].expectations, judged["after scaling"].evidence)
    figures = {phase: j.load for phase, j in judged.items()}
    side_by_side = {}
    for group in ("api", "page load", "websocket", "http"):
        b, a = figures["before scaling"].get(group), figures["after scaling"].get(group)
        if a and b:
            side_by_side[group] = {"p50_ms": (b["p50_ms"], a["p50_ms"]), "p95_ms": (b["p95_ms"], a["p95_ms"]),
                                   "throughput_rps": (b["throughput_rps"], a["throughput_rps"]),
                                   "p95_after_over_before": round(a["p95_ms"] / b["p95_ms"], 2) if b["p95_ms"] else None}
    exp.record.measure(LoadFigures(load_profile=result.profile.name), RunbookFigures(scaling_before_after=side_by_side),
                       *(f for j in judged.values() for f in j.figures))
    scaling, after = figures["while scaling"].get("http", {}), figures["after scaling"].get("http", {})
    limit = 100 * settings.load.host_max_cpu
    return [none_of("requests that failed while scaling out", scaling.get("failures"),
                    evidence={"requests": scaling.get("count", 0)},
                    detail=f"{after.get('failures')} failed after scaling"),
            # the instances added share the host with the rest of the stack and the generator:
            # on a host with no core to spare, the figures after scaling are the host's
            Expectation("host CPU busy after scaling", round(100 * busy, 1), "<=", limit,
                        f"% of its {psutil.cpu_count()} cores", kind="validity",
                        detail="the host had no core to spare for the instances added: the figures after "
                               "scaling measure the host; run the drill on a larger host or under a lighter "
                               "load (params.profile)")]


def host_busy(before: Any, after: Any) -> float:
    """The share of the host's CPU time that was busy between two psutil.cpu_times()."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0))
    guest = ("guest", "guest_nice")  # already counted in user and nice
    total = sum(v for k, v in after._asdict().items() if k not in guest) \
        - sum(v for k, v in before._asdict().items() if k not in guest)
    return max(0.0, 1.0 - idle / total) if total > 0 else 0.0

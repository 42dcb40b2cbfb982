"""Blind spots: for every fault of a scenario, what users and inverters suffered beside what paged.

An on-call engineer learns of an outage from a page or from a user. Harm that lasted longer than
any rule needs to fire (``checks.alerts.fire_within_s``) with no page by then is a **blind spot**
of the monitoring; a page with no harm at all is **noise**. It is measured for every scenario,
whatever alerts it declared (those stay expectations, judged in ``checks.alerts``): this is the
map of what nobody declared, a figure, never a verdict of its own.

Harm is read second by second from what the observers measured, against the ops guide's alert
thresholds: a second is harmed when more than the error-rate threshold of its reads failed, or
were slower than the HTTP threshold (or never answered), or of its answers were stale; when any
answer was wrong; when more than that share of the readings the broker acknowledged in it never
reached the live feed, or of the readings sent in it the broker did not acknowledge within the
freshness bound. Readings acknowledged and not stored show as stale answers (and, if never
stored, in the ledger).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import Settings
from ..probes import Sample
from ..probes.fleet import Key, Message
from ..probes.http import READS
from ..services.prometheus import alert_rules
from ..stack.alerts import Notification
from .users import Served, answered_ok

HARMS = {  # kind: what a harmed second means
    "errors": "reads failed",
    "slow": "reads slower than the alert threshold, or unanswered",
    "stale": "answers behind the readings the broker acknowledged",
    "wrong": "answers that are not the readings sent",
    "live feed": "acknowledged readings that never reached the live feed",
    "unacknowledged": "readings the broker did not acknowledge within the freshness bound",
}
# Harmed seconds past a rule's bound with no page firing that make a blind spot: one (the harm is
# read by the second; a page's times are not)
UNPAGED_S = 1.0
FEED_GRACE_S = 1.0  # a reading acknowledged this close to the window's end may still be on its way

BLIND, OK, NOISE, BRIEF, QUIET, UNMONITORED = "blind spot", "ok", "noise", "brief", "quiet", "unmonitored"


@dataclass(frozen=True)
class Harm:
    kind: str        # one of HARMS
    episodes: tuple[tuple[float, float], ...]  # runs of harmed seconds, from the fault's start
    worst: float     # the worst second's share (of reads, answers or readings)

    @property
    def onset_s(self) -> float:
        return self.episodes[0][0]

    @property
    def lasted_s(self) -> float:
        return round(sum(b - a for a, b in self.episodes), 2)

    def describe(self) -> str:
        return (f"{self.kind} ({HARMS[self.kind]}; worst {self.worst:.0%} of a second) for {self.lasted_s:g} s "
                f"from +{self.onset_s:g} s")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "onset_s": self.onset_s, "lasted_s": self.lasted_s, "worst": self.worst,
                "episodes": [list(e) for e in self.episodes]}


@dataclass(frozen=True)
class Page:
    alert: str
    severity: str
    fired_after_s: float                   # from the fault's start (negative: already firing)
    resolved_after_s: float | None = None  # None: still firing when the scenario ended

    def describe(self) -> str:
        return f"{self.alert} ({self.severity or 'no severity'}) +{self.fired_after_s:g} s"

    def covers(self, a: float, b: float) -> float:
        """Seconds of ``a``..``b`` this page was firing in."""
        end = b if self.resolved_after_s is None else min(b, self.resolved_after_s)
        return max(0.0, end - max(a, self.fired_after_s))


@dataclass(frozen=True)
class BlindSpot:
    """One fault: the harm it did, the pages it raised, and what that says of the monitoring."""
    fault: str
    harms: tuple[Harm, ...]
    pages: tuple[Page, ...] | None  # None: the stack had no monitoring
    bound_s: float                  # the longest a rule may take to page (checks.alerts.fire_within_s)
    status: str                     # BLIND, OK, NOISE, BRIEF, QUIET or UNMONITORED
    why: str
    unpaged_s: dict[str, float] | None = None  # per harm: harmed seconds no page covered, past the bound

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "status": self.status, "why": self.why, "bound_s": round(self.bound_s, 2),
                "harms": [h.to_json() for h in self.harms], "unpaged_s": self.unpaged_s,
                "pages": None if self.pages is None else [asdict(p) for p in self.pages]}


def spans(faults: Sequence[tuple[str, float, float | None]], method_began: float | None, recovered: float | None,
          closing: float) -> list[tuple[str, float, float]]:
    """Each fault's share of the scenario (time.monotonic()): from its injection to its rollback,
    and on until the recovery was measured, or the next fault was injected, whichever came first
    (a schedule's harm is the fault's that was newest); a method without faults (a restore, a
    backup), from its start to the recovery. Nothing beyond ``closing``."""
    if not faults:
        return [("the method", method_began, min(recovered or closing, closing))] if method_began is not None else []
    ordered = sorted(faults, key=lambda f: f[1])
    found = []
    for k, (name, a, b) in enumerate(ordered):
        b = closing if b is None else b
        after = recovered if recovered is not None and recovered > b else b
        following = next((f[1] for f in ordered[k + 1:] if f[1] > a), None)
        end = max(b, min(after, following)) if following is not None else after
        found.append((name, a, min(end, closing)))
    return found


def harms(judged: Sequence[tuple[Sample, Served | None]], messages: Iterable[Message], arrivals: dict[Key, float],
          start: float, end: float, settings: Settings, *, observed_until: float | None = None,
          bucket_s: float = 1.0) -> list[Harm]:
    """The harm of ``start``..``end`` (time.monotonic()), by kind; ``observed_until``: when the
    observers stopped (a reading's acknowledgement or feed arrival is awaited until then)."""
    n = max(1, math.ceil((end - start) / bucket_s))
    until = observed_until if observed_until is not None else end
    limit, max_stale = settings.alerts.error_rate, settings.steady_state.max_staleness_s
    slow_s = settings.alerts.http_response_ms / 1000
    shares: dict[str, list[float | None]] = {kind: [None] * n for kind in HARMS}

    def bucket(at: float) -> int | None:
        i = int((at - start) // bucket_s)
        return i if 0 <= i < n and at >= start else None

    reads: list[list[Sample]] = [[] for _ in range(n)]
    answers: list[list[Served]] = [[] for _ in range(n)]
    for sample, served in judged:
        if (i := bucket(sample.started)) is None:
            continue
        if sample.target in READS:
            reads[i].append(sample)
        if served is not None and not served.unreadable:
            answers[i].append(served)
    due: list[list[Message]] = [[] for _ in range(n)]
    sent: list[list[Message]] = [[] for _ in range(n)]
    for m in messages:
        if m.acked_at is not None and m.acked_at <= until - FEED_GRACE_S and (i := bucket(m.acked_at)) is not None:
            due[i].append(m)
        if m.sent_at + max_stale <= until and (i := bucket(m.sent_at)) is not None:
            sent[i].append(m)
    for i in range(n):
        if reads[i]:
            answered = [s for s in reads[i] if s.answered]
            shares["errors"][i] = sum(not answered_ok(s) for s in answered) / len(reads[i])
            shares["slow"][i] = sum(not s.answered or s.latency_s > slow_s for s in reads[i]) / len(reads[i])
        right = [a for a in answers[i] if a.wrong is None]
        if right:
            shares["stale"][i] = sum(not a.fresh(max_stale) for a in right) / len(right)
        if answers[i]:
            shares["wrong"][i] = sum(a.wrong is not None for a in answers[i]) / len(answers[i])
        if due[i]:
            shares["live feed"][i] = sum(m.key not in arrivals for m in due[i]) / len(due[i])
        if sent[i]:
            shares["unacknowledged"][i] = sum(m.acked_at is None or m.acked_at - m.sent_at > max_stale
                                        for m in sent[i]) / len(sent[i])
    found = []
    for kind, series in shares.items():
        bound = 0.0 if kind == "wrong" else limit  # one wrong answer is harm; the rest past the error rate
        harmed = [i for i, share in enumerate(series) if share is not None and share > bound]
        if harmed:
            episodes: list[list[int]] = []
            for i in harmed:
                if episodes and i == episodes[-1][1]:
                    episodes[-1][1] = i + 1
                else:
                    episodes.append([i, i + 1])
            found.append(Harm(kind, tuple((round(a * bucket_s, 2), round(b * bucket_s, 2)) for a, b in episodes),
                              round(max(series[i] for i in harmed), 3)))
    return found


def pages(notifications: Sequence[Notification], start: float, until: float) -> list[Page]:
    """Every alert firing at some time from ``start`` to ``until`` (time.monotonic()): each firing
    notification with the resolved one that followed it, times told from ``start``. One pass over
    the stack's notifications (a drill's stack gathers thousands: one per channel, per scenario)."""
    found: list[Page] = []
    firing: dict[str, Notification] = {}  # per alert, the notification that began its page
    for n in sorted(notifications, key=lambda n: n.received):
        if n.status == "firing" and n.alert not in firing:  # a repeat, or another channel, while firing: the same page
            firing[n.alert] = n
        elif n.status == "resolved" and (began := firing.pop(n.alert, None)) is not None:
            if began.received <= until and n.received >= start:
                found.append(_page(began, start, n))
    found += [_page(began, start) for began in firing.values() if began.received <= until]
    return sorted(found, key=lambda p: p.fired_after_s)


def _page(began: Notification, start: float, resolved: Notification | None = None) -> Page:
    return Page(began.alert, began.severity, round(began.received - start, 2),
                None if resolved is None else round(resolved.received - start, 2))


def unpaged(harm: Harm, paged: Sequence[Page], bound_s: float) -> float:
    """Harmed seconds no page was firing in, past the first ``bound_s`` of each episode (what a
    rule needs to page)."""
    total = 0.0
    for a, b in harm.episodes:
        a = a + bound_s
        if b <= a:
            continue
        covered = _union([(max(a, p.fired_after_s), b if p.resolved_after_s is None else min(b, p.resolved_after_s))
                          for p in paged])
        total += (b - a) - covered
    return round(total, 2)


def _union(spans: Sequence[tuple[float, float]]) -> float:
    length, reach = 0.0, float("-inf")
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if b > reach:
            length += b - max(a, reach)
            reach = b
    return length


def classify(fault: str, found: Sequence[Harm], paged: Sequence[Page] | None, bound_s: float) -> BlindSpot:
    """A blind spot: harm that went on past the ``bound_s`` its episode allows a rule to page,
    for ``UNPAGED_S`` or longer while no page was firing (none yet, or all resolved while it
    went on)."""
    harms_, pages_ = tuple(found), None if paged is None else tuple(paged)
    said = "; ".join(h.describe() for h in found)
    if pages_ is None:
        return BlindSpot(fault, harms_, None, bound_s, UNMONITORED if found else QUIET,
                         f"no monitoring on this stack (--monitoring): {said}" if found else "no harm")
    left = {h.kind: unpaged(h, pages_, bound_s) for h in found}
    listed = ", ".join(p.describe() for p in pages_) or "none"
    blind = [h for h in found if left[h.kind] >= UNPAGED_S]
    if blind:
        return BlindSpot(fault, harms_, pages_, bound_s, BLIND,
                         "; ".join(f"{h.describe()}: {left[h.kind]:g} s of it with no page firing" for h in blind)
                         + f" (a rule may take {bound_s:g} s; pages: {listed})", left)
    if found:
        long = [h for h in found if h.lasted_s >= bound_s]
        status = OK if pages_ or long else BRIEF
        return BlindSpot(fault, harms_, pages_, bound_s, status, f"{said}; pages: {listed}" if pages_ else
                         f"{said}; shorter than the {bound_s:g} s any rule needs to page", left)
    if [p for p in pages_ if p.fired_after_s >= 0]:
        return BlindSpot(fault, harms_, pages_, bound_s, NOISE,
                         f"paged with no harm to users or inverters: {listed}")
    return BlindSpot(fault, harms_, pages_, bound_s, QUIET, "no harm, no page")


def coverage(rules_text: str, rows: Iterable[dict[str, Any]], root: Path,
             incidents: Iterable[tuple[str, bool]] = ()) -> dict[str, Any]:
    """The run's runbook coverage: the alert rules (a rules template's text) that link a runbook
    (``runbook_url``, a file under ``root``), those that paged in this run, the faults of the run
    whose harm no page covered (a blind spot; brief harm needs none), and of the ``incidents``
    replayed (alert, every link within its target), those their runbook cleared in time."""
    rules = {r.alert: r for r in alert_rules(rules_text)}
    linked = {name: r.runbook_path for name, r in rules.items()}
    rows, incidents = list(rows), list(incidents)
    paged = sorted({p["alert"] for r in rows for p in r.get("pages") or []} & set(rules))
    return {
        "rules": len(rules),
        "with_runbook": sorted(n for n, url in linked.items() if url and (root / url).is_file()),
        "runbook_missing": sorted(f"{n}: {url}" for n, url in linked.items() if url and not (root / url).is_file()),
        "without_runbook": sorted(n for n, url in linked.items() if not url),
        "paged_in_run": paged,
        "never_paged_in_run": sorted(set(rules) - set(paged)),
        "faults": len(rows),
        "faults_no_page_covered": sorted({r["fault"] for r in rows if r.get("status") == BLIND}),
        "replayed": sorted({alert for alert, _ in incidents}),
        "cleared_by_runbook_in_time": sorted({alert for alert, in_time in incidents if in_time}),
    }

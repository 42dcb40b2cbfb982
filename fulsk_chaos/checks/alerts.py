"""Alerts as expectations: each alert a fault must fire fires within what its rule allows (its
``for:``, the scrape and evaluation intervals, Alertmanager's wait) and resolves within what it
allows after the stack recovered; none fires before the fault (a rule that fires on a healthy
stack is noise); the alerts that must stay silent send nothing. A rule that cannot fire and a
notification that never arrives fail alike: the engineer's phone stayed quiet."""
from __future__ import annotations

import re
import time
from datetime import datetime
from dataclasses import dataclass
from typing import Any, Sequence

import requests

from ..config import AlertSettings, MonitoringSettings
from ..errors import FulskChaosError
from ..figures import AlertFigures
from ..verdict import Evidence, Expectation, none_of, skipped
from ..stack.alerts import AlertReceiver, Notification
from ..wait import epoch_of

SEND_MARGIN_S = 1.0  # Prometheus to Alertmanager to the webhook, over loopback


class MonitoringError(FulskChaosError):
    pass


def fire_within_s(m: MonitoringSettings) -> float:
    """The latest an alert may be notified after its condition starts: seen at the next scrape,
    pending at the next evaluation, firing after ``for:`` at the one after, then Alertmanager's wait."""
    return m.for_s + 2 * m.scrape_interval_s + 2 * m.evaluation_interval_s + m.group_wait_s + SEND_MARGIN_S


def resolve_within_s(m: MonitoringSettings) -> float:
    """The latest a resolved notification may arrive after the condition ends: a rate() window
    still holds the fault's errors for ``window``; then a scrape, an evaluation, a group interval."""
    return m.window_s + 2 * m.scrape_interval_s + 2 * m.evaluation_interval_s + m.group_interval_s + SEND_MARGIN_S


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        response = requests.get(self.url + "/api/v1/query", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def fired(self, alert: str, since: float, until: float) -> bool:
        """Whether ``alert``'s rule was firing at some time from ``since`` to ``until`` (time.monotonic())."""
        span = max(1, int(until - since) + 1)
        try:
            return bool(self.query(f'max_over_time(ALERTS{{alertname="{alert}", alertstate="firing"}}[{span}s])',
                                   epoch_of(until)))
        except (requests.RequestException, KeyError, ValueError):
            return False

    def active(self, alert: str) -> bool:
        """Whether ``alert``'s rule is pending or firing now."""
        return bool(self.query(f'ALERTS{{alertname="{alert}"}}'))

    def rules(self) -> dict[str, str]:
        """Each alerting rule Prometheus loaded, with its expression."""
        response = requests.get(self.url + "/api/v1/rules", timeout=5)
        response.raise_for_status()
        return {r["name"]: r.get("query", "") for g in response.json()["data"]["groups"] for r in g["rules"]
                if r.get("type") == "alerting"}

    def rule_names(self) -> set[str]:
        return set(self.rules())

    def series_names(self, prefix: str = "fulsk_") -> set[str]:
        """The metric names of ``prefix`` some target exports (what a rule reading others never sees)."""
        return {r["metric"]["__name__"] for r in self.query(f'group by (__name__) ({{__name__=~"{prefix}.+"}})')}


def unexported(rules: dict[str, str], alerts: Sequence[str], exported: set[str],
               prefix: str = "fulsk_") -> dict[str, list[str]]:
    """The ``alerts`` whose rule reads a ``prefix`` metric no target exports, with those metrics:
    a backend without it cannot raise the alert (its expectation is skipped, not failed)."""
    found = {}
    for alert in alerts:
        missing = sorted(set(re.findall(rf"\b{prefix}[a-zA-Z0-9_]+", rules.get(alert, ""))) - exported)
        if missing:
            found[alert] = missing
    return found


@dataclass(frozen=True)
class AlertWindow:
    """What a scenario declared of its fault's alerts, and its times (time.monotonic())."""
    fire: tuple[str, ...]
    silent: tuple[str, ...]
    observed_from: float   # the scenario's first steady window: nothing declared may fire from here
    began: float           # the fault
    ended: float           # its rollback
    recovered: float       # the stack steady again
    # alerts whose rule must fire while Alertmanager holds them back: target -> the source alert
    # that inhibits it (fixtures/monitoring/alertmanager.yml.template, inhibit_rules)
    inhibited: tuple[tuple[str, str], ...] = ()


def first(notifications: Sequence[Notification], alert: str, status: str, after: float) -> Notification | None:
    return next((n for n in notifications if n.alert == alert and n.status == status and n.received >= after), None)


def wait_resolved(receiver: AlertReceiver, window: AlertWindow, m: MonitoringSettings) -> None:
    """Until every alert that fired has resolved, or the longest a resolution may take has passed."""
    deadline = window.recovered + resolve_within_s(m)
    while time.monotonic() < deadline:
        seen = receiver.notifications(window.began)
        fired = {n.alert for n in seen if n.status == "firing" and n.alert in window.fire}
        if all(first(seen, a, "resolved", window.began) for a in fired) and len(fired) == len(window.fire):
            return
        time.sleep(0.2)


def judge(notifications: Sequence[Notification], window: AlertWindow, m: MonitoringSettings,
          rules: set[str], fired_in_prometheus: dict[str, bool] | None = None,
          unexported_: dict[str, list[str]] | None = None) -> tuple[list[Expectation], AlertFigures]:
    """``fired_in_prometheus``: for each inhibited alert, whether its rule fired (ALERTS) during
    the fault: an alert never notified proves its inhibition only if it fired. ``unexported_``:
    alerts that must fire but read a metric no target exports (``unexported``): skipped."""
    unknown = sorted(set(window.fire + window.silent + tuple(t for t, _ in window.inhibited)
                         + tuple(src for _, src in window.inhibited)) - rules)
    if unknown:
        raise MonitoringError(f"no alerting rule named {', '.join(unknown)} in fixtures/monitoring/alerts.yml.template "
                              f"(its rules: {', '.join(sorted(rules))})")
    fire_s, resolve_s = fire_within_s(m), resolve_within_s(m)
    found: list[Expectation] = []
    times: dict[str, Any] = {}
    for alert in window.fire:
        if missing := (unexported_ or {}).get(alert):
            found.append(skipped(f"alert {alert}: fired, after the fault began",
                                 f"its rule reads {', '.join(missing)}, which the backend does not export (see the "
                                 f"backend contract's metrics in docs/stack.md)"))
            times[alert] = {"skipped": f"unexported: {', '.join(missing)}"}
            continue
        early = first(notifications, alert, "firing", window.observed_from)
        before = early if early is not None and early.received < window.began else None
        found.append(none_of(f"alert {alert}: notifications before the fault (noise on a healthy stack)",
                             int(before is not None), detail=f"fired {window.began - before.received:.1f} s before it"
                             if before else ""))
        fired = first(notifications, alert, "firing", window.began)
        resolved = first(notifications, alert, "resolved", fired.received) if fired else None
        fired_s = fired.received - window.began if fired else None
        resolved_s = max(0.0, resolved.received - window.recovered) if resolved else None  # before it: in time
        found.append(Expectation(f"alert {alert}: fired, after the fault began", _or_never(fired_s), "<=",
                                 round(fire_s, 2), "s", detail="" if fired else "never notified: the rule cannot fire, "
                                 "or its metric hides the failure"))
        found.append(Expectation(f"alert {alert}: resolved, after the stack recovered", _or_never(resolved_s), "<=",
                                 round(resolve_s, 2), "s", detail="" if resolved else
                                 ("still firing" if fired else "never fired")))
        times[alert] = {"fired_after_s": _round(fired_s), "resolved_after_recovery_s": _round(resolved_s),
                        "fired_at": fired.received_at if fired else None,
                        "resolved_at": resolved.received_at if resolved else None}
        if fired is not None:
            found.append(escalated(notifications, alert, fired, fire_s, m))
            times[alert]["channels"] = sorted({n.channel for n in _firings(notifications, alert, fired, fire_s)})
    found += silence(notifications, window.silent, window.observed_from, window.began, "the fault")
    for target, source in window.inhibited:
        found += inhibition(notifications, target, source, window.began, (fired_in_prometheus or {}).get(target))
    return found, AlertFigures(
        alerts=times, alert_bounds_s={"fire": round(fire_s, 2), "resolve": round(resolve_s, 2)},
        alert_notifications=[n.to_json() for n in notifications if n.received >= window.observed_from])


def _firings(notifications: Sequence[Notification], alert: str, first_: Notification,
             fire_s: float) -> list[Notification]:
    """The firing notifications of ``alert`` that went out with ``first_``, one per channel."""
    return [n for n in notifications if n.alert == alert and n.status == "firing"
            and first_.received <= n.received <= first_.received + fire_s]


def escalated(notifications: Sequence[Notification], alert: str, first_: Notification, fire_s: float,
              m: MonitoringSettings) -> Expectation:
    """The page reached exactly the channels its severity escalates to (the ops guide's "Alert
    Escalation"): a critical alert on Slack alone would let everyone sleep."""
    severity = first_.severity
    wanted = set(m.escalation.get(severity, []))
    reached = {n.channel for n in _firings(notifications, alert, first_, fire_s)}
    missing, extra = sorted(wanted - reached), sorted(reached - wanted)
    detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                     f"also {', '.join(c or '(no channel)' for c in extra)}" if extra else "",
                                     "" if severity in m.escalation else f"severity {severity!r} escalates nowhere"]))
    return none_of(f"alert {alert}: channels not those of its severity ({severity or 'none'}: "
                   f"{', '.join(sorted(wanted)) or 'none'})", len(missing) + len(extra) + (severity not in m.escalation),
                   evidence={"reached": sorted(reached)}, detail=detail)


def inhibition(notifications: Sequence[Notification], target: str, source: str, began: float,
               fired: bool | None) -> list[Expectation]:
    """While ``source`` pages, ``target`` (its symptom) is held back: its rule fired (in Prometheus)
    and nothing of it was notified from a moment after the source's page until the source
    resolved. One notified before the source arrived is the race Alertmanager allows."""
    paged = first(notifications, source, "firing", began)
    if paged is None:
        return [Expectation(f"alert {target}: notified while {source} paged (must be inhibited)", None, "==", 0,
                            detail=f"{source} never paged: the inhibition was not exercised")]
    resolved = first(notifications, source, "resolved", paged.received)
    # until the source stopped firing (its endsAt): its resolved notification comes a group
    # interval later, and a symptom that outlived it is rightly sent meanwhile
    until = (resolved.received - max(0.0, resolved.received_at - ended) if (ended := epoch(resolved.ends_at))
             else resolved.received) if resolved else float("inf")
    leaked = [n for n in notifications if n.alert == target and n.status == "firing"
              and paged.received + SEND_MARGIN_S <= n.received <= until]
    return [
        Expectation(f"alert {target}: its rule fired (in Prometheus) during the fault", int(bool(fired)), "==", 1,
                    detail="" if fired else "its rule never fired: nothing was inhibited"),
        none_of(f"alert {target}: notified while {source} paged (must be inhibited)", len(leaked),
                detail=f"on {', '.join(sorted({n.channel for n in leaked}))}" if leaked else ""),
    ]


def epoch(rfc3339: str) -> float | None:
    """Epoch seconds of an RFC 3339 time as Alertmanager writes it (nanoseconds, ``Z``); None: not one."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", rfc3339 or "")
    if m is None or m.group(1).startswith("0001"):
        return None
    stamp = datetime.fromisoformat(m.group(1) + (m.group(3) if m.group(3) != "Z" else "+00:00"))
    return stamp.timestamp() + float(f"0.{m.group(2) or 0}")


def silence(notifications: Sequence[Notification], alerts: Sequence[str], since: float, mark: float,
            what: str) -> list[Expectation]:
    """Each of ``alerts`` sent no firing notification from ``since`` (times told from ``mark``)."""
    found = []
    for alert in alerts:
        noisy = [n for n in notifications if n.alert == alert and n.status == "firing" and n.received >= since]
        found.append(none_of(f"alert {alert}: notifications (must stay silent)", len(noisy),
                             detail=f"fired {noisy[0].received - mark:+.1f} s from {what}" if noisy else ""))
    return found


def evidence(prometheus: Prometheus, since: float, until: float, minimum: int,
             what: str = "before the fault") -> list[Evidence]:
    """Prometheus saw the stack from ``since`` to ``until`` (time.monotonic()): its scrapes of the
    backend that succeeded. Silence from a monitoring that saw nothing proves nothing."""
    span = max(1, int(until - since))
    try:
        result = prometheus.query(f'sum_over_time(up{{job="backend"}}[{span}s])', epoch_of(until))
        scrapes = int(float(result[0]["value"][1])) if result else 0
    except (requests.RequestException, KeyError, IndexError, ValueError):
        scrapes = 0
    return [Evidence(f"monitoring: successful scrapes of the backend {what}", scrapes, minimum)]


@dataclass(frozen=True)
class UsersWindow:
    """A stretch of load as its users measured it (epoch seconds): a stress step. Its figures are
    of the answers the stack gave: monitoring cannot be asked to see requests never sent to it."""
    name: str
    start: float
    end: float
    p95_ms: float | None
    error_rate: float | None


# The alerts a healthy stack under its load must not send: about users, the services and the
# database (the host's pressure alerts are sustained ones; a load test may rightly press the host).
QUIET_UNDER_LOAD = ("FulskHighErrorRate", "FulskSlowResponses", "FulskDatabaseErrors", "FulskBackendDown",
                    "FulskIngestDisconnected", "FulskFrontendDown", "FulskFrontendErrors", "PostgresDown", "RedisDown",
                    "PostgresConnectionsHigh")

# What users can measure past an alert threshold, and the alerts any of which must then page.
USERS_PAST = {"slow": ("FulskSlowResponses",), "errors": ("FulskHighErrorRate", "FulskFrontendErrors")}


def users_past(window: UsersWindow, thresholds: AlertSettings) -> list[str]:
    past = []
    if window.p95_ms is not None and window.p95_ms > thresholds.http_response_ms:
        past.append("slow")
    if window.error_rate is not None and window.error_rate > thresholds.error_rate:
        past.append("errors")
    return past


def follow_users(notifications: Sequence[Notification], windows: Sequence[UsersWindow], thresholds: AlertSettings,
                 m: MonitoringSettings, silent: Sequence[str]) -> tuple[list[Expectation], AlertFigures]:
    """Pages agree with what users measured: while every window stayed under the alert thresholds,
    ``silent`` sent nothing; the first window whose users waited past the HTTP threshold (p95) or
    saw more errors than it is paged within what the rule allows (its rate window filled, then
    ``for:``, scrapes, evaluations, Alertmanager's wait). Windows need not reach a threshold: then
    only silence is judged."""
    fire_s = fire_within_s(m)
    first_past = {kind: next((w for w in windows if kind in users_past(w, thresholds)), None) for kind in USERS_PAST}
    crossed = [w for w in first_past.values() if w is not None]
    quiet_until = min((w.start for w in crossed), default=windows[-1].end + fire_s if windows else 0.0)
    since = windows[0].start if windows else 0.0
    found: list[Expectation] = []
    for alert in silent:
        noisy = [n for n in notifications if n.alert == alert and n.status == "firing"
                 and since <= n.received_at < quiet_until]
        found.append(none_of(f"alert {alert}: notifications while users' figures were under the alert thresholds",
                             len(noisy), detail=f"fired {noisy[0].received_at - since:.1f} s into the load"
                             if noisy else ""))
    paged: dict[str, Any] = {}
    for kind, window in first_past.items():
        if window is None:
            continue
        alerts = USERS_PAST[kind]
        allowed = max(window.end - window.start, m.window_s) + fire_s  # the rule's window filled first
        fired = next((n for n in notifications if n.alert in alerts and n.status == "firing"
                      and n.received_at >= window.start), None)
        after = fired.received_at - window.start if fired else None
        found.append(Expectation(f"alert {' or '.join(alerts)}: fired, after users measured it {kind} ({window.name})",
                                 _or_never(after), "<=", round(allowed, 2), "s",
                                 detail="" if fired else "never notified: users were past the threshold and "
                                 "nobody was paged"))
        paged[kind] = {"window": window.name, "alert": fired.alert if fired else None, "fired_after_s": _round(after)}
    return found, AlertFigures(alerts_vs_users={"past_thresholds": paged or "no window reached an alert threshold",
                                                "quiet_until_s": round(quiet_until - since, 2) if windows else None},
                               alert_notifications=[n.to_json() for n in notifications])


def _or_never(value: float | None) -> float:
    return round(value, 2) if value is not None else float("inf")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

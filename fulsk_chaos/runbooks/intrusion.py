"""The Security Incident runbook's incident: an intruder probing the frontend from an address
of its own, and the check that the runbook blocked it (and only it)."""
from __future__ import annotations

import contextlib
import http.client
import shlex
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urlsplit

from ..verdict import Expectation, at_most, none_of
from .model import RunbookError, Trigger
from .drill import RunbookDrill, check, condition
from .runner import RunbookRun


# --- an intruder --------------------------------------------------------------------------------
PROBED_PATHS = ("/.env", "/wp-login.php", "/admin/config.php", "/../../etc/passwd", "/phpmyadmin/index.php",
                "/.git/config", "/api/../../../../etc/shadow", "/cgi-bin/test.cgi")


@dataclass
class Intruder:
    """A client probing the frontend for paths from a loopback address of its own (never
    127.0.0.1), in a thread; bounded in requests and time, it stops by itself."""
    host: str
    port: int
    address: str = "127.0.0.2"
    interval_s: float = 0.05
    max_requests: int = 6000
    max_s: float = 300.0
    timeout_s: float = 2.0
    # (began, ended, HTTP status or None), monotonic
    attempts: list[tuple[float, float, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.address.startswith("127.") or self.address == "127.0.0.1":
            raise RunbookError(f"an intruder must use a loopback address of its own, not {self.address}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intruder", daemon=True)

    def start(self) -> "Intruder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def _run(self) -> None:
        """One kept-alive connection, as scanners keep them; a new one after any error (nginx
        closes the connection after each path it refuses with 400, so that one comes and goes).
        Beside it, an idle connection held open the whole time: the intrusion always shows among
        the active connections, whenever the runbook looks (once, a look in such a gap found none)."""
        started = time.monotonic()
        try:
            idle: socket.socket | None = socket.create_connection((self.host, self.port), self.timeout_s,
                                                                 source_address=(self.address, 0))
        except OSError:
            idle = None  # the probes below still show it, most of the time
        conn: http.client.HTTPConnection | None = None
        for i in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() - started > self.max_s:
                break
            at = time.monotonic()
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s,
                                                  source_address=(self.address, 0))
            try:
                conn.request("GET", PROBED_PATHS[i % len(PROBED_PATHS)], headers={"User-Agent": "sqlmap/1.7"})
                response = conn.getresponse()
                response.read()
                status: int | None = response.status
            except (OSError, http.client.HTTPException):
                status = None  # refused, dropped (timeout), cut: not served
                conn.close()
                conn = None
            self.attempts.append((at, time.monotonic(), status))
            self._stop.wait(self.interval_s)
        if conn is not None:
            conn.close()
        if idle is not None:
            idle.close()

    def served(self, start: float, end: float) -> tuple[int, int]:
        """(answered within [start, end], attempted) among the requests begun in [start, end].

        A request dropped just before a block is lifted is retransmitted by TCP and answered
        after the lift: the block did its job, so only answers that arrived by ``end`` count."""
        window = [(ended, s) for began, ended, s in list(self.attempts) if start <= began <= end]
        return sum(s is not None and ended <= end for ended, s in window), len(window)


def firewall_rules() -> list[str]:
    done = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines() if done.returncode == 0 else []


@condition("intrusion")
@contextlib.contextmanager
def intrusion(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """A client probing for paths from ``params.address`` (a loopback address, never 127.0.0.1).
    Rollback: the intruder stops, and any firewall rule naming its address is removed."""
    if shutil.which("iptables") is None:
        raise RunbookError(f"{trigger.case}: iptables is not installed: run `bash scripts/bootstrap.sh`")
    frontend = urlsplit(drill.stack.endpoints.frontend_url)
    intruder = Intruder(frontend.hostname or "127.0.0.1", frontend.port or 80,
                        address=str(trigger.params.get("address", "127.0.0.2")))
    drill.intruder = intruder
    before = firewall_rules()
    intruder.start()
    try:
        time.sleep(2.0)  # under way, and in the access log (flushed every second)
        answered, attempted = intruder.served(0, time.monotonic())
        drill.valid_if("trigger: the intruder's probes were answered before any block", answered > 0,
                       f"{answered} of {attempted}")
        yield {}
    finally:
        intruder.stop()
        for rule in firewall_rules():
            if rule not in before and intruder.address in rule:
                subprocess.run(["iptables", *shlex.split(rule.replace("-A ", "-D ", 1))], capture_output=True, timeout=30)


@check("intruder-blocked")
def intruder_blocked(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """While the block stood, the intruder was served nothing and every other client was served;
    the block is lifted at the end and 127.0.0.1 was never firewalled."""
    intruder = drill.intruder
    block = next((s for s in run.steps if s.ended and any("iptables -A" in a.ran for a in s.attempts)), None)
    lift = next((s for s in run.steps if s.started and any("iptables -D" in a.ran for a in s.attempts)), None)
    if intruder is None or block is None or block.outcome != "passed":
        return [Expectation("the intruder was blocked", 0, "==", 1, detail="no block step passed")]
    blocked_at = next(a.executed.ended for a in reversed(block.attempts) if a.executed)
    start, end = blocked_at, (lift.started if lift else run.ended) or time.monotonic()
    answered, attempted = intruder.served(start, end)
    users = drill.experiment.probe.snapshot(drill.settings.hang_s).window(start, end)
    rules = firewall_rules()
    return [
        none_of("intruder requests served while blocked", answered if attempted else None,
                evidence={"attempted": attempted}, detail=f"{answered} of {attempted} answered"),
        at_most("other clients' error rate while the intruder was blocked", users.error_rate() if len(users) else None,
                drill.settings.alerts.error_rate, evidence={"samples": len(users)}),
        none_of("firewall rules left naming the intruder", sum(intruder.address in r for r in rules),
                detail="; ".join(r for r in rules if intruder.address in r)),
        none_of("firewall rules naming 127.0.0.1", sum("127.0.0.1" in r for r in rules)),
    ]


"""Runbook drills: the runbook's trigger created on the stack while the fleet writes and users
read, its steps run as documented, and the recovery judged with numbers.

    with experiment:
        experiment.steady_state("before")
        run = RunbookDrill(experiment).run(runbook, case)   # trigger, steps, time to recover
        experiment.steady_state("after")
    experiment.verdict()                                     # ledger: nothing acknowledged lost

The time to recover runs from the trigger to the later of: the runbook's last step, and users
served fresh, correct data again for a whole streak. Steps that fail, and drift the runbook file
does not correct, fail the verdict; drift it corrects is reported with what the guide should say.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ContextManager, Iterator
from urllib.parse import urlsplit

import psycopg

from ..experiment import Experiment
from ..recovery import archive
from ..recovery.conf import BackupError, load, written_for
from ..recovery.status import backup_status
from ..checks.restore import Rpo
from ..recovery_drill import SmallFilesystem, run_script
from ..verdict import Expectation, at_most, none_of
from .model import Runbook, RunbookError, Trigger
from .runner import Runner, RunbookRun

Condition = Callable[["RunbookDrill", Trigger], ContextManager[dict[str, str]]]
Check = Callable[["RunbookDrill", RunbookRun, Trigger], list[Expectation]]
CONDITIONS: dict[str, Condition] = {}
CHECKS: dict[str, Check] = {}
TRIGGER_BITES_S = 10.0  # a trigger fault reaches its condition within this, or the runbook starts anyway


def condition(name: str) -> Callable[[Condition], Condition]:
    def register(fn: Condition) -> Condition:
        CONDITIONS[name] = fn
        return fn
    return register


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn
    return register


def hypothesis(runbook: Runbook, trigger: Trigger) -> str:
    return (f"The ops guide's '{runbook.title}' runbook, run step by step as documented when "
            f"{runbook.when[0].lower() + runbook.when[1:]} ({trigger.name}), brings the stack back within "
            f"{runbook.target_s:g} s: users are served fresh, correct data again, nothing acknowledged is lost or "
            f"stored twice; every documented command exists and has its effect, or the runbook file carries "
            f"its correction.")


class RunbookDrill:
    def __init__(self, experiment: Experiment, log: Callable[[str], None] = lambda line: None,
                 load_dir: os.PathLike | None = None) -> None:
        self.experiment = experiment
        self.load_dir = load_dir  # where a load the trigger runs writes its files (the high-load condition)
        self.load: Any = None  # that load (a LoadTest), and its window before the first step (time.time())
        self.load_before: tuple[float, float] | None = None
        self.stack = experiment.stack
        self.settings = experiment.settings
        self.log = log
        self.trigger_evidence: list[Expectation] = []  # that the trigger took effect: a validity condition
        self.env: dict[str, str] = {}  # what the trigger gave the runbook's commands (e.g. BACKUP_DIR)
        self.intruder: Intruder | None = None  # the intrusion condition's
        self.runbook: Runbook | None = None

    def run(self, runbook: Runbook, case: str) -> RunbookRun:
        trigger = runbook.trigger(case)
        self.runbook = runbook
        exp = self.experiment
        exp.begin_method(disrupts=True)  # an incident: the recovery is measured (_users_back)
        with self._trigger(trigger) as env:
            self.env = env
            onset = time.monotonic()
            run = Runner.for_stack(self.stack, env, self.log).run(runbook, t0=onset)
            users_at = self._users_back(onset, run)
            checked = [e for name in runbook.checks for e in CHECKS[name](self, run, trigger)]
        recovered_s = None if users_at is None else max(users_at, run.ended or onset) - onset
        failed, unknown = run.failed_steps, [s for s in run.drift if not s.known_drift]
        expectations = [
            *self.trigger_evidence,
            none_of("runbook steps that failed", len(failed), evidence={"steps": len(run.steps)},
                    detail="; ".join(f"{s.step.name}: {s.attempts[-1].failure}" for s in failed)),
            none_of("drift from the guide that the runbook file does not correct", len(unknown),
                    detail="; ".join(f"{s.step.name}: {s.drift}" for s in unknown)),
            at_most(f"time to recover ({runbook.title})", recovered_s if recovered_s is not None else float("inf"),
                    runbook.target_s, "s", detail="users were never served fresh data again" if users_at is None
                    else f"runbook {'completed' if run.completed else 'stopped at ' + str(run.aborted_at)} "
                         f"after {run.ended - onset:.1f} s; users served again after {users_at - onset:.1f} s"),
            *checked,
        ]
        exp.record.expect(expectations)
        exp.record.timeline = [
            {"event": "trigger", "at_s": 0.0, "what": trigger.name, "case": trigger.case},
            *({"event": "step", **s} for s in run.timeline(onset)),
            {"event": "recovered", "at_s": round(recovered_s, 3) if recovered_s is not None else None}]
        exp.record.measure(
            runbook=runbook.name, runbook_title=runbook.title, case=trigger.case, provider=run.provider,
            recovery_s=recovered_s, recovery_target_s=runbook.target_s,
            recovery_margin_s=None if recovered_s is None else runbook.target_s - recovered_s,
            runbook_s=(run.ended or onset) - onset, users_back_s=None if users_at is None else users_at - onset,
            drift=[{"step": s.step.name, "documented": s.attempts[0].documented, "why": s.drift,
                    "corrected": s.known_drift, "guide_should_say": s.step.corrected.note if s.step.corrected else None}
                   for s in run.drift], findings=run.findings)
        self.log(run.describe())
        return run

    @contextlib.contextmanager
    def _trigger(self, trigger: Trigger) -> Iterator[dict[str, str]]:
        if trigger.fault:
            with self.experiment.inject(trigger.fault, trigger.target or "", **trigger.params) as fault:
                # The runbook answers an incident: it starts once the fault has bitten (a hang it
                # "fixes" before anything hung tests nothing; the verdict says so if it never bites).
                fault.until_reached(TRIGGER_BITES_S)
                yield {}
            return
        with CONDITIONS[trigger.condition or ""](self, trigger) as env:
            yield env

    def _users_back(self, onset: float, run: RunbookRun) -> float | None:
        """When users were served fresh, correct data again (a whole streak) after the trigger."""
        s = self.settings
        return self.experiment.served_again(
            onset, max(run.ended or onset, onset + run.runbook.target_s) + s.steady_state.streak_s + s.hang_s)

    def valid_if(self, name: str, ok: bool, measured: Any, detail: str = "") -> None:
        """A condition of the drill itself (the trigger took effect): if it does not hold the verdict
        is invalid, not a finding about the runbook."""
        self.trigger_evidence.append(Expectation(name, 1 if ok else 0, "==", 1, detail=detail or str(measured),
                                                 kind="validity"))


# --- conditions --------------------------------------------------------------------------------
STALE_DAYS = 60  # older than the 30 days of retention: what a broken prune leaves to fill the disk


def fill_with_stale_backups(directory: os.PathLike, leave_free: int) -> list[str]:
    """Old backups, as a retention that stopped working leaves them, until ``leave_free`` bytes are left."""
    written: list[str] = []
    now = datetime.now(timezone.utc)
    for day in range(STALE_DAYS, 10 * STALE_DAYS):
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
        if free <= leave_free:
            break
        when = now - timedelta(days=day)
        path = os.path.join(directory, archive.backup_name("daily", when))
        size = min(1 << 20, free - leave_free)
        with open(path, "wb") as out:
            out.write(os.urandom(size))
        os.utime(path, (when.timestamp(), when.timestamp()))
        written.append(path)
    return written


@condition("backup-fails")
@contextlib.contextmanager
def backup_fails(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """The nightly backup.sh fails, for ``params.cause``: disk-full (BACKUP_DIR on a small
    filesystem full of backups a broken retention left), or database-unreachable (PostgreSQL
    paused: connections hang)."""
    stack, cause = drill.stack, trigger.params.get("cause")
    if cause == "disk-full":
        small = SmallFilesystem(str(trigger.params.get("size", "16m")), stack.dir)
        try:
            small.mount()
        except BackupError as exc:
            raise RunbookError(f"{trigger.case}: {exc}") from None
        with small as directory:
            fill_with_stale_backups(directory, leave_free=16 * 1024)
            env = {"BACKUP_DIR": str(directory)}
            nightly = run_script("backup.sh", [], written_for(stack), env)
            drill.valid_if("trigger: the nightly backup.sh failed on the full disk", nightly.returncode != 0,
                           nightly.returncode, nightly.stderr.strip()[-200:])
            yield env
    elif cause == "database-unreachable":
        with drill.experiment.inject("pause", "postgres"):
            nightly = run_script("backup.sh", [], written_for(stack))
            drill.valid_if("trigger: the nightly backup.sh failed on the unreachable database",
                           nightly.returncode != 0, nightly.returncode, nightly.stderr.strip()[-200:])
            yield {}
    else:
        raise RunbookError(f"{trigger.case}: backup-fails needs params.cause: disk-full or database-unreachable")


# --- checks ------------------------------------------------------------------------------------
@check("backup-verifies")
def backup_verifies(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """Not the runbook's word for it: the newest backup, made after the trigger, passes verification,
    and the backup check (last run, age, integrity) is clear."""
    conf = load(written_for(drill.stack), drill.env)
    latest = conf.backup_dir / archive.LATEST
    newest = latest.resolve() if latest.exists() else None
    onset = datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - run.started)
    fresh = newest is not None and (archive.stamp_of(newest.name) or onset) >= onset.replace(microsecond=0)
    problems = archive.verify(newest).problems if newest is not None else ["no backup"]
    status = backup_status(conf)
    return [none_of("problems with the backup made after the trigger", len(problems) if fresh else 1,
                    detail="; ".join(problems) if fresh else f"the newest backup ({newest and newest.name}) "
                                                             f"predates the trigger"),
            none_of("backup check problems after the runbook", len(status.problems), detail="; ".join(status.problems))]


@check("names-slow-dependency")
def names_slow_dependency(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """The diagnostics named the dependency the slowness was put on (the edge's upstream)."""
    slow = (trigger.target or "").split("-")[-1]
    named = run.findings.get("slow_dependency")
    return [Expectation("the diagnostics named the slow dependency", 1 if named == slow else 0, "==", 1,
                        detail=f"named {named!r}, slowness was on {slow!r}")]


@check("api-baseline")
def api_baseline(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """After the fix, the API meets the ops guide's response-time baseline again (p95, one window)."""
    exp = drill.experiment
    obs = exp.observe("after the fix")
    api = obs.samples.target("api")
    p95 = api.quantile_ms(0.95) if len(api) else None
    return [at_most("api p95 after the fix (ops guide baseline)", p95, drill.settings.baselines.api_response_ms, "ms",
                    evidence={"samples": len(api)})]


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
        """One kept-alive connection, as scanners keep them (it shows among the active
        connections); a new one after any error."""
        started = time.monotonic()
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


# --- a failing primary --------------------------------------------------------------------------
def replication_state(stack: Any) -> dict[str, Any]:
    """What the primary says of its standby: WAL sent but not replayed (bytes) and the replay lag."""
    with psycopg.connect(stack.service("postgres").address, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
            "EXTRACT(EPOCH FROM replay_lag)::float FROM pg_stat_replication").fetchone()
    if row is None:
        return {"standby_connected": False}
    return {"standby_connected": True, "state": row[1], "replay_lag_bytes": row[2], "replay_lag_s": row[3]}


@condition("primary-fails")
@contextlib.contextmanager
def primary_fails(drill: RunbookDrill, trigger: Trigger) -> Iterator[dict[str, str]]:
    """The primary's server dies (SIGKILL) and stays down: only a failover brings the stack back.
    The replication lag at that moment is recorded; acknowledged readings lost are judged against
    the runbook's RPO. No rollback: the scenario has a stack of its own (``stack: {standby: true}``)."""
    stack = drill.stack
    if "postgres-standby" not in stack.services:
        raise RunbookError(f"{trigger.case}: primary-fails needs a standby: give the runbook 'stack: {{standby: true}}'")
    lag = replication_state(stack)
    drill.valid_if("trigger: the standby was streaming when the primary failed", lag.get("state") == "streaming",
                   lag.get("state"))
    failed_at = time.monotonic()
    stack.service("postgres").kill(signal.SIGKILL)
    gone_at = time.monotonic()
    rpo_s = drill.runbook.rpo_s if drill.runbook and drill.runbook.rpo_s is not None else 0.0
    drill.experiment.allow_loss(Rpo(failed_at, gone_at, failed_at - rpo_s, rpo_s, f"{rpo_s:g} s before the failure",
                                    drill.settings.backup.commit_margin_s))
    drill.experiment.record.measure(replication_at_failure=lag)
    yield {}


@check("failover-integrity")
def failover_integrity(drill: RunbookDrill, run: RunbookRun, trigger: Trigger) -> list[Expectation]:
    """One primary, the promoted standby, and the backend writing to it. From here the ledger reads
    the truth there."""
    primaries, down = [], []
    for name in ("postgres", "postgres-standby"):
        try:
            with psycopg.connect(drill.stack.service(name).address, connect_timeout=2) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    primaries.append(name)
        except psycopg.Error:
            down.append(name)
    if primaries == ["postgres-standby"]:
        drill.stack.database = "postgres-standby"
    return [Expectation("the promoted standby is the one primary", 1 if primaries == ["postgres-standby"] else 0,
                        "==", 1, detail=f"primaries: {primaries or 'none'}; not answering: {down or 'none'}")]

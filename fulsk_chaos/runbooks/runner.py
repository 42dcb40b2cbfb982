"""Runs a runbook's steps against a stack, as an operator at a terminal would, and records each.

Commands run in a pseudo-terminal (an operator's shell: ``docker-compose exec`` and ``top`` behave
as documented), with the guide's addresses replaced by the stack's:

    docker-compose -f docker-compose.prod.yml   the stack as a Compose project (Docker) or the
                                                step's ``local:`` mapping (local stack)
    http://localhost                            the stack's frontend
    /backups                                    the stack's BACKUP_DIR
    ./scripts/                                  fixtures/scripts/ (backup.sh, disaster-recovery.sh)
    /var/log/nginx/access.log                   the frontend's access log
    .env.production                             the backend's configuration file (read at every start)

A command that would firewall 127.0.0.1 (where the whole stack listens), or a DROP/REJECT rule
for anything but one other loopback address, is refused before it runs.

and ``{{name}}`` placeholders (``PLACEHOLDERS``, and ``found.NAME``: what an earlier step found).
Drift is a documented command that does not exist, fails, or does not have its verified effect.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..contract import Contract
from ..lifecycle import Timed
from ..services import FIXTURES
from .model import PLACEHOLDER, Command, Runbook, RunbookError, Step

COMPOSE_AS_DOCUMENTED = re.compile(r"docker-compose\s+-f\s+docker-compose\.prod\.yml")
LOCALHOST = re.compile(r"https?://localhost(:80)?(?=[/\s\"'{]|$)")  # {: a placeholder path follows
BACKUPS = re.compile(r"(?<![\w./-])/backups(?=[/\s\"']|$)")
SCRIPTS = re.compile(r"(?<![\w/])\./scripts/")
NGINX_LOG = re.compile(r"(?<![\w/])/var/log/nginx/access\.log")
ENV_PRODUCTION = re.compile(r"(?<![\w/.-])\.env\.production\b")
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][A-Z0-9]|[=>])")
# Where the stack is, as placeholders a runbook file may use.
PLACEHOLDERS = frozenset({
    "compose", "ctl", "frontend_url", "backend_url", "database_dsn", "postgres_port", "redis_port", "mqtt_port",
    "toxiproxy_url", "backup_dir", "scripts", "logs", "python", "stack_dir", "frontend_port", "nginx_access_log",
    "env_file", "standby_dsn", "standby_port",
    # what the backend's contract says: its health, its inverter list, its newest stored reading
    "health_path", "healthy", "dependencies_jq", "listing_path", "listing_items", "newest_reading_sql"})
FIREWALL = re.compile(r"\b(iptables|ip6tables|nft)\b")
DROPS = re.compile(r"-[AI]\s+\S+.*-j\s+(DROP|REJECT)")
SOURCE = re.compile(r"(?:-s|--source)\s+(\S+)")


def contract_places(contract: Contract) -> dict[str, str]:
    """The runbooks' words for what differs between backends, from the backend's contract."""
    health, listing = contract.health, contract.reads.listing
    status_key = health.status.rsplit(".", 1)[-1]
    # each dependency as {name: the service's name, latency_ms: its latency}, whatever the backend calls them
    names = json.dumps({theirs: ours for ours, theirs in health.names.items()})
    dependencies = (f"{jq_path(health.dependencies)} | to_entries | map({{name: ({names}[.key] // .key), "
                    f"latency_ms: (.value{jq_path(health.latency)} // null)}})") if health.latency else ""
    return {"health_path": health.path,
            "healthy": f'"{status_key}": ?"({"|".join(re.escape(h) for h in health.healthy)})"',
            "dependencies_jq": dependencies,
            "listing_path": listing.path, "listing_items": f'"{listing.items.rsplit(".", 1)[-1]}"',
            "newest_reading_sql": contract.ledger.newest}


def jq_path(path: str) -> str:
    """A contract's dotted JSON path as jq's."""
    return "".join(f".{part}" for part in path.split(".")) if path else "."


def unsafe(command: str) -> str | None:
    """Why a command must not run here: firewalling 127.0.0.1 takes down the whole stack (and the
    machine's own services); only one other loopback address may be blocked."""
    if not FIREWALL.search(command):
        return None
    if re.search(r"(?<![\d.])127\.0\.0\.1(?![\d])|127\.0\.0\.0/|0\.0\.0\.0/0|\blocalhost\b", command):
        return "it names 127.0.0.1 (or a range holding it), where the stack listens"
    for rule in re.split(r"[;&|]+", command):
        if DROPS.search(rule):
            source = SOURCE.search(rule)
            if source is None:
                return "a DROP/REJECT rule without -s ADDRESS would block every client"
            address = source.group(1).removesuffix("/32")
            if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}", address):
                return f"only a single loopback address may be blocked here, not {address}"
    return None
EXCERPT = 2000  # characters of a command's output kept in the timeline
NOT_FOUND = (126, 127)  # the shell's (and docker exec's) "no such command" / "cannot execute"


def check_local_mappings(runbook: Runbook) -> None:
    """A guide command that needs Docker Compose must say what it is on the local stack."""
    for i, step in enumerate(runbook.steps):
        for where, command in (("command", step.command), ("verify", step.verify),
                               ("corrected.command", step.corrected.command if step.corrected else None)):
            if command and COMPOSE_AS_DOCUMENTED.search(command.guide) and command.local is None:
                key = {"command": "local", "verify": "verify_local", "corrected.command": "corrected.local"}[where]
                raise RunbookError(f"{runbook.path or runbook.name}: steps[{i}].{where} uses docker-compose: add "
                                   f"'{key}:', what it is on the local stack")


@dataclass(frozen=True)
class Executed(Timed):
    command: str
    exit_code: int | None     # None: killed at the timeout
    output: str
    started: float            # time.monotonic()
    ended: float

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    @property
    def missing(self) -> bool:
        return self.exit_code in NOT_FOUND

    def why_failed(self, timeout_s: float) -> str | None:
        if self.timed_out:
            return f"did not finish within {timeout_s:g} s"
        if self.missing:
            return f"command not found (exit status {self.exit_code}): {last_line(self.output)}"
        if self.exit_code != 0:
            return f"exit status {self.exit_code}: {last_line(self.output)}"
        return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def run_in_terminal(command: str, env: dict[str, str], timeout_s: float, cwd: Path | None = None,
                    size: tuple[int, int] = (10000, 10000)) -> Executed:
    """``bash -c command`` on a pseudo-terminal of ``size`` (rows, columns; a huge one: a pager
    sees no reason to start), killed with everything it started at the timeout. A container's
    terminal gets its size only after its command started (``docker-compose exec``): its
    environment keeps pagers away (PAGER=cat, see stack.docker.NO_PAGER)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    started = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", command], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=cwd, start_new_session=True, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    exit_code: int | None = None
    deadline = started + timeout_s
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    data = b""
                if data:
                    chunks.append(data)
                    continue
            if proc.poll() is not None and not ready:
                exit_code = proc.returncode
                break
            if proc.poll() is not None and ready and not data:
                exit_code = proc.returncode
                break
            if time.monotonic() > deadline:
                break
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running (tail -f, a pager)
        except ProcessLookupError:
            pass
        proc.wait()
        os.close(master)
    output = ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")
    return Executed(command, exit_code, output, started, time.monotonic())


@dataclass
class Attempt:
    """One command of a step (the documented one, or its correction) and what came of it."""
    documented: str          # as the runbook file writes it
    ran: str                 # what ran, with the stack's addresses
    executed: Executed | None = None
    verified: Executed | None = None
    failure: str | None = None
    findings: dict[str, str] = field(default_factory=dict)

    def to_json(self, t0: float) -> dict[str, Any]:
        e = self.executed
        return {"documented": self.documented, "ran": self.ran,
                "exit_code": e.exit_code if e else None, "seconds": round(e.seconds, 3) if e else None,
                "output": e.output[-EXCERPT:] if e else "", "verified_by": self.verified.command if self.verified else None,
                "failure": self.failure, "findings": self.findings}


@dataclass
class StepRecord:
    step: Step
    outcome: str = "not run"      # passed | failed | found (a check that found a problem) | skipped | not run
    started: float | None = None  # time.monotonic()
    ended: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    drift: str | None = None      # why the documented command drifted from the stack
    known_drift: bool = False     # the runbook file carries the correction (and its note)

    @property
    def findings(self) -> dict[str, str]:
        return {k: v for a in self.attempts for k, v in a.findings.items()}

    def to_json(self, t0: float) -> dict[str, Any]:
        s = self.step
        return {"step": s.name, "does": s.does, "in_guide": s.in_guide, "outcome": self.outcome,
                "at_s": round(self.started - t0, 3) if self.started is not None else None,
                "seconds": round(self.ended - self.started, 3) if self.started is not None and self.ended else None,
                "drift": self.drift, "known_drift": self.known_drift,
                "note": s.corrected.note if s.corrected else s.note,
                "attempts": [a.to_json(t0) for a in self.attempts]}


@dataclass
class RunbookRun:
    runbook: Runbook
    provider: str
    started: float
    ended: float | None = None
    steps: list[StepRecord] = field(default_factory=list)
    aborted_at: str | None = None  # the step whose failure stopped the runbook

    @property
    def completed(self) -> bool:
        return self.ended is not None and self.aborted_at is None

    @property
    def failed_steps(self) -> list[StepRecord]:
        """Steps that failed with nothing to fall back on (their failure is not a finding, and no
        later step backs them up)."""
        backed_up = {s.step.only_if.step for s in self.steps if s.step.only_if and s.step.only_if.outcome == "failed"}
        return [s for s in self.steps if s.outcome == "failed" and s.step.name not in backed_up]

    @property
    def drift(self) -> list[StepRecord]:
        return [s for s in self.steps if s.drift]

    @property
    def findings(self) -> dict[str, str]:
        return {k: v for s in self.steps for k, v in s.findings.items()}

    def timeline(self, t0: float | None = None) -> list[dict[str, Any]]:
        t0 = self.started if t0 is None else t0
        return [s.to_json(t0) for s in self.steps]

    def describe(self) -> str:
        """The run as an operator reads it: one line per step, then the drift."""
        head = f"{self.runbook.title} ({self.provider} stack): " + (
            "completed" if self.completed else f"stopped at {self.aborted_at}")
        return "\n".join([head, *timeline_text(self.timeline())])


def timeline_text(timeline: list[dict[str, Any]]) -> list[str]:
    """A timeline (``RunbookRun.timeline``, or as results.json holds it) as lines for a terminal."""
    lines, drift = [], []
    for event in timeline:
        at = event.get("at_s")
        when = f"{at:7.1f} s" if isinstance(at, (int, float)) else "      - "
        if event.get("event", "step") != "step":
            lines.append(f"  {when}  {event['event']:8} {event.get('what') or ''}")
            continue
        took = f"{event['seconds']:.1f} s" if event.get("seconds") is not None else ""
        lines.append(f"  {when}  {event['outcome']:8} {event['step']:28} {took}")
        for attempt in event.get("attempts", []):
            code = attempt.get("exit_code")
            lines.append(f"               $ {attempt['ran'][:160]}  -> {'timeout' if code is None else code}")
        if event.get("drift"):
            drift.append(f"  DRIFT {event['step']}: {event['drift']}"
                         + (f"; the guide should say: {event['note']}" if event.get("known_drift") else
                            "; the runbook file has no correction"))
    return lines + drift


class Runner:
    """Executes runbooks against one stack: ``places`` are the stack's addresses, ``env`` what
    every command gets (Compose's variables, the backup configuration)."""

    def __init__(self, provider: str, places: dict[str, str], env: dict[str, str],
                 log: Callable[[str], None] = lambda line: None, cwd: Path | None = None) -> None:
        self.provider = provider
        self.places = places
        self.env = env
        self.log = log
        self.cwd = cwd

    @classmethod
    def for_stack(cls, stack: Any, env: dict[str, str] | None = None,
                  log: Callable[[str], None] = lambda line: None) -> "Runner":
        from ..backup.conf import load, written_for
        e = stack.endpoints
        conf_path = written_for(stack)
        conf = load(conf_path)
        compose = stack.compose
        python = shlex.quote(sys.executable)
        places = {
            "compose": shlex.join(compose.argv) if compose else "docker-compose -f docker-compose.prod.yml",
            "ctl": f"{python} -m fulsk_chaos.cli ctl --socket {shlex.quote(str(stack.control_path))}",
            "frontend_url": e.frontend_url, "backend_url": e.backend_url, "database_dsn": e.database_dsn,
            "postgres_port": str(stack.topology.ports["postgres"]), "redis_port": str(stack.topology.ports["redis"]),
            "mqtt_port": str(stack.topology.ports["mqtt"]), "toxiproxy_url": e.toxiproxy_url,
            "backup_dir": str(conf.backup_dir), "scripts": str(FIXTURES / "scripts"),
            "logs": str(stack.dir / "logs"), "python": python, "stack_dir": str(stack.dir),
            "frontend_port": str(stack.topology.ports["frontend"]),
            "nginx_access_log": str(stack.service("frontend").spec.access_log(stack.service("frontend").ctx)),
            "env_file": str(stack.service("backend").spec.env_file(stack.service("backend").ctx))}
        places |= contract_places(stack.contract)
        if "postgres-standby" in stack.services:
            places |= {"standby_dsn": stack.service("postgres-standby").address,
                       "standby_port": str(stack.topology.ports["postgres-standby"])}
        bindir = str(Path(sys.executable).parent)
        base = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "TERM": "xterm", "PAGER": "cat",
                "FULSK_BACKUP_CONF": str(conf_path), "FULSK_PYTHON": sys.executable,
                **(compose.env if compose else {}), **(env or {})}
        if "BACKUP_DIR" in base:  # a condition moved it (e.g. onto a full disk)
            places["backup_dir"] = base["BACKUP_DIR"]
        return cls(stack.provider, places, base, log, cwd=stack.dir)

    # --- what runs -----------------------------------------------------------------------------
    def render(self, text: str, runbook: Runbook, found: dict[str, str]) -> str:
        for word, value in runbook.params.items():
            text = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", value, text)
        text = COMPOSE_AS_DOCUMENTED.sub(lambda m: "{{compose}}", text)
        text = LOCALHOST.sub(lambda m: "{{frontend_url}}", text)
        text = BACKUPS.sub(lambda m: "{{backup_dir}}", text)
        text = SCRIPTS.sub(lambda m: "{{scripts}}/", text)
        text = NGINX_LOG.sub(lambda m: "{{nginx_access_log}}", text)
        text = ENV_PRODUCTION.sub(lambda m: "{{env_file}}", text)

        def place(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("found."):
                if name[6:] not in found:
                    raise RunbookError(f"{runbook.name}: {{{{{name}}}}}: no earlier step found {name[6:]!r}")
                return found[name[6:]]
            if name not in self.places:
                raise RunbookError(f"{runbook.name}: unknown placeholder {{{{{name}}}}}")
            return self.places[name]
        return PLACEHOLDER.sub(place, text)

    def run(self, runbook: Runbook, t0: float | None = None) -> RunbookRun:
        run = RunbookRun(runbook, self.provider, time.monotonic() if t0 is None else t0)
        outcomes: dict[str, str] = {}
        found: dict[str, str] = {}
        for step in runbook.steps:
            record = StepRecord(step)
            run.steps.append(record)
            if run.aborted_at is not None:
                continue  # not run
            if step.only_if and not step.only_if.holds(outcomes):
                record.outcome = "skipped"
                outcomes[step.name] = "skipped"
                continue
            self._step(record, runbook, found)
            outcomes[step.name] = "failed" if record.outcome == "found" else record.outcome
            found.update(record.findings)
            self.log(f"runbook {runbook.name}: {step.name} {record.outcome}"
                     + (f" (drift: {record.drift})" if record.drift else ""))
            if record.outcome == "failed" and step.on_failure == "stop":
                run.aborted_at = step.name
        run.ended = time.monotonic()
        return run

    def _step(self, record: StepRecord, runbook: Runbook, found: dict[str, str]) -> None:
        """A failure of the documented command is drift, except where the runbook expects it: a
        check that finds a problem (``may_fail``), or a step with a fallback (``on_failure:
        continue``). A command that does not exist or never ends is drift whatever the step."""
        step = record.step
        record.started = time.monotonic()
        first = self._attempt(step, step.command, runbook, found)
        record.attempts.append(first)
        ok = first.failure is None
        broken = first.executed is not None and (first.executed.missing or first.executed.timed_out)
        finding = False
        if not ok:
            if step.corrected or broken or not (step.may_fail or step.on_failure == "continue"):
                record.drift = first.failure
                record.known_drift = step.corrected is not None
            finding = step.may_fail and not broken
        if not ok and step.corrected:
            second = self._attempt(step, step.corrected.command, runbook, {**found, **first.findings})
            record.attempts.append(second)
            ok = second.failure is None
            finding = step.may_fail and not ok and second.executed is not None and not (
                second.executed.missing or second.executed.timed_out)
        record.outcome = "passed" if ok else ("found" if finding else "failed")
        record.ended = time.monotonic()

    def _attempt(self, step: Step, command: Command, runbook: Runbook, found: dict[str, str]) -> Attempt:
        documented = command.for_provider(self.provider)
        attempt = Attempt(documented, self.render(documented, runbook, found))
        deadline = time.monotonic() + step.timeout_s
        if all(not line.strip() or line.strip().startswith("#") for line in attempt.ran.splitlines()):
            now = time.monotonic()  # a manual step ("# Edit .env.production ..."): nothing runs, nothing changes
            attempt.executed = Executed(attempt.ran, 127, "only a comment: nothing to run", now, now)
            attempt.failure = f"the guide gives no command here, only a comment ({attempt.ran.strip()[:120]})"
            return attempt
        if why := unsafe(attempt.ran):
            now = time.monotonic()
            attempt.executed = Executed(attempt.ran, 126, f"refused: {why}", now, now)  # as "cannot execute"
            attempt.failure = f"refused before it ran: {why}"
            return attempt
        attempt.executed = executed = run_in_terminal(attempt.ran, self.env, step.timeout_s, self.cwd)
        attempt.failure = executed.why_failed(step.timeout_s)
        expected = self.render(step.expect_output, runbook, found) if step.expect_output else None
        if attempt.failure is None and expected and not re.search(expected, executed.output, re.MULTILINE):
            attempt.failure = f"its output does not show /{expected}/: {last_line(executed.output)}"
        for name, pattern in step.finds.items():
            m = re.search(pattern, executed.output, re.MULTILINE)
            if m:
                attempt.findings[name] = m.group(1)
            elif attempt.failure is None:
                attempt.failure = f"found no {name} (/{pattern}/) in its output: {last_line(executed.output)}"
        if attempt.failure is None and step.verify is not None:
            attempt.verified, why = self._verify(step, runbook, {**found, **attempt.findings},
                                                 max(deadline, time.monotonic() + 5.0))
            if why:
                attempt.failure = f"its effect was not verified: {why}"
        return attempt

    def _verify(self, step: Step, runbook: Runbook, found: dict[str, str],
                deadline: float) -> tuple[Executed, str | None]:
        """The step's verification, polled until it passes or the step's time is up."""
        assert step.verify is not None
        command = self.render(step.verify.for_provider(self.provider), runbook, found)
        while True:
            left = deadline - time.monotonic()
            done = run_in_terminal(command, self.env, max(1.0, min(10.0, left)), self.cwd)
            if done.exit_code == 0:
                return done, None
            if time.monotonic() >= deadline:
                return done, f"`{command}` still failing after {step.timeout_s:g} s " \
                             f"({done.why_failed(max(1.0, min(10.0, left)))})"
            time.sleep(0.5)

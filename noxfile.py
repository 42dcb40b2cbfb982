"""Sessions: `nox -s drill` runs the chaos scenarios (the whole catalogue, the long fault-schedule
search); `nox -s tests` runs the framework's tests and the quick subset of the scenarios on the
local stack, and the provider tests and the quick subset on Docker; `nox -s images` builds the offline
images; `nox -s bench` prints timings. The cadence of the ops guide: `nox -s load` (weekly),
`nox -s stress` (monthly), `nox -s chaos` (quarterly: the drill under load), `nox -s recovery`
(the backup and recovery drills, also in the drill); `nox -s runbook -- NAME` one of the ops
guide's runbooks against a fresh stack (`-- --list` lists them; all of them are in the drill);
`nox -s loadbench` prints the load generator's ceiling on this machine, `nox -s recoverybench` the
RTO of a million-reading restore; `nox -s docs` regenerates the reference tables of docs/reference.

Arguments after `--` go to pytest, e.g. `nox -s drill -- --stack local --report-dir DIR -k db_loss`.
Which tests need Docker, or exercise the providers, is said by their markers (see the plugin), not here.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _prepare(session: nox.Session, docker: bool = False) -> None:
    session.run("bash", "scripts/bootstrap.sh", *(["--docker"] if docker else []), external=True)
    session.install("-e", ".[test]")


def _docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


def stack_asked_for(posargs: list[str]) -> str | None:
    """The provider named by ``--stack`` in pytest's arguments (or $FULSK_CHAOS_STACK), if any."""
    for i, arg in enumerate(posargs):
        if arg.startswith("--stack="):
            return arg.split("=", 1)[1]
        if arg == "--stack" and i + 1 < len(posargs):
            return posargs[i + 1]
    return os.environ.get("FULSK_CHAOS_STACK") or None


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/reference (fault kinds, configuration keys, expectations, bug switches) from
    the code; `nox -s tests` fails while a checked-in page is stale (tests/test_docs.py)."""
    session.install("-e", ".")
    session.run("python", "-m", "fulsk_chaos.docs", "--write", "docs/reference")


@nox.session
def images(session: nox.Session) -> None:
    """Build the stack's images offline, from a debootstrap'd Debian base (incremental)."""
    _prepare(session, docker=True)
    session.run("fulsk-chaos", "images", "build", "--offline")


def workers(cores: int | None = None, *, monitored: bool = False) -> int:
    """A scenario mostly waits (its windows, its faults' holds): three workers per two cores (a
    worker per core left this 2-core host half idle over the tests session, 0.88 cores busy). A
    monitored stack (Prometheus, Alertmanager, five exporters, scrapes every 0.5 s) is heavier: three
    of them stalled this host's CPU in 0.7-0.97 of the drill's windows, so a drill takes one per core.
    So does a Docker stack (dockerd, a shim per container): three stalled CI's host (CPU stall 0.55
    over a runbook's windows before its fault, the run invalid)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores) if monitored else max(2, (3 * cores) // 2)


def parallel(args: list[str], *, heavy: bool = False) -> list[str]:
    """pytest-xdist's options for a drill: ``workers()`` workers (each with a stack of its own;
    one per core for a monitored or ``heavy`` stack), the longest scenarios first, idle workers
    taking over others' queues; unless the caller chose (``-n N``; ``-n 1``, ``-n0`` or ``-p
    no:xdist`` runs one at a time)."""
    chosen = any(a in ("-n", "--numprocesses", "no:xdist") or a.startswith(("-n", "--numprocesses=", "--dist"))
                 for a in args)
    one_per_core = heavy or "--monitoring" in args
    return [] if chosen else ["-n", str(workers(monitored=one_per_core)), "--dist", "worksteal"]


def _on_a_stack(session: nox.Session, paths: list[str], defaults: dict[str, str | None],
                args: list[str] | None = None, workers: bool = False) -> None:
    """pytest on Docker when an engine answers (or --stack docker is asked for: the engine is then
    installed and started), else on the local stack; ``defaults`` are options added unless given;
    ``workers``: in parallel (see ``parallel``)."""
    args = list(session.posargs if args is None else args)
    asked = stack_asked_for(args)
    _prepare(session, docker=asked == "docker")
    if asked is None:
        args = ["--stack", "docker" if _docker_answers() else "local", *args]
    for option, value in defaults.items():
        if not any(a == option or a.startswith(option + "=") for a in args):
            args = [option, *([value] if value is not None else []), *args]
    session.run("pytest", *paths, *(parallel(args) if workers else []), *args)


@nox.session
def drill(session: nox.Session) -> None:
    """The chaos drill: every scenario, on Docker when an engine answers, else on the local stack,
    a worker per core (``-- -n 1`` for one at a time)."""
    # the drill searches fault schedules longer than CI
    _on_a_stack(session, ["scenarios"], {"--schedule-profile": "drill", "--monitoring": None}, workers=True)


@nox.session
def load(session: nox.Session) -> None:
    """The weekly load test: the steady profile for its duration, judged against the ops guide's
    baselines and the stored baseline, e.g. `nox -s load -- --duration 60s [--update-baseline]`."""
    _on_a_stack(session, ["loadtests/test_load.py"], {"--monitoring": None})


@nox.session
def stress(session: nox.Session) -> None:
    """The monthly stress test: a step ramp of API arrivals until a baseline breaks, then bisection
    to the knee (within load.knee_resolution); reports the capacity with its bracket and the first
    broken baseline, e.g. `nox -s stress -- --step-duration 10s`. Capacity under fault: `nox -s
    stress -- --under-fault KIND:TARGET[,KEY=VALUE...]` runs the search again while the fault holds
    (e.g. latency:backend-postgres,latency_ms=100; flushall:redis,every=step; kill:backend,scale=3)
    and reports its ratio to the healthy capacity. The wrk anchor: `nox -s loadbench -- knee`."""
    _on_a_stack(session, ["loadtests/test_stress.py"], {"--monitoring": None})


@nox.session
def chaos(session: nox.Session) -> None:
    """The quarterly chaos drill under load: every scenario with background Locust load, baselines
    judged before and after each fault window and shown during it."""
    # one at a time: each scenario's load takes the host's cores (its generator's CPU is judged)
    _on_a_stack(session, ["scenarios"], {"--schedule-profile": "drill", "--under-load": None, "--monitoring": None})


@nox.session
def recovery(session: nox.Session) -> None:
    """The recovery drills: the monthly backup integrity test and the quarterly recovery simulation
    (backup.sh, disaster-recovery.sh, RTO and RPO against their targets); also part of the drill."""
    _on_a_stack(session, ["scenarios/test_backup_recovery.py"], {})


@nox.session
def runbook(session: nox.Session) -> None:
    """Run one of the ops guide's runbooks (fixtures/runbooks/NAME.yml) against a fresh stack, every
    trigger case of it, and print its timeline and verdict: `nox -s runbook -- NAME [pytest options]`;
    `nox -s runbook -- --list` lists them. The runbooks are also part of the drill."""
    args = list(session.posargs)
    session.install("-e", ".[test]")
    if not args or args[0] in ("--list", "-l"):
        session.run("fulsk-chaos", "runbook", "--list")
        return
    name, rest = args[0], args[1:]
    session.run("fulsk-chaos", "runbook", "--check", name)  # a wrong name or field stops here, in one line
    _on_a_stack(session, ["scenarios/test_runbooks.py"], {"--runbook": name}, rest)


@nox.session
def incident(session: nox.Session) -> None:
    """Incident replay: for each alert rule that links a runbook (runbook_url), the fault that must
    raise it, the page, the runbook the page links, users back and the alert resolved; time to
    detect, diagnose, recover and resolve against the targets of its severity, and the runbook
    coverage, e.g. `nox -s incident -- --stack local`. Also part of the drill."""
    _on_a_stack(session, ["scenarios/test_incidents.py"], {"--monitoring": None})


@nox.session
def explore(session: nox.Session) -> None:
    """The guided fault-schedule search for as long as its budget (`-- --budget 1h`; default 15m):
    the explore profile, a fresh seed, the corpus (REPORT_DIR/corpus/*.json) and the coverage of
    the reachable states (terminal, results.json, HTML), with each state's first schedule; any
    other argument goes to pytest (e.g. --stack docker, --schedule-seed N)."""
    args, budget = budget_from(session.posargs)
    _on_a_stack(session, ["scenarios/test_schedules.py"],
                {"--schedule-profile": "explore", "--schedule-budget": budget}, args)


def budget_from(posargs: list[str], default: str = "15m") -> tuple[list[str], str]:
    """`--budget 1h` (or --budget=1h) taken out of the arguments."""
    args, budget = list(posargs), default
    for i, arg in enumerate(args):
        if arg == "--budget" and i + 1 < len(args):
            budget = args[i + 1]
            del args[i:i + 2]
            break
        if arg.startswith("--budget="):
            budget = arg.split("=", 1)[1]
            del args[i]
            break
    return args, budget


@nox.session
def explorebench(session: nox.Session) -> None:
    """Guided against unguided schedule search, seed for seed on the drill profile's budget: the
    states reached on the healthy backend, and how soon each rare-state bug switch is found
    (tests/benchmarks/explore_guidance.py; -- --seeds 5 --parallel 2). Prints figures."""
    _prepare(session)
    session.run("python", "tests/benchmarks/explore_guidance.py", *session.posargs)


@nox.session
def recoverybench(session: nox.Session) -> None:
    """Print the RTO of full restores of a million readings (from the dump, and from the base backup
    with the WAL archive), with the data set's size, e.g. `nox -s recoverybench -- 1000000 docker`."""
    _prepare(session, docker="docker" in session.posargs)
    session.run("python", "tests/benchmarks/recovery_rto.py", *session.posargs)


@nox.session
def loadbench(session: nox.Session) -> None:
    """Print the load generator's ceiling on this machine: Locust's HTTP requests/s and MQTT
    messages/s per worker, beside raw clients (wrk, a paho loop, mosquitto_pub) on the same machine.
    `nox -s loadbench -- knee [STEP_S WRK_S WORKERS]` prints instead the stress search's knee of the
    API beside wrk's (closed loop, at the concurrency the search had at its knee): the stress
    capacity's sanity anchor."""
    _prepare(session)
    session.run("bash", "scripts/bootstrap.sh", "--bench", external=True)
    if session.posargs[:1] == ["knee"]:
        session.run("python", "tests/benchmarks/stress_knee.py", *session.posargs[1:])
        return
    session.run("python", "tests/benchmarks/load_generator.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Print the stack's start-to-healthy and teardown medians, local and Docker side by side, each
    service's share and what monitoring adds. `-- --against COMMIT` runs that commit's code too, from
    a git worktree, in alternating rounds, and prints the ratios (`nox -s bench -- --against fb825b9`:
    the foundation's); `-- 9 local` nine rounds of the local stack only."""
    _prepare(session, docker=True)
    session.run("python", "tests/benchmarks/stack_lifecycle.py", *session.posargs)


CI_SCHEDULE_SEED = "2026"


@nox.session
def tests(session: nox.Session) -> None:
    """The framework's own tests (the proofs that each verdict catches its bug included) on the
    local stack, then what exercises the providers on the Docker stack; each scenario of the quick
    subset once: on Docker those whose faults or commands act through the provider (kill, restore,
    the guide's docker-compose commands), on the local stack the others (Toxiproxy's faults, client
    floods, the schedule search). The whole catalogue is the drill's (`nox -s drill`): CI has 40
    minutes on a 2-core host, where the proofs alone take about 20. Then the quick subset against
    the Node.js backend, on both stacks.

    The schedule search draws the same schedules on every run (CI_SCHEDULE_SEED, and the quick
    profile is unguided): a gate must say the same of the same code; the drill searches with a
    fresh seed each time, guided, and prints it. The committed corpus (fixtures/corpus) is
    replayed among the quick scenarios, on both backends."""
    _prepare(session, docker=True)
    session.run("fulsk-chaos", "images", "build", "--offline")
    workers, on_docker = parallel(session.posargs), parallel(session.posargs, heavy=True)
    session.run("pytest", "tests", "scenarios", "--stack", "local", "--catalogue", "quick",
                "-m", "not (scenario and provider)", "--schedule-seed", CI_SCHEDULE_SEED, "--durations", "40",
                *workers, *session.posargs)
    session.run("pytest", "tests", "scenarios", "--stack", "docker", "--catalogue", "quick",
                "-m", "docker or provider", *on_docker, *session.posargs)
    # the quick subset again against the guide's Node.js backend (fixtures/backends/node), split the same way
    session.run("fulsk-chaos", "images", "build", "--offline", "--backend", "node")
    # one at a time: its latency scenario judges the host's CPU, which a flood beside it takes
    session.run("pytest", "scenarios", "--backend", "node", "--stack", "local", "--catalogue", "quick",
                "-m", "not provider", "--schedule-seed", CI_SCHEDULE_SEED, *session.posargs)
    session.run("pytest", "scenarios", "--backend", "node", "--stack", "docker", "--catalogue", "quick",
                "-m", "provider", *on_docker, *session.posargs)

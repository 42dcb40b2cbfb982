"""``fulsk-chaos``: the commands that are not pytest's.

    fulsk-chaos up [--stack local|docker] [--json] [--chaos-config FILE]
    fulsk-chaos contract check [CONTRACT] [--stack local|docker] [--chaos-config FILE]
    fulsk-chaos images build --offline [--backend NAME|PATH]
    fulsk-chaos runbook --list | --check NAME...
    fulsk-chaos corpus add FILE... [--failed-only] [--to DIR] | corpus list [DIR]
    fulsk-chaos ctl --socket STACK_DIR/control.sock {status|stop|start|restart|kill|wipe|reload} SERVICE
    fulsk-chaos ctl --socket STACK_DIR/control.sock scale SERVICE COUNT

Errors are one line on stderr and exit status 1, never a traceback: they say what was wrong
and what to do.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import config as settings_module
from .errors import FulskChaosError
from .services import CATALOGUE, FIXTURES
from .stack.control import ACTIONS as CONTROL_ACTIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulsk-chaos", description="Chaos and resilience testing for Fulsk")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the stack, print where everything is, keep it up until Ctrl-C")
    up.add_argument("--stack", choices=["local", "docker"], default="local", help="local processes or containers")
    up.add_argument("--json", action="store_true", help="print the endpoints as one JSON object")
    up.add_argument("--chaos-config", type=Path, default=None,
                    help="a TOML file of settings (default: [tool.fulsk-chaos] in pyproject.toml)")

    contract = commands.add_parser("contract", help="a backend's contract (how it is spoken to and read)")
    contract_commands = contract.add_subparsers(dest="action", required=True)
    contract_check = contract_commands.add_parser(
        "check", help="start the stack with the backend, publish a few readings as the contract says, and try each "
                      "item of it once (one line each: ok, or what to change)")
    contract_check.add_argument("contract", nargs="?", default=None,
                                help="the backend: a name (reference, node), a contract file or a directory holding "
                                     "contract.toml (default: backend.contract, else the reference backend's)")
    contract_check.add_argument("--stack", choices=["local", "docker"], default="local")
    contract_check.add_argument("--chaos-config", type=Path, default=None,
                                help="a TOML file of settings (default: [tool.fulsk-chaos] in pyproject.toml)")

    ctl = commands.add_parser("ctl", help="stop, start, restart, kill, wipe, scale or reload a service of a running "
                                          "stack (its control socket)")
    ctl.add_argument("--socket", type=Path, required=True, help="the stack's control.sock (in its directory)")
    ctl.add_argument("action", choices=list(CONTROL_ACTIONS))
    ctl.add_argument("service")
    ctl.add_argument("count", nargs="?", type=int, help="scale: how many instances in all")

    runbook = commands.add_parser("runbook", help="the ops guide's runbooks (fixtures/runbooks): list or check "
                                                  "them (run one: nox -s runbook -- NAME)")
    runbook_action = runbook.add_mutually_exclusive_group(required=True)
    runbook_action.add_argument("--list", action="store_true", help="list the runbooks and their trigger cases")
    runbook_action.add_argument("--check", nargs="+", metavar="NAME",
                                help="read each runbook (a name or a .yml path) and stop at the first problem")

    corpus = commands.add_parser("corpus", help="the fault-schedule corpus (fixtures/corpus: replayed by nox -s tests)")
    corpus_commands = corpus.add_subparsers(dest="action", required=True)
    corpus_add = corpus_commands.add_parser(
        "add", help="promote what a search found (a reports/corpus/*.json file, or a run's results.json) into the "
                    "committed corpus")
    corpus_add.add_argument("files", nargs="+", type=Path, metavar="FILE")
    corpus_add.add_argument("--failed-only", action="store_true",
                            help="only the failing schedules, not those that first reached a state")
    corpus_add.add_argument("--to", type=Path, default=None, help="the corpus directory (default: fixtures/corpus)")
    corpus_list = corpus_commands.add_parser("list", help="the corpus's entries, one line each")
    corpus_list.add_argument("directory", nargs="?", type=Path, default=None)

    images = commands.add_parser("images", help="container images of the stack")
    image_commands = images.add_subparsers(dest="action", required=True)
    build = image_commands.add_parser("build", help="build the stack's images")
    build.add_argument("--offline", action="store_true",
                       help="no registry: build every image from a debootstrap'd Debian base")
    build.add_argument("--backend", default=None, metavar="NAME|PATH",
                       help="the backend's image too, by its contract (node, or a contract file or its directory); "
                            "default: the reference backend's")
    report = commands.add_parser("report", help="draw a run's index.html again from its results.json")
    report.add_argument("results", type=Path, help="REPORT_DIR/<run-id>/results.json")
    trend = commands.add_parser("trends", help="write REPORT_DIR/trends.html from the runs kept there")
    trend.add_argument("report_dir", type=Path, help="where the runs are (REPORT_DIR/<run-id>/results.json)")
    args = parser.parse_args(argv)
    if args.command == "images" and not args.offline:
        parser.error("only --offline builds are implemented: registry images are pulled by the stack itself")
    try:
        if args.command == "ctl":
            from .stack.control import request
            if (args.count is None) == (args.action == "scale"):
                parser.error("scale takes SERVICE COUNT; the other actions only SERVICE")
            answer = request(args.socket, args.action, args.service, count=args.count)
            states = answer.get("instances") or [answer["state"]]
            print(f"{answer['service']}: {', '.join(states)}")
            return 0
        if args.command == "runbook":
            return _runbooks(args)
        if args.command == "contract":
            return _check_contract(args)
        if args.command == "corpus":
            return _corpus(args)
        if args.command == "trends":
            from .report import trends
            print(trends.write(args.report_dir))
            return 0
        if args.command == "report":
            if not args.results.is_file():
                parser.error(f"{args.results}: no such file (a run's results.json, in REPORT_DIR/<run-id>/)")
            from .report.html import render_file
            print(render_file(args.results))
            return 0
        return _up(args) if args.command == "up" else _build_images(args.backend)
    except (FulskChaosError, OSError) as exc:
        print(f"fulsk-chaos: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the docker SDK's own errors: one line, not a traceback
        print(f"fulsk-chaos: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _check_contract(args: argparse.Namespace) -> int:
    """Exit 0 when every item of the contract held, 1 otherwise (each said on its own line)."""
    from dataclasses import replace
    from .contract import resolve
    from .contract_check import check
    from .stack import Stack
    settings = _settings(args.chaos_config)
    if args.contract is not None:
        settings = replace(settings, backend=replace(settings.backend, contract=str(resolve(args.contract))))
    with Stack(settings, args.stack) as stack:
        print(f"fulsk-chaos: contract {stack.contract.name} against the {args.stack} stack", flush=True)
        items = check(stack)
    for item in items:
        print(item.line())
    return 0 if all(i.ok for i in items) else 1


def _corpus(args: argparse.Namespace) -> int:
    from .drills import corpus
    if args.action == "list":
        for path, entry in corpus.entries(args.directory or corpus.COMMITTED):
            print(f"{path.name}: {entry.why}; {', '.join(entry.steps)}"
                  + (f" (reproduced {entry.reproduced})" if entry.reproduced else ""))
        return 0
    for file in args.files:
        if not file.is_file():
            raise FulskChaosError(f"{file}: no such file (a search writes REPORT_DIR/corpus/*.json and "
                                  "REPORT_DIR/<run-id>/results.json)")
        for path in corpus.add(file, args.to or corpus.COMMITTED, failed_only=args.failed_only):
            print(f"added {path}")
    return 0


def _runbooks(args: argparse.Namespace) -> int:
    from . import runbooks
    if args.list:
        for book in runbooks.load_all():
            cases = ", ".join(t.case for t in book.triggers)
            print(f"{book.name:26} {book.title.removeprefix('Runbook: '):30} target {book.target_s:g} s; "
                  f"{len(book.steps)} steps; cases: {cases}")
        return 0
    for name in args.check:
        book = runbooks.load(name)
        print(f"{book.name}: ok ({len(book.steps)} steps, cases: {', '.join(t.case for t in book.triggers)})")
    return 0


def _build_images(backend: str | None = None) -> int:
    from .contract import load, resolve
    from .host.engine import engine
    from .images import build_images  # needs the docker SDK and an engine: only when asked
    from .services import CATALOGUE
    catalogue = CATALOGUE.for_contract(load(resolve(backend) if backend else None))
    for result in build_images(FIXTURES, log=lambda line: print(f"images: {line}", file=sys.stderr),
                               client=engine(), catalogue=catalogue):
        state = "built" if result.built else "up to date"
        print(f"{result.image:34} {result.id[7:19]}  {state} ({result.seconds:.1f} s)")
    return 0


def _settings(path: Path | None) -> settings_module.Settings:
    settings = settings_module.load(path)
    CATALOGUE.check_settings(settings)
    return settings


def _up(args: argparse.Namespace) -> int:
    from .stack import Stack
    settings = _settings(args.chaos_config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(settings, args.stack)
    try:
        took = stack.start()
        where = describe(stack)
        if args.json:
            print(json.dumps(where), flush=True)
        else:
            print(_as_text(where, took), flush=True)
        stop.wait()
        print("fulsk-chaos: stopping the stack", file=sys.stderr, flush=True)
    finally:
        stack.stop()
    return 0


def describe(stack: Any) -> dict[str, Any]:
    """Where everything of a running stack is, for other tools (psql, toxiproxy-cli, mosquitto_pub, locust)."""
    from .backup.conf import written_for
    e, contract = stack.endpoints, stack.contract
    example = {"inverter_id": "inv-1", "site_id": "s", "seq": 1, "ts": round(time.time(), 3), "power_w": 1200.0,
               "energy_wh": 0.3}
    return {"id": stack.id, "provider": stack.provider, "dir": str(stack.dir),
            "frontend": e.frontend_url, "api": e.frontend_url + contract.reads.listing.path, "backend": e.backend_url,
            "live_feed": e.live_feed_url, "contract": contract.name,
            "metrics": e.metrics_url, "mqtt": {"host": e.mqtt_host, "port": e.mqtt_port,
                                               "topic": contract.publish.topic,
                                               "example_topic": contract.publish.topic.format(inverter_id="inv-1")},
            "database": e.database_dsn, "redis": e.redis_url,
            "toxiproxy": {"url": e.toxiproxy_url, "proxies": e.proxies},
            "backup_conf": str(written_for(stack)), "control": str(stack.control_path),
            # an example of each, in the backend's own words (its contract)
            "stored_sql": contract.ledger.inverters,
            "example_reading": contract.publish.payload(example),
            "example_latest": e.frontend_url + contract.reads.latest.path.format(inverter=example["inverter_id"]),
            # every service, as it declares where its users reach it (ServiceSpec.endpoints)
            "services": {name: service.spec.endpoints(service.ctx) for name, service in stack.services.items()}}


def _as_text(where: dict[str, Any], took: float) -> str:
    mqtt, toxiproxy = where["mqtt"], where["toxiproxy"]
    lines = [
        f"fulsk-chaos: {where['provider']} stack {where['id']} healthy in {took:.1f} s; Ctrl-C stops it and "
        f"removes everything",
        f"  frontend   {where['frontend']}   (users: dashboard, the API {where['api']}, live feed {where['live_feed']})",
        f"  backend    {where['backend']}   (direct, not proxied; metrics {where['metrics']})",
        f"  mqtt       {mqtt['host']}:{mqtt['port']}   (inverters publish here, through the proxy "
        f"inverters-mqtt; topic {mqtt['topic']})",
        f"  database   {where['database']}",
        f"  redis      {where['redis']}",
        f"  toxiproxy  {toxiproxy['url']}   (proxies below: inject network faults on them)",
    ]
    for name, proxy in toxiproxy["proxies"].items():
        lines.append(f"    {name:18} listen {proxy['listen']} -> {proxy['upstream']} {proxy['upstream_address']}")
    shown = {"frontend", "backend", "mqtt", "postgres", "redis", "toxiproxy"}
    lines += [f"  {name:10} {endpoints.get('address', '')}" for name, endpoints in where["services"].items()
              if name not in shown]
    lines += ["try:",
              f"  toxiproxy-cli -h {toxiproxy['url']} toxic add -t latency -a latency=300 backend-postgres",
              f"  psql '{where['database']}' -c \"SELECT count(*) FROM ({where['stored_sql']}) AS stored\"",
              f"  mosquitto_pub -h {mqtt['host']} -p {mqtt['port']} -q 1 -t {mqtt['example_topic']} "
              f"-m '{json.dumps(where['example_reading'])}'",
              f"  curl {where['example_latest']}",
              f"  FULSK_BACKUP_CONF={where['backup_conf']} fixtures/scripts/backup.sh --full --verbose",
              f"  FULSK_BACKUP_CONF={where['backup_conf']} fixtures/scripts/disaster-recovery.sh -v -f latest_backup.tar.gz",
              f"  FULSK_LOAD_PROFILE=weekly FULSK_MQTT={mqtt['host']}:{mqtt['port']} locust -f loadtests/locustfile.py --web-host 127.0.0.1 "
              f"-H {where['frontend']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""The pytest plugin: options, markers, fixtures and the verdict's way into pytest's outcome.

It owns lifecycles only. A scenario's verdict is the object its expectations were judged into;
the plugin records it (results.json, junit.xml, the terminal) and fails the test from it.
"""
from __future__ import annotations

import argparse

import contextlib
import inspect
import os
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import config as settings_module
from . import contract as contract_module
from .errors import ConfigError, FaultError
from .drills.experiment import Experiment
from .checks import blindspots
from .figures import BlindSpotFigures, IncidentFigures, StressFigures
from .drills.instruments import Needs, bound_s, make_feed, make_fleet, make_probe
from .drills.load import LoadDrill
from .drills.schedule_search import ScheduleOptions
from .faults import FaultInjector
from .host.gate import Gate
from .load import BaselineStore, LoadProfile, LoadTest, load_profile, parse_duration
from .load import knee
from .load.under_fault import FaultSpec, UnderFault
from .probes import Fleet, LiveFeed, Probe
from .drills.restore import RestoreDrill
from . import runbooks
from .runbooks import RunbookError, replay
from .runbooks import load as load_runbook
from .runbooks.drill import RunbookDrill
from .runbooks.replay import IncidentReplay
from .runbooks.runner import timeline_text
from .report import (ChaosToolkitJournals, HtmlReport, JUnitXml, ResultsJson, RunRecord, ScenarioRecord,
                     TerminalSummary, new_run_id)
from .report.progress import Progress, quiet
from .report.records import now_iso
from .services import CATALOGUE, FIXTURES
from .services.prometheus import alert_rules, rules_template
from .stack import PROVIDERS, Stack
from .verdict import Verdict, VerdictReached

RUN = pytest.StashKey[RunRecord]()
CONTROLLER = pytest.StashKey[bool]()  # a pytest-xdist controller: its workers run the scenarios, it reports them
GATE = pytest.StashKey[Gate]()  # under pytest-xdist: `serial` tests run alone (see host.gate)
DURATIONS = "fulsk-chaos/durations"  # pytest's cache: how long each test took last time, to start the longest first
SETTINGS = pytest.StashKey[settings_module.Settings]()
WRITERS = pytest.StashKey[list]()
RECORD = pytest.StashKey[ScenarioRecord]()
PROGRESS = pytest.StashKey[Progress]()

MARKERS = {
    "scenario": "a chaos scenario: judged from its expectations, journaled into results.json",
    "docker": "needs the Docker stack (--stack docker); skipped on the local one",
    "provider": "exercises the stack provider itself (a scenario: its faults or commands act through it): "
                "worth running on every provider; CI runs these on Docker",
    "slow": "runs a whole scenario in a pytest of its own (deselect with -m 'not slow')",
    "serial": "judges latency or loads the host on purpose: never beside another pytest-xdist worker "
              "(nox -s tests and drill run these after the parallel part, one at a time)",
    "recovery": "a backup and disaster-recovery drill (nox -s recovery)",
    "stack": "stack(**settings): the test gets a stack of its own with these stack settings (e.g. standby=True)",
    "runbook": "runbook(name): a runbook of the ops guide run against the stack (nox -s runbook -- NAME)",
    "incident": "an alert's incident replayed: fault, page, its runbook, users back, alert resolved (nox -s incident)",
    "quick": "a scenario of the representative quick subset CI runs on every provider (--catalogue quick)",
    "evidence": "evidence(**minimums): the least evidence the scenario's verdict needs (fulsk_chaos.drills.instruments.Needs)",
    "load": "a load test (weekly load, monthly stress): runs Locust against the stack",
    "needs": "needs(*capabilities): what the whole hypothesis needs of the backend (its contract's [capabilities]); "
             "a backend that declares none of one skips the scenario, saying which",
}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fulsk-chaos")
    group.addoption("--stack", default=os.environ.get("FULSK_CHAOS_STACK", "local"), choices=list(PROVIDERS),
                    help="where the stack under test runs: local processes (default) or docker")
    group.addoption("--report-dir", default="reports", type=Path,
                    help="results go to REPORT_DIR/<run-id>/ (results.json, junit.xml, logs)")
    group.addoption("--chaos-config", default=None, type=Path,
                    help="a TOML file of fulsk-chaos settings (default: [tool.fulsk-chaos] in pyproject.toml)")
    group.addoption("--schedule-profile", default="quick",
                    help="the bounds of the fault-schedule search ([tool.fulsk-chaos.schedules.NAME]; quick, drill)")
    group.addoption("--schedule-seed", default=None, type=int,
                    help="seed of the fault-schedule search (default: random, and printed): the same seed draws "
                         "the same schedules")
    group.addoption("--load-profile", default=None,
                    help="the load profile of a load scenario (loadtests/profiles/NAME.toml, or a path); default: "
                         "[tool.fulsk-chaos.load] profile (weekly) or stress_profile (stress)")
    group.addoption("--duration", default=None,
                    help="how long a steady load runs, e.g. 60s or 5m (default: the profile's duration_s)")
    group.addoption("--step-duration", default=None,
                    help="how long each step of a stress ramp lasts, e.g. 20s (default: the profile's api.step_s)")
    group.addoption("--workers", default=None, type=int,
                    help="Locust worker processes on this machine (default: [tool.fulsk-chaos.load] workers)")
    group.addoption("--update-baseline", action="store_true", default=False,
                    help="accept this load run's figures as the new baseline instead of comparing with it")
    group.addoption("--baseline-dir", default=None, type=Path,
                    help="where load baselines and their history are kept (default: [tool.fulsk-chaos.load] "
                         "baseline_dir, reports/baselines)")
    group.addoption("--under-load", default=None, nargs="?", const="",
                    help="chaos under load: run every scenario with background Locust load of this profile "
                         "(default when no profile is named: [tool.fulsk-chaos.load] chaos_profile)")
    group.addoption("--under-fault", default=None, metavar="KIND:TARGET[,KEY=VALUE...]",
                    help="capacity under fault: the stress search also runs while this catalogue fault holds (e.g. "
                         "latency:backend-postgres,latency_ms=100; flushall:redis,every=step; kill:backend,scale=3), "
                         "and reports its capacity's ratio to the healthy one (see fulsk_chaos.load.under_fault)")
    group.addoption("--catalogue", default="all", choices=["all", "quick"],
                    help="which scenarios of the catalogue run: all (default, the drill) or the quick subset "
                         "(marked quick: what CI runs); the framework's own tests run either way")
    group.addoption("--runbook", default=None,
                    help="run only this runbook's scenarios (a name of fixtures/runbooks/, e.g. service-restart)")
    group.addoption("--no-html", action="store_true", default=False,
                    help="write results.json and junit.xml only: no index.html, trends.html or journals "
                         "(a run whose report nobody reads)")
    group.addoption("--monitoring", action="store_true", default=False,
                    help="every stack of the run with Prometheus, Alertmanager and the exporters (stack.monitoring): "
                         "each scenario's declared alerts are judged")
    group.addoption("--backend", default=None, metavar="NAME|PATH",
                    help="the backend under test, by its contract: a name (reference), a contract file, or a "
                         "directory holding contract.toml (backend.contract)")
    group.addoption("--schedule-replay", default=None,
                    help="replay one schedule instead of searching: KIND:TARGET or heal, comma-separated, in order "
                         "(as a failed search prints it), or a corpus file (reports/corpus/*.json)")
    group.addoption("--schedule-budget", default=None, type=duration_s, metavar="DURATION",
                    help="search fault schedules until this much time has gone (e.g. 15m, 1h, 90s), within the "
                         "profile's max_examples (the explore profile's is all but unbounded)")


def duration_s(text: str) -> float:
    """90, 90s, 15m, 1h, 1h30m: seconds."""
    import re
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 90s, 15m, 1h or 1h30m")
    h, m, sec = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + sec


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        settings = settings_module.load(config.getoption("--chaos-config"), search_from=config.rootpath)
        CATALOGUE.check_settings(settings)
        if config.getoption("--monitoring"):
            settings = replace(settings, stack=replace(settings.stack, monitoring=True))
        if config.getoption("--backend"):
            contract = str(contract_module.resolve(config.getoption("--backend")))
            settings = replace(settings, backend=replace(settings.backend, contract=contract))
        contract_module.load(settings.backend.contract or None)  # a wrong contract: said before anything starts
    except ConfigError as exc:
        raise pytest.UsageError(f"fulsk-chaos configuration: {exc}") from None
    if config.getoption("--runbook"):
        try:
            load_runbook(config.getoption("--runbook"))
        except RunbookError as exc:
            raise pytest.UsageError(str(exc)) from None
    worker = worker_id(config)
    # Under pytest-xdist every worker judges its scenarios into the controller's one run (its id
    # comes with the worker's input); only the controller writes the report.
    run_id = config.workerinput["fulsk_chaos_run_id"] if worker else new_run_id()  # type: ignore[attr-defined]
    run = RunRecord(run_id, config.getoption("--stack"), Path(config.getoption("--report-dir")).resolve(),
                    settings_module.as_dict(settings), worker=worker)
    config.stash[SETTINGS] = settings
    config.stash[RUN] = run
    config.stash[CONTROLLER] = not worker and getattr(config.option, "dist", "no") != "no"
    if config.stash[CONTROLLER]:
        config.pluginmanager.register(XdistController(config), "fulsk-chaos-xdist-controller")
    if worker:
        config.stash[GATE] = Gate(Path(tempfile.gettempdir()) / f"fulsk-chaos-{run_id}.gate")
    config.stash[WRITERS] = [] if worker else [ResultsJson(lambda data: config.hook.pytest_fulsk_chaos_update_json(
        config=config, output_json=data)), JUnitXml(),
        *([] if config.getoption("--no-html") else [HtmlReport(), ChaosToolkitJournals()])]  # from results.json


def worker_id(config: pytest.Config) -> str | None:
    """This process's pytest-xdist worker id (gw0, gw1 ...); None when it is not a worker."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else None


# --- pytest-xdist: workers judge, the controller reports -------------------------------------------
class XdistController:
    """The controller of a pytest-xdist run: its workers run the scenarios, each with a stack of
    its own, and send each scenario's record with its reports; it writes the one report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.durations: dict[str, float] = {}

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Keep how long each test took, so the next run hands out the longest first."""
        cache = getattr(self.config, "cache", None)  # None with -p no:cacheprovider
        if cache is not None and self.durations:
            key = durations_key(self.config)
            known = cache.get(key, {})
            cache.set(key, {**known, **{k: round(v, 1) for k, v in self.durations.items()}})
        Gate(Path(tempfile.gettempdir()) / f"fulsk-chaos-{self.config.stash[RUN].run_id}.gate").remove()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["fulsk_chaos_run_id"] = self.config.stash[RUN].run_id

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A worker's scenario record, carried by each report of its item (the setup's is written
        ahead, as ``interrupted``; the teardown's is final)."""
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        data = getattr(report, "fulsk_scenario", None)
        if data is None:
            return
        run = self.config.stash[RUN]
        record = ScenarioRecord.from_json(data)
        run.scenarios[:] = [s for s in run.scenarios if s.nodeid != record.nodeid] + [record]
        for writer in self.config.stash[WRITERS]:
            (writer.scenario_finished if record.verdict else writer.scenario_started)(run, record)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """A worker is done: its stack's figures (and why it had none) join the run's."""
        run = self.config.stash[RUN]
        output = getattr(node, "workeroutput", {}) or {}
        stack, failure = output.get("fulsk_chaos_stack") or {}, output.get("fulsk_chaos_error")
        if stack:
            run.stack.setdefault("workers", {})[node.gateway.id] = stack
            for key, value in stack.items():
                run.stack.setdefault(key, value)  # the first worker's, at the top as without workers
        if failure:
            run.error = run.error or f"{node.gateway.id}: {failure}"


def _progress(config: pytest.Config) -> Progress:
    """The run's progress line, on pytest's terminal (past its output capture): rewritten in
    place on a terminal, a line per phase in a CI log."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return quiet()

    def write(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write(text)
            reporter.flush()
    return Progress(write, live=bool(getattr(reporter, "isatty", False)) and not os.environ.get("CI"))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[PROGRESS] = _progress(session.config)
    for writers in session.config.hook.pytest_fulsk_chaos_report_writers(config=session.config):
        session.config.stash[WRITERS].extend(writers or [])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    only = config.getoption("--runbook")
    if only:
        only = load_runbook(only).name
        keep = [i for i in items if (m := i.get_closest_marker("runbook")) is None or m.args[0] == only]
        wanted = [i for i in keep if i.get_closest_marker("runbook")]
        if wanted:
            config.hook.pytest_deselected(items=[i for i in items if i not in wanted])
            items[:] = wanted
    if config.getoption("--catalogue") == "quick":
        beyond = [i for i in items if i.get_closest_marker("scenario") and not i.get_closest_marker("quick")]
        if beyond:
            config.hook.pytest_deselected(items=beyond)
            dropped = set(beyond)
            items[:] = [i for i in items if i not in dropped]
    if not config.getoption("--under-fault"):  # capacity under fault is asked for, never a default
        faulted = [i for i in items if "under_fault" in getattr(i, "fixturenames", ())]
        if faulted:
            config.hook.pytest_deselected(items=faulted)
            dropped = set(faulted)
            items[:] = [i for i in items if i not in dropped]
    if config.stash.get(CONTROLLER, False) or worker_id(config):  # the same order in every process
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        items[:] = order_for_workers(items, cache.get(durations_key(config), {}) if cache is not None else {})
    _skip_what_the_backend_cannot(config, items)
    if config.getoption("--stack") == "docker":
        return
    skip = pytest.mark.skip(reason="needs the Docker stack: run with --stack docker")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)


def _skip_what_the_backend_cannot(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A scenario whose whole hypothesis needs a capability the backend's contract does not declare
    is skipped, not run, saying which (``@pytest.mark.needs("instance_header")``)."""
    contract = contract_module.load(config.stash[SETTINGS].backend.contract or None)
    known = {f.name for f in fields(contract.capabilities)}
    for item in items:
        for marker in item.iter_markers("needs"):
            for name in marker.args:
                if name not in known:
                    raise pytest.UsageError(f"{item.nodeid}: needs({name!r}): no such capability "
                                            f"(known: {', '.join(sorted(known))})")
                if not getattr(contract.capabilities, name):
                    item.add_marker(pytest.mark.skip(
                        reason=f"the {contract.name} backend declares no {name} (capabilities.{name} in its contract)"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    """Under pytest-xdist, a ``serial`` test runs with no other test beside it on this host (its
    setup and teardown included: a shared stack starts and stops inside them)."""
    gate = item.config.stash.get(GATE, None)
    if gate is None:
        return (yield)
    with gate.hold(alone=item.get_closest_marker("serial") is not None):
        return (yield)


# A guess of a test's length (seconds) when no earlier run measured it: what runs a whole
# scenario, or searches, takes longest.
def _expected_s(item: pytest.Item, measured: dict[str, float]) -> float:
    if item.nodeid in measured:
        return measured[item.nodeid]
    if "test_schedules" in item.nodeid:
        return 240.0
    if item.get_closest_marker("slow"):
        return 90.0
    if item.get_closest_marker("runbook") or item.get_closest_marker("recovery"):
        return 60.0
    return 25.0 if item.get_closest_marker("scenario") else 2.0


def durations_key(config: pytest.Config) -> str:
    """Durations are kept per shape of run: the drill's schedule search (monitored, its profile)
    takes ten times the tests session's, and started last it made the drill wait for it alone."""
    settings = config.stash.get(SETTINGS, None)  # the run's own: monitoring set in TOML counts too
    monitoring = settings.stack.monitoring if settings is not None else config.getoption("--monitoring", False)
    monitored = "monitored" if monitoring else "plain"
    return f"{DURATIONS}/{config.getoption('--stack', 'local')}-{monitored}-{config.getoption('--schedule-profile', 'quick')}"


def order_for_workers(items: list[pytest.Item], measured: dict[str, float]) -> list[pytest.Item]:
    """``serial`` tests first, then the longest first: a serial test runs alone, and at the end it
    would wait for the longest test still running; what a worker takes last is short."""
    return sorted(items, key=lambda i: (i.get_closest_marker("serial") is None, -_expected_s(i, measured)))


def _reports(config: pytest.Config) -> tuple[RunRecord, list[Any]] | None:
    run = config.stash.get(RUN, None)
    if run is None or not (run.scenarios or run.stack or run.error):
        return None  # a run that never touched the stack writes no report
    return run, config.stash[WRITERS]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    run.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    run.finished_at = run.finished_at or now_iso()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller reports
        workeroutput["fulsk_chaos_stack"] = {k: v for k, v in run.stack.items() if k != "services"} or None
        workeroutput["fulsk_chaos_error"] = run.error
        return
    rows = [r for s in run.scenarios if (f := s.figures.get(BlindSpotFigures)) for r in f.blind_spots]
    if rows:  # the run's runbook coverage, from every scenario's blind-spot table and incident replay
        rules_text = rules_template(session.config.stash[SETTINGS].monitoring.rules, FIXTURES).read_text()
        incidents = [(f.incident_alert, bool(f.incident_in_time)) for s in run.scenarios
                     if (f := s.figures.get(IncidentFigures))]
        run.monitoring = blindspots.coverage(rules_text, rows, FIXTURES.parent, incidents)
        try:
            found = replay.links(alert_rules(rules_text), FIXTURES.parent)
            run.monitoring["runbooks_no_alert_links"] = replay.unlinked(found, runbooks.load_all())
            run.monitoring["linked_not_replayable"] = sorted(f"{link.rule.alert}: {link.why_not}" for link in found
                                                             if link.rule.runbook_url and not link.replayable)
        except RunbookError as exc:  # a broken runbook file is its own drill's failure; coverage says so
            run.monitoring["runbooks_no_alert_links"] = [f"(not known: {exc})"]
    if reports := _reports(session.config):
        for writer in reports[1]:
            writer.run_finished(run)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    config.stash.get(PROGRESS, quiet()).end()
    if reports := _reports(config):
        run = reports[0]
        terminalreporter.section("fulsk-chaos")
        TerminalSummary(terminalreporter.write_line).run_finished(run)
        for scenario in run.scenarios:
            if scenario.timeline:
                terminalreporter.write_line(f"{scenario.name}: {scenario.status} - timeline (seconds from the trigger)")
                for line in timeline_text(scenario.timeline):
                    terminalreporter.write_line(line)
        terminalreporter.write_line(f"results: {run.dir / 'results.json'}")


# --- a scenario's verdict ------------------------------------------------------------------------
def _hypothesis(item: pytest.Item) -> str:
    """The paragraph of the test's (or its module's) docstring that states the hypothesis."""
    function, module = getattr(item, "function", None), getattr(item, "module", None)
    for doc in (getattr(function, "__doc__", None), getattr(module, "__doc__", None)):
        if not doc:
            continue
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
        for paragraph in paragraphs:
            label, _, text = paragraph.partition(":")
            if label.lower() in ("hypothesis", "steady-state hypothesis") and text:
                return text.strip()
        return paragraphs[0]
    return ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("scenario") and RECORD not in item.stash:
        run = item.config.stash[RUN]
        record = ScenarioRecord(item.name.removeprefix("test_"), item.nodeid, hypothesis=_hypothesis(item),
                                progress=item.config.stash.get(PROGRESS, quiet()))
        item.stash[RECORD] = record
        run.scenarios.append(record)
        for writer in item.config.stash[WRITERS]:
            writer.scenario_started(run, record)  # written ahead: a run that dies leaves "interrupted"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    record = item.stash.get(RECORD, None)
    if record is None:
        return report
    try:
        return _scenario_report(item, call, report, record)
    finally:
        if worker_id(item.config):  # to the controller, which writes the report (see pytest_runtest_logreport)
            report.fulsk_scenario = record.to_json()


def _scenario_report(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport,
                     record: ScenarioRecord) -> pytest.TestReport:
    if call.when == "setup" and report.failed:
        record.conclude(Verdict("error", f"setup failed: {_exception_line(call)}", record.hypothesis))
    elif call.when == "setup" and report.skipped:
        record.conclude(Verdict("skipped", _skip_reason(report), record.hypothesis))
    elif call.when == "call":
        _judge_call(record, call, report)
    elif call.when == "teardown":
        if report.failed and record.status in ("pass", "skipped"):
            record.conclude(Verdict("error", f"teardown failed: {_exception_line(call)}", record.hypothesis,
                                    tuple(record.expectations), tuple(record.evidence)))
        # for users' own --junitxml: the verdict and measurements as properties
        data = record.to_json()
        report.user_properties.extend([("verdict", data["verdict"]), *data["measurements"].items()])
        run = item.config.stash[RUN]
        for writer in item.config.stash[WRITERS]:
            writer.scenario_finished(run, record)
    return report


def _judge_call(record: ScenarioRecord, call: pytest.CallInfo, report: pytest.TestReport) -> None:
    exc = call.excinfo
    if exc is None:
        verdict = record.verdict or Verdict(
            "error", "the scenario ended without a verdict: judge it with experiment.verdict()", record.hypothesis,
            tuple(record.expectations), tuple(record.evidence))
    elif exc.errisinstance(VerdictReached):
        verdict = exc.value.verdict
    elif exc.errisinstance(pytest.skip.Exception):
        verdict = Verdict("skipped", _skip_reason(report), record.hypothesis)
    else:  # the stack or the framework broke: the hypothesis was not judged
        verdict = Verdict("error", _exception_line(call), record.hypothesis, tuple(record.expectations),
                          tuple(record.evidence))
    record.conclude(verdict)
    if verdict.status in ("fail", "error", "invalid"):
        report.outcome = "failed"
        if exc is None or exc.errisinstance(VerdictReached):
            report.longrepr = _verdict_text(verdict)


def _verdict_text(verdict: Verdict) -> str:
    lines = [f"{verdict.status.upper()}: {verdict.reason}", ""]
    if verdict.hypothesis:
        lines += [f"hypothesis: {verdict.hypothesis}", ""]
    lines += [f"  {e.describe()}" for e in verdict.expectations]
    lines += [f"  evidence {e.describe()}{'' if e.enough else '  TOO LITTLE'}" for e in verdict.evidence]
    return "\n".join(lines)


def _exception_line(call: pytest.CallInfo) -> str:
    exc = call.excinfo
    if exc is None:
        return "unknown"
    message = str(exc.value).strip().splitlines()
    return f"{exc.typename}: {message[0] if message else ''}"[:1000]


def _skip_reason(report: pytest.TestReport) -> str:
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chaos_settings(pytestconfig: pytest.Config) -> settings_module.Settings:
    """The fulsk-chaos settings in force for this run."""
    return pytestconfig.stash[SETTINGS]


@pytest.fixture(scope="session")
def chaos_run(pytestconfig: pytest.Config) -> RunRecord:
    """This run's record: what results.json is written from."""
    return pytestconfig.stash[RUN]


@dataclass
class _StackFailure:
    cause: str
    reported: bool = False


@pytest.fixture(scope="session")
def _chaos_stack(request: pytest.FixtureRequest, chaos_settings: settings_module.Settings,
                 chaos_run: RunRecord) -> Iterator[Stack | _StackFailure]:
    """The one stack of the session, or why it did not start (said once, not per test)."""
    the_stack: Stack | None = None
    try:
        the_stack = Stack(chaos_settings, chaos_run.provider, logs_to=chaos_run.dir / "logs" / (chaos_run.worker or ""))
        progress = request.config.stash.get(PROGRESS, quiet())
        progress.phase(f"stack starting ({chaos_run.provider})")
        progress.phase(f"stack ready in {the_stack.start():.1f} s")
    except Exception as exc:  # noqa: BLE001 - whatever it was, no test can use the stack
        chaos_run.error = f"the stack did not start: {exc}"
        if the_stack is not None:
            try:
                the_stack.stop()
            except Exception:  # noqa: BLE001 - the reaper takes whatever is left
                pass
        yield _StackFailure(str(exc))
        return
    except BaseException:
        the_stack.stop()
        raise
    try:
        chaos_run.dir.mkdir(parents=True, exist_ok=True)
        the_stack.write_state(chaos_run.dir / f"{chaos_run.own('stack')}.json")
        chaos_run.stack["start_to_healthy_s"] = the_stack.timings.start_to_healthy_s
        # which backend was judged, by its contract (the figures are its)
        chaos_run.stack["backend"] = {"name": the_stack.contract.name,
                                      "contract": the_stack.settings.backend.contract or str(contract_module.REFERENCE)}
        chaos_run.stack["services"] = {
            name: {k: v for k, v in service.describe().items() if k in ("image", "image_id", "command", "port")}
            for name, service in the_stack.services.items()}
        yield the_stack
    finally:
        chaos_run.stack["teardown_s"] = the_stack.stop()


def _own_stack(item: pytest.Item) -> dict[str, Any] | None:
    """The stack settings of a test that needs a stack of its own (``@pytest.mark.stack(...)``)."""
    marker = item.get_closest_marker("stack")
    return dict(marker.kwargs) if marker is not None else None


@pytest.fixture
def stack(request: pytest.FixtureRequest, chaos_settings: settings_module.Settings,
          chaos_run: RunRecord) -> Iterator[Stack]:
    """The stack under test, healthy; shared by the session and healed after every test that used it.
    A test marked ``stack(**settings)`` gets a stack of its own with those stack settings (e.g.
    ``standby=True``), started for it and removed after it (what it changes is never healed)."""
    own = _own_stack(request.node)
    if own is None:
        shared = request.getfixturevalue("_chaos_stack")
        if isinstance(shared, _StackFailure):
            first, shared.reported = not shared.reported, True
            pytest.fail(f"the stack did not start: {shared.cause}" if first else
                        "the stack did not start (the cause is shown once, at the first test that needed it)",
                        pytrace=False)
        yield shared
        return
    try:
        settings = replace(chaos_settings, stack=replace(chaos_settings.stack, **own))
    except TypeError as exc:
        pytest.fail(f"@pytest.mark.stack: {exc}", pytrace=False)
    dedicated = Stack(settings, chaos_run.provider, logs_to=chaos_run.dir / "logs" / request.node.name)
    progress = request.config.stash.get(PROGRESS, quiet())
    try:
        progress.phase(f"{request.node.name}: a stack of its own starting ({own})")
        progress.phase(f"{request.node.name}: its stack ready in {dedicated.start():.1f} s")
    except Exception as exc:  # noqa: BLE001 - said as the test's failure, after removing what started
        dedicated.stop()
        pytest.fail(f"the test's own stack ({own}) did not start: {exc}", pytrace=False)
    try:
        yield dedicated
    finally:
        dedicated.stop()


@pytest.fixture(autouse=True)
def _steady_between_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Return a shared stack to a clean steady state after each test that used it."""
    yield
    if "stack" in request.fixturenames and _own_stack(request.node) is None:
        the_stack = request.getfixturevalue("_chaos_stack")
        if isinstance(the_stack, Stack):
            the_stack.heal()


@pytest.fixture
def journal(request: pytest.FixtureRequest) -> ScenarioRecord:
    """This scenario's entry in results.json (a record of its own for a test not marked scenario)."""
    return request.node.stash.get(RECORD, None) or ScenarioRecord(request.node.name, request.node.nodeid)


@pytest.fixture
def faults(stack: Stack, journal: ScenarioRecord) -> Iterator[FaultInjector]:
    """Injects faults from the catalogue; every fault still active at the end is rolled back."""
    injector = FaultInjector(stack, journal.faults)
    yield injector
    errors = injector.rollback_all()
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture
def fleet(request: pytest.FixtureRequest, stack: Stack, chaos_settings: settings_module.Settings) -> Iterator[Fleet]:
    """Simulated inverters publishing through the inverters→mqtt edge; not started until asked."""
    the_fleet = make_fleet(stack, chaos_settings, _observers_bound_s(request.config))
    yield the_fleet
    the_fleet.stop(settle_s=0)


@pytest.fixture
def probe(request: pytest.FixtureRequest, stack: Stack, chaos_settings: settings_module.Settings,
          fleet: Fleet) -> Iterator[Probe]:
    """Samples /health, the API and the fleet's latest readings through the frontend; not started until asked."""
    the_probe = make_probe(stack, chaos_settings, fleet, _observers_bound_s(request.config))
    yield the_probe
    the_probe.stop()


@pytest.fixture
def live_feed(request: pytest.FixtureRequest, stack: Stack) -> Iterator[LiveFeed]:
    """A dashboard's WebSocket client through the frontend; not started until asked."""
    feed = make_feed(stack, _observers_bound_s(request.config))
    yield feed
    feed.stop()


def _observers_bound_s(config: pytest.Config) -> float:
    return bound_s(config.getoption("--schedule-budget", None))


@pytest.fixture
def schedule_options(request: pytest.FixtureRequest, chaos_settings: settings_module.Settings) -> ScheduleOptions:
    """How this run searches fault schedules (profile, seed) or which one it replays."""
    import random
    config = request.config
    name = config.getoption("--schedule-profile")
    if name not in chaos_settings.schedules:
        pytest.fail(f"--schedule-profile {name}: no such profile (known: {', '.join(chaos_settings.schedules)})",
                    pytrace=False)
    seed = config.getoption("--schedule-seed")
    command = ["python", "-m", "pytest", request.node.nodeid, "--stack", config.getoption("--stack"),
               "--schedule-profile", name]
    if config.getoption("--chaos-config"):
        command += ["--chaos-config", str(Path(config.getoption("--chaos-config")).resolve())]
    backend = chaos_settings.backend
    origin = {"provider": config.getoption("--stack"),
              "backend": {"contract": backend.contract, "command": list(backend.command), "env": dict(backend.env)}}
    return ScheduleOptions(name, chaos_settings.schedules[name], seed if seed is not None else random.randrange(2 ** 32),
                           config.getoption("--schedule-replay"), command, budget_s=config.getoption("--schedule-budget"),
                           corpus_dir=Path(config.getoption("--report-dir")).resolve() / "corpus", origin=origin)


@dataclass(frozen=True)
class LoadOptions:
    """How this run loads the stack: from the command line, defaulting to [tool.fulsk-chaos.load]."""
    profile_name: str | None
    duration_s: float | None
    step_s: float | None
    workers: int
    update_baseline: bool
    baseline_dir: Path
    under_load: str | None  # chaos under load: the background profile; None: no background load
    under_fault: FaultSpec | None = None  # capacity under fault: the fault the stress search also runs under

    def profile(self, default: str) -> LoadProfile:
        profile = load_profile(self.profile_name or default)
        if self.duration_s is not None:
            profile = profile.with_(duration_s=self.duration_s)
        if self.step_s is not None:
            profile = profile.with_(api__step_s=self.step_s)
        return profile


@pytest.fixture(scope="session")
def load_options(pytestconfig: pytest.Config, chaos_settings: settings_module.Settings) -> LoadOptions:
    """The load options in force (--load-profile, --duration, --workers, --update-baseline, --under-load,
    --under-fault)."""
    get, load = pytestconfig.getoption, chaos_settings.load
    try:
        duration = parse_duration(get("--duration")) if get("--duration") else None
        step = parse_duration(get("--step-duration")) if get("--step-duration") else None
        fault = FaultSpec.parse(get("--under-fault")) if get("--under-fault") else None
    except (ConfigError, FaultError) as exc:
        raise pytest.UsageError(f"fulsk-chaos: {exc}") from None
    under = get("--under-load")
    baseline_dir = get("--baseline-dir") or Path(load.baseline_dir)
    return LoadOptions(get("--load-profile"), duration, step, get("--workers") or load.workers,
                       get("--update-baseline"), baseline_dir if baseline_dir.is_absolute()
                       else pytestconfig.rootpath / baseline_dir,
                       None if under is None else (under or load.chaos_profile), fault)


def _load_dir(run: RunRecord, request: pytest.FixtureRequest) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
    return run.dir / "load" / name


@pytest.fixture
def background_load(request: pytest.FixtureRequest, stack: Stack, load_options: LoadOptions,
                    chaos_run: RunRecord) -> Iterator[LoadTest | None]:
    """Chaos under load (--under-load): Locust load through the whole scenario; None without it."""
    if load_options.under_load is None:
        yield None
        return
    try:
        profile = load_profile(load_options.under_load)
    except ConfigError as exc:
        pytest.fail(f"--under-load: {exc}", pytrace=False)
    load = LoadTest(stack, profile, _load_dir(chaos_run, request), workers=load_options.workers,
                    run_s=profile.duration_s)
    yield load
    load.stop()


@pytest.fixture
def load_drill(request: pytest.FixtureRequest, journal: ScenarioRecord, stack: Stack,
                  chaos_settings: settings_module.Settings, load_options: LoadOptions,
                  chaos_run: RunRecord) -> Iterator[LoadDrill]:
    """A load test of the profile named by --load-profile, else by the scenario's ``load`` marker
    (``kind="steady"``: the weekly profile; ``kind="stress"``: the stress ramp)."""
    marker = request.node.get_closest_marker("load")
    kind = (marker.kwargs.get("kind") if marker else None) or "steady"
    default = chaos_settings.load.stress_profile if kind == "stress" else chaos_settings.load.profile
    try:
        profile = load_options.profile(default)
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)
    # a stress search runs as long as its bisection needs: the bound is Locust's own --run-time
    run_s = knee.run_bound_s(profile, chaos_settings.load.knee_resolution) if profile.stepped else None
    load = LoadTest(stack, profile, _load_dir(chaos_run, request), workers=load_options.workers, run_s=run_s)
    store = BaselineStore(load_options.baseline_dir, profile.name, chaos_run.provider, stack.contract.name)
    yield LoadDrill(stack, chaos_settings, journal, load, store=store,
                       accept_baseline=load_options.update_baseline, run_id=chaos_run.run_id)
    load.stop()


@pytest.fixture
def under_fault(load_options: LoadOptions, faults: FaultInjector, chaos_run: RunRecord) -> UnderFault:
    """The fault --under-fault names, for a stress search to run under, with the capacity of this
    run's healthy search (the scenario that measured one, if any) to compare with. A test that
    asks for it runs only with --under-fault."""
    assert load_options.under_fault is not None, "deselected without --under-fault"
    searched = [(s, f) for s in reversed(chaos_run.scenarios) if (f := s.figure(StressFigures)) is not None]
    healthy = next(({"capacity_rps": f.capacity_rps, "capacity_bracket_rps": f.capacity_bracket_rps,
                     "source": f"this run's healthy search ({s.name}, verdict {s.status})"}
                    for s, f in searched if f.capacity_rps is not None and f.under_fault is None), None)
    return UnderFault(load_options.under_fault, faults, healthy)


@pytest.fixture
def experiment(request: pytest.FixtureRequest, journal: ScenarioRecord, stack: Stack,
               chaos_settings: settings_module.Settings, faults: FaultInjector, fleet: Fleet, probe: Probe,
               live_feed: LiveFeed, background_load: LoadTest | None) -> Experiment:
    """The scenario's experiment: instruments, fault injector and journal, judged into its verdict;
    the least evidence it needs comes from the scenario's ``evidence`` marker."""
    minimums: dict[str, Any] = {}
    callspec = getattr(request.node, "callspec", None)
    by_parameter = [m for m in (callspec.marks if callspec else []) if m.name == "evidence"]
    for marker in [*reversed(list(request.node.iter_markers("evidence"))), *by_parameter]:
        minimums.update(marker.kwargs)  # module, then function, then pytest.param: the closest wins
    try:
        needs = Needs(**minimums)
    except TypeError as exc:
        pytest.fail(f"@pytest.mark.evidence: {exc} (known: {', '.join(Needs.__dataclass_fields__)})", pytrace=False)
    return Experiment(stack, chaos_settings, journal, fleet=fleet, probe=probe, feed=live_feed, faults=faults,
                      needs=needs, load=background_load)


@pytest.fixture
def runbook_drill(request: pytest.FixtureRequest, experiment: Experiment, chaos_run: RunRecord) -> RunbookDrill:
    """Runs a runbook of the ops guide against the scenario's stack: its trigger, its steps as
    documented, the time to recover and the drift, measured into the experiment's journal."""
    return RunbookDrill(experiment, load_dir=_load_dir(chaos_run, request))


@pytest.fixture
def incident_replay(request: pytest.FixtureRequest, experiment: Experiment, chaos_run: RunRecord) -> IncidentReplay:
    """Replays an alert's incident on the scenario's stack: the fault, the page, the runbook the
    page links, users back and the alert resolved, each timed against its severity's target."""
    return IncidentReplay(experiment, load_dir=_load_dir(chaos_run, request))


@pytest.fixture
def restore_drill(experiment: Experiment) -> RestoreDrill:
    """The ops guide's backup tools (backup.sh, disaster-recovery.sh) against the scenario's stack,
    measured into the experiment's journal (RTO, RPO, what users are served after a restore)."""
    return RestoreDrill(experiment)

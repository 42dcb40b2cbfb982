"""The pytest plugin: options, markers and fixtures over the library. It owns lifecycles only."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from . import config as chaos_config_module
from .config import Config, ConfigError
from .faults import Faults
from .probes import Fleet, Probe
from .report import RunJournal, ScenarioResult
from .report.journal import new_run_id
from .stack import PROVIDERS, Stack

JOURNAL = pytest.StashKey[RunJournal]()
CONFIG = pytest.StashKey[Config]()
RESULT = pytest.StashKey[ScenarioResult]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fulsk-chaos")
    group.addoption("--stack", default=os.environ.get("FULSK_CHAOS_STACK", "local"), choices=["local", "docker"],
                    help="where the stack under test runs: local processes (default) or docker")
    group.addoption("--report-dir", default="reports", type=Path,
                    help="results go to REPORT_DIR/<run-id>/ (results.json, junit.xml, logs)")
    group.addoption("--chaos-config", default=None, type=Path,
                    help="a TOML file of fulsk-chaos settings (default: [tool.fulsk-chaos] in pyproject.toml)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario: a chaos scenario, journaled into results.json")
    try:
        chaos = chaos_config_module.load(config.getoption("--chaos-config"), search_from=config.rootpath)
    except ConfigError as exc:
        raise pytest.UsageError(f"fulsk-chaos configuration: {exc}") from None
    provider = config.getoption("--stack")
    journal = RunJournal(new_run_id(), provider, Path(config.getoption("--report-dir")).resolve(),
                         chaos_config_module.as_dict(chaos))
    config.stash[CONFIG] = chaos
    config.stash[JOURNAL] = journal
    if not config.option.xmlpath:  # tryfirst: before the junitxml plugin reads it
        config.option.xmlpath = str(journal.dir / "junit.xml")


def pytest_sessionfinish(session: pytest.Session) -> None:
    journal = session.config.stash.get(JOURNAL, None)
    if journal is not None and (journal.scenarios or journal.stack):
        journal.write()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    journal = config.stash.get(JOURNAL, None)
    if journal is None or not (journal.scenarios or journal.stack):
        return
    terminalreporter.section("fulsk-chaos")
    for line in journal.summary():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"results: {journal.dir / 'results.json'}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    result = item.stash.get(RESULT, None)
    if result is not None and report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
        result.fail(message if report.when == "call" else f"{report.when}: {message}")
    if result is not None and report.when == "teardown":  # JUnit XML takes a test's properties from here
        report.user_properties.extend(result.to_json()["measurements"].items())
        report.user_properties.append(("verdict", result.verdict))
    return report


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chaos_config(pytestconfig: pytest.Config) -> Config:
    """The fulsk-chaos configuration in force for this run."""
    return pytestconfig.stash[CONFIG]


@pytest.fixture(scope="session")
def chaos_run(pytestconfig: pytest.Config) -> RunJournal:
    return pytestconfig.stash[JOURNAL]


@pytest.fixture(scope="session")
def stack(chaos_config: Config, chaos_run: RunJournal) -> Iterator[Stack]:
    """The stack under test, healthy; shared by the session and healed after every scenario."""
    if chaos_run.provider not in PROVIDERS:
        pytest.fail(f"--stack {chaos_run.provider}: this provider is not implemented yet; use --stack local",
                    pytrace=False)
    chaos_run.dir.mkdir(parents=True, exist_ok=True)
    the_stack = Stack(chaos_config, chaos_run.provider, logs_to=chaos_run.dir / "logs")
    try:
        the_stack.start()
        the_stack.write_state(chaos_run.dir / "stack.json")
        chaos_run.stack["start_to_healthy_s"] = the_stack.timings["start_to_healthy_s"]
        chaos_run.stack["services"] = {
            name: {k: v for k, v in service.describe().items() if k in ("image", "image_id", "command", "port")}
            for name, service in the_stack.services.items()}
        yield the_stack
    finally:
        chaos_run.stack["teardown_s"] = the_stack.stop()


@pytest.fixture(autouse=True)
def _steady_between_scenarios(request: pytest.FixtureRequest) -> Iterator[None]:
    """Return a shared stack to a clean steady state after each test that used it."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").heal()


@pytest.fixture
def journal(request: pytest.FixtureRequest, chaos_run: RunJournal) -> ScenarioResult:
    """This scenario's entry in results.json: its verdict, faults and measurements."""
    name = request.node.name.removeprefix("test_")
    result = ScenarioResult(name=name, nodeid=request.node.nodeid)
    chaos_run.scenarios.append(result)
    request.node.stash[RESULT] = result
    return result


@pytest.fixture
def faults(stack: Stack, journal: ScenarioResult) -> Iterator[Faults]:
    """Injects faults into the stack; every fault still active at the end is rolled back."""
    injector = Faults(stack, journal.faults)
    yield injector
    errors = injector.rollback_all()
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture
def fleet(stack: Stack, chaos_config: Config, journal: ScenarioResult) -> Iterator[Fleet]:
    """Simulated inverters publishing through the inverters→mqtt edge; not started until asked."""
    endpoints = stack.endpoints
    cfg = chaos_config.fleet
    the_fleet = Fleet(endpoints.mqtt_host, endpoints.mqtt_port, inverters=cfg.inverters, sites=cfg.sites,
                      interval_s=cfg.interval_s)
    yield the_fleet
    the_fleet.stop(settle_s=0)


@pytest.fixture
def probe(stack: Stack, chaos_config: Config) -> Iterator[Probe]:
    """Samples /health and the API through the frontend; not started until asked."""
    cfg = chaos_config.probe
    the_probe = Probe(stack.endpoints.frontend_url, api_path=cfg.api_path, interval_s=cfg.interval_s,
                      timeout_s=cfg.timeout_s)
    yield the_probe
    the_probe.stop()

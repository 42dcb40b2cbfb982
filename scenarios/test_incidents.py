"""Incident replay: each alert rule that links a runbook, from the fault that must raise it to the
alert resolved (fulsk_chaos.runbooks.replay).

Hypothesis: the fault pages the alert at its severity; the page's runbook_url leads to a runbook
whose steps, run as documented, name the cause and bring users back (fresh, correct data, nothing
acknowledged lost or stored twice), and the alert resolves; time to detect, diagnose, recover and
resolve each within the target of the alert's severity (``incident.targets``).

Method: the runbook's trigger case that lists the alert under ``pages:``; when the page arrives,
the runbook. Rollback: the trigger's fault is rolled back after the alert resolved (a no-op once
the runbook fixed it); the stack is healed after each scenario. Needs a monitored stack:
``nox -s incident`` (or ``--monitoring``); without one, each replay is skipped but CI's quick one,
which starts a monitored stack of its own.
"""
from __future__ import annotations

import pytest

from fulsk_chaos.plugin import SETTINGS
from fulsk_chaos.runbooks import replay
from fulsk_chaos.services import FIXTURES
from fulsk_chaos.services.prometheus import alert_rules, rules_template

pytestmark = [pytest.mark.scenario, pytest.mark.incident]
# CI replays this one on every provider and backend: the page of a hung backend, through the runbook
QUICK = {"FulskBackendDown"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One replay per alert rule of the run's rules template that links a runbook (monitoring.rules)."""
    if "link" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[SETTINGS]
    rules = alert_rules(rules_template(settings.monitoring.rules, FIXTURES).read_text())
    linked = [link for link in replay.links(rules, FIXTURES.parent) if link.runbook is not None]
    monitored = settings.stack.monitoring
    unmonitored = pytest.mark.skip(reason="an incident starts from a page: run on a monitored stack "
                                          "(nox -s incident, or --monitoring)")

    def marks(link: replay.Link) -> list[pytest.MarkDecorator]:
        stack = dict(link.runbook.stack or {})
        if link.rule.alert in QUICK:  # CI's: on a monitored stack of its own where the run has none
            found = [pytest.mark.quick, pytest.mark.provider]
            stack |= {} if monitored else {"monitoring": True}
        else:
            found = [] if monitored else [unmonitored]
        return [*found, *([pytest.mark.stack(**stack)] if stack or link.runbook.stack is not None else []),
                *([pytest.mark.needs(*link.runbook.needs)] if link.runbook.needs else [])]
    metafunc.parametrize("link", [pytest.param(link, id=link.rule.alert, marks=marks(link)) for link in linked])


def test_incident(link, experiment, incident_replay):
    if not link.replayable:
        pytest.fail(f"{link.rule.alert} links {link.rule.runbook_url} but cannot be replayed: {link.why_not}",
                    pytrace=False)
    experiment.record.hypothesis = replay.hypothesis(link)
    with experiment:
        experiment.steady_state("before")
        incident_replay.replay(link)
        experiment.steady_state("after")
    experiment.verdict()

"""The plugin records each scenario's verdict object (results.json, junit.xml, the terminal) and
fails the test from it; nothing is read back from assertion text."""
from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest

SCENARIOS = '''
import pytest
from fulsk_chaos.verdict import Evidence, VerdictReached, judge, none_of


def conclude(journal):
    journal.conclude(judge(journal.hypothesis, journal.expectations, journal.evidence))


@pytest.mark.scenario
def test_holds(journal):
    """Hypothesis: nothing acknowledged is lost."""
    journal.expect([none_of("lost", 0)], [Evidence("acked", 5, 1)])
    conclude(journal)


@pytest.mark.scenario
def test_loses(journal):
    journal.expect([none_of("lost", 2, detail="a#1, a#2")], [Evidence("acked", 5, 1)])
    journal.measure(lost=2, acked=5)
    conclude(journal)


@pytest.mark.scenario
def test_without_evidence(journal):
    journal.expect([none_of("lost", 0)], [Evidence("acked", 0, 10)])
    conclude(journal)


@pytest.mark.scenario
def test_forgets_its_verdict(journal):
    journal.expect([none_of("lost", 0)])


@pytest.mark.scenario
def test_breaks(journal):
    raise RuntimeError("the probe fell over")


@pytest.mark.scenario
def test_stops_early(journal):
    raise VerdictReached(judge("steady", [none_of("unanswered", 1)]))


@pytest.mark.scenario
def test_skips(journal):
    pytest.skip("not on this provider")


def test_not_a_scenario():
    pass
'''


def results(pytester: pytest.Pytester) -> dict:
    (path,) = pytester.path.joinpath("reports").glob("*/results.json")
    return json.loads(path.read_text())


def test_each_scenario_is_recorded_with_the_verdict_it_reached(pytester: pytest.Pytester):
    pytester.makepyfile(test_scenarios=SCENARIOS)
    run = pytester.runpytest_subprocess("--report-dir", "reports", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=2, failed=5, skipped=1)
    data = results(pytester)
    verdicts = {s["name"]: (s["verdict"], s["reason"]) for s in data["scenarios"]}
    assert verdicts == {
        "holds": ("pass", None),
        "loses": ("fail", "lost = 2 (must be exactly 0) VIOLATED: a#1, a#2"),
        "without_evidence": ("error", "not enough evidence (acked: 0 (needs at least 10))"),
        "forgets_its_verdict": ("error", "the scenario ended without a verdict: judge it with experiment.verdict()"),
        "breaks": ("error", "RuntimeError: the probe fell over"),
        "stops_early": ("fail", "unanswered = 1 (must be exactly 0) VIOLATED"),
        "skips": ("skipped", "Skipped: not on this provider"),
    }
    assert data["verdict"] == "fail"  # a finding outranks the errors
    holds = next(s for s in data["scenarios"] if s["name"] == "holds")
    assert holds["hypothesis"] == "nothing acknowledged is lost."
    assert holds["expectations"] == [{"name": "lost", "measured": 0, "op": "==", "threshold": 0, "unit": "",
                                      "held": True, "evidence": {}, "detail": ""}]
    # The test fails from the verdict, shown as its expectations, not as a traceback.
    loses_section = run.stdout.str().split(" test_loses ")[1].split(" test_without_evidence ")[0]
    assert "FAIL: lost = 2 (must be exactly 0) VIOLATED: a#1, a#2" in loses_section
    assert "conclude(journal)" not in loses_section and "Error" not in loses_section

    junit = ElementTree.parse(next(pytester.path.joinpath("reports").glob("*/junit.xml"))).getroot()
    suite = junit.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("7", "2", "3", "1")
    loses = next(c for c in suite.iter("testcase") if c.get("name") == "test_loses")
    assert loses.find("failure").get("message").startswith("lost = 2")
    assert {p.get("name"): p.get("value") for p in loses.iter("property")} == {"verdict": "fail", "lost": "2",
                                                                             "acked": "5"}


def test_a_run_interrupted_by_ctrl_c_records_its_scenario_as_interrupted(pytester: pytest.Pytester):
    pytester.makepyfile(test_interrupted='''
import pytest
from fulsk_chaos.verdict import none_of

@pytest.mark.scenario
def test_first(journal):
    journal.expect([none_of("lost", 0)])
    raise KeyboardInterrupt  # what Ctrl-C does in the middle of a scenario

@pytest.mark.scenario
def test_never_started(journal):
    pass
''')
    pytester.runpytest_subprocess("--report-dir", "reports", "-p", "no:cacheprovider")
    data = results(pytester)
    (scenario,) = data["scenarios"]
    assert data["verdict"] == "interrupted"
    assert scenario["verdict"] == "interrupted" and "before this scenario reached its verdict" in scenario["reason"]
    assert scenario["expectations"][0]["name"] == "lost"  # what it had judged so far is kept


def test_plugins_add_fields_and_writers_through_hooks(pytester: pytest.Pytester):
    pytester.makeconftest('''
class EventLog:
    def __init__(self, path):
        self.path = path
    def scenario_started(self, run, scenario):
        self.path.open("a").write(f"started {scenario.name}\\n")
    def scenario_finished(self, run, scenario):
        self.path.open("a").write(f"finished {scenario.name} {scenario.status}\\n")
    def run_finished(self, run):
        self.path.open("a").write(f"run {run.verdict}\\n")

def pytest_fulsk_chaos_update_json(config, output_json):
    output_json["build"] = "ci-1234"

def pytest_fulsk_chaos_report_writers(config):
    return [EventLog(config.rootpath / "events.log")]
''')
    pytester.makepyfile(test_one='''
import pytest
from fulsk_chaos.verdict import Evidence, judge, none_of

@pytest.mark.scenario
def test_holds(journal):
    journal.expect([none_of("lost", 0)], [Evidence("acked", 1, 1)])
    journal.conclude(judge("", journal.expectations, journal.evidence))
''')
    pytester.runpytest_subprocess("--report-dir", "reports", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert results(pytester)["build"] == "ci-1234"
    assert pytester.path.joinpath("events.log").read_text().splitlines() == [
        "started holds", "finished holds pass", "run pass"]


def test_a_stack_that_does_not_start_is_reported_once_with_its_cause(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile(test_needs_stack='''
import pytest

@pytest.mark.scenario
def test_first(stack):
    pass

@pytest.mark.scenario
def test_second(stack):
    pass

def test_plain(stack):
    pass
''')
    run = pytester.runpytest_subprocess("--stack", "docker", "--report-dir", "reports", "-p", "no:cacheprovider")
    run.assert_outcomes(errors=3)
    data = results(pytester)
    assert data["verdict"] == "error"
    assert data["error"].startswith("the stack did not start: no Docker engine answers")
    first, second = data["scenarios"]
    assert first["verdict"] == second["verdict"] == "error"
    assert "no Docker engine answers" in first["reason"]
    assert "no Docker engine answers" not in second["reason"] and "shown once" in second["reason"]
    output = run.stdout.str()
    assert "Traceback" not in output and "def _chaos_stack" not in output

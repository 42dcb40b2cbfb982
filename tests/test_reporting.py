"""The plugin records each scenario's verdict object (results.json, junit.xml, the terminal) and
fails the test from it; nothing is read back from assertion text."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest

SCENARIOS = '''
import pytest
from fulsk_chaos.figures import LedgerFigures
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
    journal.measure(LedgerFigures(sent=5, acked=5, stored=3, lost=2, unexpected=0, duplicates=0, altered=0,
                                  unacked_stored=0))
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
    properties = {p.get("name"): p.get("value") for p in loses.iter("property")}
    assert properties["verdict"] == "fail" and properties["lost"] == "2" and properties["acked"] == "5"


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


# --- the HTML report, in a browser ----------------------------------------------------------------
class _Sections(HTMLParser):
    """Per scenario section of index.html: its verdict attribute, badge text, and SVG elements drawn."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict] = []
        self.summary_rows = 0
        self._in_summary = self._in_badge = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "summary":
            self._in_summary = True
        elif tag == "tr" and self._in_summary:
            self.summary_rows += 1
        elif tag == "section" and "scenario" in (a.get("class") or ""):
            self.sections.append({"verdict": a.get("data-verdict"), "badge": "", "svg": 0, "lines": 0})
        elif self.sections and tag == "svg":
            self.sections[-1]["svg"] += 1
        elif self.sections and tag == "path":
            self.sections[-1]["lines"] += 1
        elif tag == "span" and "verdict" in (a.get("class") or "") and self.sections:
            self._in_badge = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_summary = False
        if tag == "span":
            self._in_badge = False

    def handle_data(self, data):
        if self._in_badge and self.sections and not self.sections[-1]["badge"]:
            self.sections[-1]["badge"] = data.strip()


def test_a_monitored_drills_report_alerts_and_journals(run_scenario):
    """db_loss on a monitored stack: PostgresDown pages the guide's critical channels and resolves,
    its symptoms held back, the times in results.json; index.html, opened from disk by headless Chromium (what a browser
    builds of it, not the file's text), has each scenario's section, verdict and timeline chart;
    each journal is one Chaos Toolkit's own code accepts."""
    run = run_scenario("scenarios/test_db_loss.py -k kill --monitoring", timeout_s=300, html=True)
    for scenario in run.results["scenarios"]:
        alerts = scenario["measurements"]["alerts"]
        assert set(alerts) == {"PostgresDown"}, run.output[-2000:]  # its symptoms inhibited (judged, not paged)
        assert alerts["PostgresDown"]["channels"] == ["pagerduty", "phone"]  # critical, as the guide escalates
        for name, times in alerts.items():
            assert times["fired_after_s"] is not None and times["resolved_after_recovery_s"] is not None, (name, times)
            assert times["fired_at"] < times["resolved_at"]
        held = {e["name"]: e["held"] for e in scenario["expectations"] if e["name"].startswith("alert ")}
        assert len(held) == 4 + 3 + 2 * 2 and all(held.values()), held  # fire, silent, inhibited
    index = run.report / "index.html"
    assert index.is_file(), run.output[-2000:]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium not found: bash scripts/bootstrap.sh installs Debian's chromium"
    dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          index.as_uri()], capture_output=True, text=True, timeout=120).stdout
    parsed = _Sections()
    parsed.feed(dom)
    scenarios = run.results["scenarios"]
    assert len(scenarios) == len(parsed.sections) == 1 and parsed.summary_rows == 1 + 1, dom[:500]
    for scenario, section in zip(scenarios, parsed.sections):
        assert section["verdict"] == scenario["verdict"] and section["badge"].lower() == scenario["verdict"]
        assert section["svg"] >= 1 and section["lines"] > 20, section  # a drawn chart: axes, series, shading
    # each scenario as a Chaos Toolkit journal: its experiment valid for chaoslib, and `chaos report`'s
    # own renderer reads the whole journal
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaosreport import generate_report
    journals = sorted((run.report / "journals").glob("*.json"))
    assert len(journals) == 1
    for path, scenario in zip(journals, sorted(scenarios, key=lambda s: s["name"])):
        journal = json.loads(path.read_text())
        ensure_experiment_is_valid(journal["experiment"])
        assert journal["status"] == {"pass": "completed", "fail": "failed"}.get(scenario["verdict"], "aborted")
        assert journal["deviated"] is (scenario["verdict"] == "fail")
        assert [a["name"] for a in journal["experiment"]["method"]] == [
            f"{f['kind']} {f['target']}" for f in scenario["faults"]]
        assert len(journal["steady_states"]["before"]["probes"]) == sum(
            e["name"].startswith("before") for e in scenario["expectations"])
        report = generate_report(journal, "markdown")
        assert scenario["name"] in report and "Steady State Hypothesis" in report
    # drawn again from results.json alone, the same report
    again = subprocess.run([sys.executable, "-m", "fulsk_chaos.cli", "report", str(run.report / "results.json")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and index.read_text().count("<section class=scenario") == 1


def test_trends_follow_each_scenario_across_the_runs_kept(tmp_path):
    """trends.html from the runs in a report directory: one section per scenario, its figures over
    time, its verdicts in order; a run still being written (unreadable) is left out."""
    from fulsk_chaos.report import trends
    for i, (recovery, verdict) in enumerate([(2.0, "pass"), (9.5, "fail"), (1.5, "pass")]):
        run = tmp_path / f"2026112{i}T000000Z-{i:04x}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps({
            "run_id": run.name, "started_at": f"2026-11-2{i}T00:00:00+00:00", "scenarios": [
                {"name": "db_loss[kill]", "verdict": verdict,
                 "measurements": {"recovery_s": recovery, "lost": i, "p95_ms": 900 + i}}]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{")
    kept = trends.history(tmp_path)
    assert [(e["recovery"], e["verdict"], e["lost"]) for e in kept["db_loss[kill]"]] == [
        (2.0, "pass", 0), (9.5, "fail", 1), (1.5, "pass", 2)]
    page = trends.write(tmp_path).read_text()
    assert page.count("<section class=scenario>") == 1 and page.count("<svg") == 1
    assert "recovery (s)" in page and "readings lost" in page and "capacity" not in page


def test_progress_is_a_line_per_phase_in_a_log_and_one_rewritten_line_on_a_terminal():
    from fulsk_chaos.report.progress import Progress
    now = [0.0]
    logged: list[str] = []
    log = Progress(logged.append, live=False, every_s=10, clock=lambda: now[0])
    log.phase("db_loss[kill]: fault injected: kill postgres")
    log.step("1/30 s")
    now[0] = 11
    log.step("11/30 s")
    log.phase("db_loss[kill]: steady state after (3 s)")
    assert logged == ["fulsk-chaos ▸ db_loss[kill]: fault injected: kill postgres\n",
                      "fulsk-chaos ▸ db_loss[kill]: fault injected: kill postgres: 11/30 s\n",
                      "fulsk-chaos ▸ db_loss[kill]: steady state after (3 s)\n"]
    shown: list[str] = []
    live = Progress(shown.append, live=True)
    live.phase("stack starting (local)")
    live.step("postgres")
    live.end()
    assert shown == ["\r\x1b[2K▸ stack starting (local)", "\r\x1b[2K▸ stack starting (local): postgres", "\n"]

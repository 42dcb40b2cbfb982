"""Runbooks: files read strictly (one line naming the file and field), steps run as documented
and recorded, drift reported naming the step, fallbacks and checks followed as written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fulsk_chaos import runbooks
from fulsk_chaos.runbooks import Runner, RunbookError
from fulsk_chaos.report import ScenarioRecord

SHIPPED = runbooks.names()


def write(tmp_path: Path, data: dict, name: str = "book") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def book(*steps: dict, **top) -> dict:
    return {"runbook": "Runbook: Test", "when": "Something broke", "who": "us", "target_s": 60,
            "trigger": {"fault": "pause", "target": "backend"}, "steps": list(steps), **top}


def step(name: str, command: str, **more) -> dict:
    return {"name": name, "does": f"does {name}", "command": command, **more}


def run(tmp_path: Path, data: dict) -> runbooks.RunbookRun:
    runner = Runner("local", {p: f"<{p}>" for p in runbooks.PLACEHOLDERS} | {"stack_dir": str(tmp_path)},
                    {**os.environ}, cwd=tmp_path)
    return runner.run(runbooks.load(str(write(tmp_path, data))))


# --- reading -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_runbook_reads_and_maps_its_compose_commands(name):
    runbook = runbooks.load(name)
    assert runbook.triggers and runbook.steps and runbook.target_s > 0
    for s in runbook.steps:
        if "docker-compose" in s.command.guide:
            assert s.command.local, s.name


def test_the_six_runbooks_of_the_guide_are_there_or_named():
    guide = (Path(__file__).resolve().parents[2] / "shared" / "seeds" / "operations-guide.md")
    titles = {runbooks.load(n).title for n in SHIPPED}
    if guide.is_file():
        for title in titles:
            assert f"### {title}" in guide.read_text(), title


@pytest.mark.parametrize("mutate, says", [
    (lambda d: d["steps"][0].pop("does"), "steps[0]: missing field 'does'"),
    (lambda d: d["steps"][0].update(comand="x"), "steps[0]: unknown field 'comand'"),
    (lambda d: d.update(owner="x"), "unknown field 'owner'"),
    (lambda d: d.pop("target_s"), "missing field 'target_s'"),
    (lambda d: d["trigger"].update(fault="meteor"), "trigger.fault: unknown fault 'meteor'"),
    (lambda d: d["steps"][0].update(command="echo {{nowhere}}"), "unknown placeholder {{nowhere}}"),
    (lambda d: d["steps"][0].update(command="docker-compose -f docker-compose.prod.yml ps"), "add 'local:'"),
    (lambda d: d["steps"][0].update(only_if="later failed"), "no earlier step named 'later'"),
    (lambda d: d["steps"][0].update(timeout_s=-1), "timeout_s: expected a number of seconds > 0"),
    (lambda d: d["steps"][0].update(in_guide=False), "needs a note"),
    (lambda d: d["steps"].append(step("one", "true")), "'one' is already the name of an earlier step"),
    (lambda d: d.update(stack={"replicas": 3}), "stack: unknown field 'replicas'"),
    (lambda d: d.update(stack={"standby": "yes"}), "stack.standby: expected true or false"),
    (lambda d: d.update(rpo_s="soon"), "rpo_s: expected a number of seconds > 0"),
    (lambda d: d.update(trigger=[{"fault": "pause", "target": "backend"}] * 2), "two cases share a name"),
])
def test_a_wrong_field_is_one_line_naming_file_and_field(tmp_path, mutate, says):
    data = book(step("one", "true"))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(RunbookError) as caught:
        runbooks.load(str(path))
    message = str(caught.value)
    assert says in message and str(path) in message and "\n" not in message


def test_an_unknown_runbook_stops_before_anything_runs(tmp_path):
    with pytest.raises(RunbookError, match="no runbook 'nope': choose one of .*service-restart"):
        runbooks.load("nope")
    cli = subprocess.run([sys.executable, "-m", "fulsk_chaos.cli", "runbook", "--check", "nope"],
                         capture_output=True, text=True)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1 and "no runbook 'nope'" in cli.stderr
    # pytest refuses it as a usage error: no stack is started
    done = subprocess.run([sys.executable, "-m", "pytest", "scenarios/test_runbooks.py", "--runbook", "nope",
                           "-p", "no:cacheprovider", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 4 and "no runbook 'nope'" in done.stderr
    assert not list(tmp_path.iterdir())  # no run, no report


# --- running -------------------------------------------------------------------------------------
def test_a_missing_command_is_drift_naming_the_step_and_stops_the_runbook(tmp_path):
    done = run(tmp_path, book(step("first", "echo ok"), step("broken", "no-such-tool --now"),
                              step("after", "echo never")))
    assert [s.outcome for s in done.steps] == ["passed", "failed", "not run"]
    assert [s.step.name for s in done.drift] == ["broken"]
    assert "command not found" in done.drift[0].drift and not done.drift[0].known_drift
    assert done.aborted_at == "broken" and [s.step.name for s in done.failed_steps] == ["broken"]


def test_a_corrected_step_reports_the_guides_drift_and_passes_with_the_correction(tmp_path):
    done = run(tmp_path, book(step("promote", "pg_promote_nowhere", corrected={
        "command": "echo promoted", "note": "pg_promote is an SQL function: SELECT pg_promote()"})))
    s = done.steps[0]
    assert s.outcome == "passed" and s.known_drift and "command not found" in s.drift
    assert [a.ran for a in s.attempts] == ["pg_promote_nowhere", "echo promoted"]
    assert done.completed and not done.failed_steps
    assert done.timeline()[0]["note"].startswith("pg_promote is an SQL function")


def test_a_manual_step_written_as_a_comment_is_drift_at_once(tmp_path):
    done = run(tmp_path, book(step("edit", "# Edit .env.production with new database endpoint", verify="true",
                                   timeout_s=30, corrected={"command": "echo edited", "note": "set DATABASE_URL"})))
    s = done.steps[0]
    assert s.known_drift and "only a comment" in s.drift and s.outcome == "passed"
    assert s.attempts[0].executed.seconds < 1  # not waited for: nothing can come of it


def test_a_fallback_runs_only_when_the_step_it_backs_up_failed(tmp_path):
    done = run(tmp_path, book(step("graceful", "exit 3", on_failure="continue"),
                              step("force", "echo forced", only_if="graceful failed"),
                              step("unneeded", "echo no", only_if="force failed"),
                              step("end", "echo done")))
    assert [s.outcome for s in done.steps] == ["failed", "passed", "skipped", "passed"]
    assert not done.drift and not done.failed_steps and done.completed


def test_a_check_that_finds_the_cause_is_a_finding_and_its_fix_runs(tmp_path):
    (tmp_path / "full").write_text("x")
    done = run(tmp_path, book(step("check", f"test ! -e {tmp_path}/full", may_fail=True),
                              step("fix", f"rm {tmp_path}/full", only_if="check failed", verify=f"test ! -e {tmp_path}/full"),
                              step("again", f"test ! -e {tmp_path}/full")))
    assert [s.outcome for s in done.steps] == ["found", "passed", "passed"]
    assert not done.drift and not done.failed_steps


def test_an_effect_is_verified_by_polling_and_a_missing_effect_is_drift(tmp_path):
    start = tmp_path / "start"  # an effect that takes a second to show
    done = run(tmp_path, book(step("slow", f"date +%s > {start}", verify=f"test $(( $(date +%s) - $(cat {start}) )) -ge 2",
                                   timeout_s=10),
                              step("never", "true", verify=f"test -e {tmp_path}/nothing", timeout_s=1)))
    assert done.steps[0].outcome == "passed"
    assert done.steps[1].outcome == "failed" and "not verified" in done.steps[1].drift


def test_findings_feed_later_steps_and_a_finding_not_found_fails(tmp_path):
    done = run(tmp_path, book(step("diagnose", "echo 'slowest: redis 700 ms'", finds={"slow": r"slowest: (\w+)"}),
                              step("fix", "echo fixing {{found.slow}}", expect_output="fixing redis")))
    assert done.findings == {"slow": "redis"} and done.completed
    done = run(tmp_path, book(step("diagnose", "echo 'all fine'", finds={"slow": r"slowest: (\w+)"})))
    assert "found no slow" in done.steps[0].drift


def test_a_command_that_never_ends_is_killed_with_what_it_started(tmp_path):
    marker = f"fulsk-chaos-runbook-test-{os.getpid()}"
    done = run(tmp_path, book(step("follow", f"bash -c 'exec -a {marker} sleep 300' & tail -f /dev/null", timeout_s=1)))
    assert done.steps[0].outcome == "failed" and "did not finish within 1 s" in done.steps[0].drift
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"left running: {left.stdout}"


def test_commands_run_in_a_terminal_as_an_operator_types_them(tmp_path):
    done = run(tmp_path, book(step("tty", "test -t 0 && test -t 1 && echo on-a-terminal", expect_output="on-a-terminal")))
    assert done.completed and not done.drift


def test_the_guides_addresses_become_the_stacks(tmp_path):
    runner = Runner("docker", {p: f"<{p}>" for p in runbooks.PLACEHOLDERS}, {})
    b = runbooks.load(str(write(tmp_path, book(step("x", "true"), params={"service_name": "backend"}))))
    render = lambda text: runner.render(text, b, {})  # noqa: E731
    assert render("docker-compose -f docker-compose.prod.yml restart service_name") == "<compose> restart backend"
    assert render("curl -f http://localhost/health") == "curl -f <frontend_url>/health"
    assert render("tail -n 5 /backups/backup.log; df -h /backups") == "tail -n 5 <backup_dir>/backup.log; df -h <backup_dir>"
    assert render("./scripts/backup.sh --verbose") == "<scripts>/backup.sh --verbose"
    assert render("echo /var/backups service_names") == "echo /var/backups service_names"
    assert render("grep x /var/log/nginx/access.log") == "grep x <nginx_access_log>"
    assert render("# Edit .env.production with new database endpoint") == "# Edit <env_file> with new database endpoint"


def test_the_timeline_goes_into_results_json():
    record = ScenarioRecord("runbook[x]", "scenarios/test_runbooks.py::x")
    assert "timeline" not in record.to_json()
    record.timeline = [{"event": "trigger", "at_s": 0.0, "what": "pause backend"}]
    assert record.to_json()["timeline"][0]["what"] == "pause backend"


# --- against the stack ---------------------------------------------------------------------------
@pytest.mark.provider  # the guide's docker-compose commands on Docker, their mappings on the local stack
def test_a_broken_step_of_a_real_runbook_is_drift_naming_it(stack, tmp_path):
    data = yaml.safe_load((runbooks.RUNBOOK_DIR / "service-restart.yml").read_text())
    for s in data["steps"]:
        if s["name"] == "check-dependents":
            s["command"] = s["command"].replace("{{listing_path}}", "/api/inverterz")  # a typo in the runbook
    done = Runner.for_stack(stack).run(runbooks.load(str(write(tmp_path, data, "service-restart"))))
    assert [s.step.name for s in done.drift] == ["check-dependents"]
    assert "exit status 22" in done.drift[0].drift  # curl -f: the API answered 404
    assert done.aborted_at == "check-dependents"
    before = [s for s in done.steps if s.step.name in ("check-logs", "graceful-restart", "verify-health")]
    assert all(s.outcome == "passed" for s in before)


@pytest.mark.parametrize("rule, why", [
    ("iptables -A INPUT -s 127.0.0.1 -p tcp --dport 1 -j DROP", "names 127.0.0.1"),
    ("iptables -A INPUT -p tcp --dport 1 -j DROP", "without -s ADDRESS"),
    ("iptables -I INPUT -s 127.0.0.0/8 -p tcp --dport 1 -j REJECT", "names 127.0.0.1"),
])
def test_a_rule_that_would_firewall_the_stack_is_refused_before_it_runs(tmp_path, rule, why):
    """(Each rule only touches port 1, in case the guard ever fails.)"""
    try:
        done = run(tmp_path, book(step("block", rule, may_fail=True)))  # not a finding: drift
        assert done.steps[0].outcome == "failed" and "refused before it ran" in done.steps[0].drift
        assert why in done.steps[0].drift
        rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
        assert "--dport 1 " not in rules
    finally:
        subprocess.run(["iptables", *rule.replace("-A ", "-D ").replace("-I ", "-D ").split()[1:]], capture_output=True)


def test_an_intruders_request_is_served_while_blocked_only_if_answered_before_the_lift():
    """TCP retransmits a request dropped just before the block is lifted, and it is answered
    after: that is the block working, not the intruder served."""
    from fulsk_chaos.runbooks.intrusion import Intruder
    intruder = Intruder("127.0.0.1", 1)
    intruder.attempts += [(9.0, 9.01, 200),    # before the block
                          (10.5, 12.5, None),  # dropped
                          (11.0, 11.01, 200),  # served while blocked: the block failed
                          (13.8, 14.3, 200)]   # dropped, retransmitted after the lift at 14.0
    assert intruder.served(10.0, 14.0) == (1, 3)
    assert intruder.served(0.0, 10.0) == (1, 1)

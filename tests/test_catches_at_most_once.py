"""The framework catches the classic at-most-once bug, and for the right reason.

With FULSK_ACK_ON_RECEIPT on, the reference backend acknowledges MQTT messages on receipt and
drops a reading whose database write fails. The database-loss scenario must then fail on lost
readings, and no more readings than the backend itself says it dropped.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_db_loss_fails_on_lost_readings_when_the_backend_acks_on_receipt(tmp_path):
    buggy = tmp_path / "at-most-once.toml"
    buggy.write_text('[backend.env]\nFULSK_ACK_ON_RECEIPT = "1"\n\n[recovery]\ntarget_s = 10\n')
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/test_db_loss.py", "-k", "kill", "-p", "no:cacheprovider",
         "--chaos-config", str(buggy), "--report-dir", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-3000:]

    (results_file,) = (tmp_path / "reports").glob("*/results.json")
    (scenario,) = json.loads(results_file.read_text())["scenarios"]
    m = scenario["measurements"]
    assert scenario["name"] == "db_loss[kill]" and scenario["verdict"] == "fail"
    (fault,) = scenario["faults"]
    assert (fault["kind"], fault["target"], fault["params"]) == ("kill", "postgres", {"sig": "SIGKILL"})

    # The reason, as data: the ledger's "lost" expectation did not hold, on acknowledged readings.
    failed = {e["name"]: e for e in scenario["expectations"] if e["held"] is False}
    lost = failed["lost (acknowledged, not stored)"]
    assert lost["measured"] == m["lost"] > 0 and lost["threshold"] == 0 and lost["evidence"]["acked"] == m["acked"]
    assert scenario["reason"].startswith("lost (acknowledged, not stored) = ")
    # ...and not something else dressed up as loss: nothing invented or stored twice, nothing hung.
    assert m["unexpected"] == 0 and m["duplicates"] == 0 and m["altered"] == 0
    assert m["unanswered"] == 0 and m["p99_ms"] < 2000
    held = {e["name"] for e in scenario["expectations"] if e["held"]}
    assert {"after: api error rate", "after: unanswered (no answer within the alert threshold)"} <= held
    # Users see the loss too: the lost readings are gaps in the histories they are served.
    assert any(name.startswith("after: stale answers") for name in failed)

    # JUnit XML, for CI dashboards, carries the same verdict and numbers.
    (case,) = ElementTree.parse(results_file.parent / "junit.xml").iter("testcase")
    assert case.find("failure").get("message").startswith("lost (acknowledged, not stored) = ")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["verdict"] == "fail" and int(properties["lost"]) == m["lost"]

    # Every reading called lost is one the backend itself admits to having dropped. (Not always
    # all of them: a write abandoned at its deadline just as the database returns may still commit.)
    backend_log = (results_file.parent / "logs" / "backend.log").read_text()
    dropped = sum(int(n) for n in re.findall(r"dropped (\d+) readings", backend_log))
    assert 0 < m["lost"] <= dropped

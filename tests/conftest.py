"""Helpers shared by the framework's own tests."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]


@dataclass
class ScenarioRun:
    """A scenario run in a pytest of its own, and what it left in its report directory."""
    returncode: int
    output: str
    report: Path  # reports/<run-id>/

    @property
    def results(self) -> dict[str, Any]:
        """results.json, held to its documented schema: every drill kind run here checks it."""
        data = json.loads((self.report / "results.json").read_text())
        assert valid_results(data) == [], valid_results(data)
        return data

    @property
    def scenario(self) -> dict[str, Any]:
        (scenario,) = self.results["scenarios"]
        return scenario

    def expectations(self, held: bool | None = None) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.scenario["expectations"] if held is None or e["held"] is held}


def as_in_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it (a ``preexec_fn``): a job started in the background by a
    shell without job control (nohup ... &, as CI may run) inherits SIGINT ignored, and its
    runner never saw it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def valid_results(data: dict[str, Any]) -> list[str]:
    """What in a results.json breaks its schema (fulsk_chaos.figures): its version, and each
    scenario's measurements against the JSON Schema and the families of figures."""
    import jsonschema
    from fulsk_chaos.figures import SCHEMA, Measured, SchemaError, schema
    found = [] if data.get("schema") == SCHEMA else [f"schema {data.get('schema')!r}, not {SCHEMA!r}"]
    validator = jsonschema.Draft202012Validator(schema())
    for s in data.get("scenarios") or []:
        found += [f"{s['name']}: {e.json_path}: {e.message}" for e in validator.iter_errors(s["measurements"])]
        try:
            Measured.read(s["measurements"], strict=True)
        except SchemaError as exc:
            found.append(f"{s['name']}: {exc}")
    return found


@pytest.fixture
def run_scenario(tmp_path: Path):
    """Run one scenario in a pytest of its own on the local stack, with a configuration (TOML
    text) and optionally a plugin (Python source) of the test's."""
    def run(select: str, config: str = "", plugin: str | None = None, timeout_s: float = 300,
            html: bool = False) -> ScenarioRun:
        (tmp_path / "drill.toml").write_text(config)
        reports = tmp_path / f"reports-{len(list(tmp_path.glob('reports-*')))}"  # one per run of the test
        args = [sys.executable, "-m", "pytest", *shlex.split(select), "-p", "no:cacheprovider", "--stack", "local",
                "--chaos-config", str(tmp_path / "drill.toml"), "--report-dir", str(reports),
                *([] if html else ["--no-html"])]  # charts cost a second or two a run
        env = dict(os.environ)
        if plugin is not None:
            (tmp_path / "drill_plugin.py").write_text(plugin)
            args += ["-p", "drill_plugin"]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
        (report,) = [d for d in reports.glob("*/") if d.name != "corpus"]  # a search's corpus sits beside the run
        run = ScenarioRun(done.returncode, done.stdout + done.stderr, report)
        if (report / "results.json").is_file():
            assert valid_results(run.results) == []  # every drill kind run here holds results.json to its schema
        return run
    return run

"""The configuration: ops-guide defaults, and bad settings refused before anything starts."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fulsk_chaos import config
from fulsk_chaos.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_operations_guides_numbers():
    c = config.Settings()
    assert (c.baselines.api_response_ms, c.baselines.page_load_ms) == (500, 2000)
    assert (c.baselines.db_query_ms, c.baselines.websocket_latency_ms) == (100, 50)
    assert (c.alerts.http_response_ms, c.alerts.error_rate) == (2000, 0.05)
    assert c.recovery.target_s == 30
    assert c.probe_timeout_s == c.hang_s == 2.0  # the probe gives up where the alert would fire
    assert not c.ledger.allow_duplicates


def test_the_projects_pyproject_restates_the_defaults_but_builds_images_offline():
    assert config.load(search_from=ROOT) == replace(config.Settings(), docker=config.DockerSettings(offline=True))


def test_a_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "drill.toml"
    path.write_text('[recovery]\ntarget_s = 12.5\n[backend.env]\nFULSK_ACK_ON_RECEIPT = "1"\n')
    c = config.load(path)
    assert c.recovery.target_s == 12.5
    assert c.backend.env == {"FULSK_ACK_ON_RECEIPT": "1"}
    assert c.baselines == config.BaselineSettings()


def test_a_file_may_use_the_pyproject_layout(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.fulsk-chaos.fleet]\ninverters = 3\n")
    assert config.load(path).fleet.inverters == 3
    assert config.load(search_from=tmp_path).fleet.inverters == 3


@pytest.mark.parametrize("text, message", [
    ("[recovery]\ntarget = 3\n", "recovery.target: unknown key"),
    ("[recovery]\ntarget_s = -1\n", "recovery.target_s: must be positive"),
    ("[recovery]\ntarget_s = 0\n", "recovery.target_s: must be positive"),
    ('[recovery]\ntarget_s = "30"\n', "recovery.target_s: expected a number"),
    ("[fleet]\ninverters = 2.5\n", "fleet.inverters: expected an integer"),
    ("[fleet]\ninverters = true\n", "fleet.inverters: expected an integer"),
    ("[alerts]\nerror_rate = 5\n", "alerts.error_rate: a fraction between 0 and 1"),
    ("[backend]\ncommand = \"node server.js\"\n", "backend.command: expected a list of strings"),
    ("recovery = 3\n", "recovery: expected a table"),
    ("[docker]\noffline = 1\n", "docker.offline: expected true or false"),
    ("[probe]\ntimeout_s = 0\n", "probe.timeout_s: must be positive"),
    ('[ledger]\nallow_duplicates = "yes"\n', "ledger.allow_duplicates: expected true or false"),
    ('tool = "black"\n', "tool: expected a table"),
    ('[recovery]\ntarget_s = 3\n[tool.fulsk-chaos.fleet]\ninverters = 2\n',
     "recovery: a top-level key beside [tool.fulsk-chaos] would be ignored"),
    ('[project]\nname = "x"\n[tool.black]\nline-length = 99\n', "no [tool.fulsk-chaos] table and no settings"),
    ("[nonsense]\n", "nonsense: unknown key"),
    ("[recovery\n", "not valid TOML"),
])
def test_bad_settings_name_the_key_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_with_other_tools_tables_keeps_its_own_settings(tmp_path):
    path = tmp_path / "drill.toml"
    path.write_text("[recovery]\ntarget_s = 7\n[tool.black]\nline-length = 99\n")
    assert config.load(path).recovery.target_s == 7  # not silently the defaults


def test_a_pyproject_whose_tool_key_is_not_a_table_is_a_config_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text('tool = 3\n')
    with pytest.raises(ConfigError, match="tool: expected a table"):
        config.load(search_from=tmp_path)


def test_a_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"[recovery]\ntarget_s = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path)


def test_error_rate_may_be_zero(tmp_path):
    path = tmp_path / "strict.toml"
    path.write_text("[alerts]\nerror_rate = 0\n")
    assert config.load(path).alerts.error_rate == 0


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("content, key, problem", [
    (b"[recovery]\ntarget_s = -5\n", "recovery.target_s", "must be positive"),
    (b'[docker.images]\nmysql = "mysql:8"\n', "docker.images.mysql", "not a service of the stack"),
    (b"[recovery]\ntarget_s = \xff\n", "bad.toml", "not UTF-8"),  # not an INTERNALERROR
])
def test_pytest_refuses_a_bad_configuration_before_starting_anything(tmp_path, content, key, problem):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios", "--chaos-config", str(path), "--report-dir", str(tmp_path / "r"),
         "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    assert "INTERNALERROR" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if key in line]
    assert len(errors) == 1 and problem in errors[0]
    assert not (tmp_path / "r").exists()  # no run was started, no report written

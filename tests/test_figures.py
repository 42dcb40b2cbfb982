"""Figures with types: a scenario measures dataclasses, results.json carries them under the keys
its documented schema names, and what reads them back gets attributes."""
from __future__ import annotations

import jsonschema
import pytest

from conftest import valid_results
from fulsk_chaos.figures import (FAMILIES, SCHEMA, AlertFigures, FaultWindowFigures, LedgerFigures, LoadWindowFigures,
                                 Measured, RecoveryFigures, SchemaError, SteadyFigures, schema)
from fulsk_chaos.report import RunRecord, ScenarioRecord
from fulsk_chaos.report.writers import figures_line

LEDGER = LedgerFigures(sent=10, acked=9, stored=8, lost=1, unexpected=0, duplicates=0, altered=0, unacked_stored=0)


def test_free_form_keys_are_refused_where_they_are_written():
    record = ScenarioRecord("s", "n")
    with pytest.raises(TypeError):
        record.measure(lost=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes figures"):
        record.measure({"lost": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LedgerFigures(sent=1, acked=1, stored=1, lots=0)  # type: ignore[call-arg]


def test_results_json_keys_are_flat_and_phased_and_read_back_as_attributes():
    record = ScenarioRecord("s", "n")
    record.measure(LEDGER, SteadyFigures("after", p95_ms=12.0, error_rate=0.0, staleness_p95_s=0.4,
                                         live_delay_p95_ms=30.0, host={"stall_share": {}}),
                   LoadWindowFigures("before scaling", load={"api": {"p95_ms": 5}}),
                   RecoveryFigures(recovery_s=None, recovery_target_s=30.0))
    m = record.measurements
    assert m["lost"] == 1 and m["after_p95_ms"] == 12.0 and m["after_host"] == {"stall_share": {}}
    assert m["before scaling_load"] == {"api": {"p95_ms": 5}} and m["recovery_s"] is None
    assert "after_unsettled" not in m and "api_recovery_s" not in m  # optional, not measured: left out
    back = ScenarioRecord.from_json(record.to_json())
    assert back.figure(LedgerFigures) == LEDGER and back.figures == record.figures
    assert back.figure(SteadyFigures, "after").staleness_p95_s == 0.4
    assert back.figure(LoadWindowFigures, "before scaling").load["api"]["p95_ms"] == 5


def test_a_family_measured_again_keeps_what_the_later_measurement_left_unset():
    record = ScenarioRecord("s", "n")
    record.measure(AlertFigures(alerts={"A": {}}, alert_bounds_s={"fire": 1.0, "resolve": 2.0}))
    record.measure(AlertFigures(alert_notifications=[]))
    assert record.figure(AlertFigures) == AlertFigures(alerts={"A": {}}, alert_bounds_s={"fire": 1.0, "resolve": 2.0},
                                                       alert_notifications=[])


def test_no_two_families_write_the_same_key_and_every_figure_has_a_json_type():
    props = schema()["properties"]
    assert len(props) == sum(len(f.names()) for f in FAMILIES if not f.phased)
    untyped = [n for n, p in [*props.items(), *schema()["patternProperties"].items()]
               if "type" not in p and "anyOf" not in p]
    assert untyped == ["replication_at_failure"]  # whatever the standby reported (declared Any)
    jsonschema.Draft202012Validator.check_schema(schema())


def test_a_misspelt_or_mistyped_figure_breaks_the_documented_schema():
    run = RunRecord("r", "local", None, {})  # type: ignore[arg-type]
    record = ScenarioRecord("s", "n")
    record.measure(LEDGER)
    run.scenarios.append(record)
    run.finished_at = "now"
    good = run.to_json()
    assert good["schema"] == SCHEMA and valid_results(good) == []
    misspelt = {**good, "scenarios": [{**good["scenarios"][0], "measurements": {**LEDGER.to_json(), "recovery_sec": 1}}]}
    assert any("recovery_sec" in e for e in valid_results(misspelt))
    with pytest.raises(SchemaError, match="recovery_sec"):
        Measured.read({"recovery_sec": 1}, strict=True)
    mistyped = {**good, "scenarios": [{**good["scenarios"][0], "measurements": {**LEDGER.to_json(), "lost": "none"}}]}
    assert any("lost" in e for e in valid_results(mistyped))
    assert any("schema" in e for e in valid_results({**good, "schema": "fulsk-chaos/results/1"}))


def test_the_terminal_line_reads_the_figures():
    m = Measured([LEDGER, RecoveryFigures(recovery_s=3.2, recovery_target_s=30.0),
                  FaultWindowFigures(error_rate=0.1, p95_ms=900.0, p99_ms=1005.0, read_p95_ms=None, read_error_rate=None,
                                     max_ms=None, unanswered=0, fault_samples=50, health_detect_s=1.0,
                                     health_reported_down=3, acked_during_fault=40)])
    assert figures_line(m) == ["recovery 3.2 s (target 30 s)", "lost 1 of 9 acked", "p99 1005 ms during fault"]

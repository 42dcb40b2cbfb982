"""The run's journal and its writers: results.json, junit.xml, the terminal summary."""
from .records import RunRecord, ScenarioRecord, new_run_id
from .writers import FileWriter, JUnitXml, ReportWriter, ResultsJson, TerminalSummary

__all__ = ["FileWriter", "JUnitXml", "ReportWriter", "ResultsJson", "RunRecord", "ScenarioRecord",
           "TerminalSummary", "new_run_id"]

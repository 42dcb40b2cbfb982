"""The run's journal and its writers: results.json, junit.xml, index.html, Chaos Toolkit
journals, the terminal summary."""
from .html import HtmlReport
from .journal import ChaosToolkitJournals
from .records import RunRecord, ScenarioRecord, new_run_id
from .writers import FileWriter, JUnitXml, ReportWriter, ResultsJson, TerminalSummary

__all__ = ["ChaosToolkitJournals", "FileWriter", "HtmlReport", "JUnitXml", "ReportWriter", "ResultsJson", "RunRecord", "ScenarioRecord",
           "TerminalSummary", "new_run_id"]

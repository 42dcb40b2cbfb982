"""The run's journal: results.json, and the summary printed at the end."""
from .journal import RunJournal, ScenarioResult

__all__ = ["RunJournal", "ScenarioResult"]

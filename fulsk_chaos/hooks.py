"""Hooks other plugins (or a conftest.py) implement to extend fulsk-chaos' reports."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_fulsk_chaos_update_json(config: pytest.Config, output_json: dict[str, Any]) -> None:
    """Add or change fields of results.json just before it is written (as pytest-benchmark's
    ``pytest_benchmark_update_json``): e.g. ``output_json["build"] = os.environ["BUILD_ID"]``."""


@pytest.hookspec
def pytest_fulsk_chaos_report_writers(config: pytest.Config) -> list[Any]:
    """Return report writers (objects with ``scenario_started``, ``scenario_finished`` and
    ``run_finished``, see ``fulsk_chaos.report.ReportWriter``) to run beside the built-in ones."""

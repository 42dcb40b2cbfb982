"""Sessions: `nox -s drill` runs the chaos scenarios; `nox -s tests` runs the framework's tests and the scenarios.

Arguments after `--` go to pytest, e.g. `nox -s drill -- --stack local --report-dir DIR -k db_loss`.
"""
from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _prepare(session: nox.Session) -> None:
    session.run("bash", "scripts/bootstrap.sh", external=True)
    session.install("-e", ".")


@nox.session
def drill(session: nox.Session) -> None:
    """The chaos drill: every scenario against the stack, verdicts in reports/<run-id>/results.json."""
    _prepare(session)
    session.run("pytest", "scenarios", *(session.posargs or ["--stack", "local"]))


@nox.session
def tests(session: nox.Session) -> None:
    """The framework's own tests, then the scenarios on the local stack."""
    _prepare(session)
    session.run("pytest", "tests", "scenarios", *session.posargs)

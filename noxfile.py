"""Sessions: `nox -s drill` runs the chaos scenarios; `nox -s tests` runs the framework's tests and the
scenarios on both providers; `nox -s images` builds the offline images.

Arguments after `--` go to pytest, e.g. `nox -s drill -- --stack local --report-dir DIR -k db_loss`.
"""
from __future__ import annotations

import shutil
import subprocess

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _prepare(session: nox.Session, docker: bool = False) -> None:
    session.run("bash", "scripts/bootstrap.sh", *(["--docker"] if docker else []), external=True)
    session.install("-e", ".")


def _docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


@nox.session
def images(session: nox.Session) -> None:
    """Build the stack's images offline, from a debootstrap'd Debian base (incremental)."""
    _prepare(session, docker=True)
    session.run("fulsk-chaos", "images", "build", "--offline")


@nox.session
def drill(session: nox.Session) -> None:
    """The chaos drill: every scenario, on Docker when an engine answers, else on the local stack.
    (A Docker stack with `docker.offline` builds whatever offline image is missing before it starts.)"""
    _prepare(session)
    args = list(session.posargs)
    if not any(a == "--stack" or a.startswith("--stack=") for a in args):
        args = ["--stack", "docker" if _docker_answers() else "local", *args]
    session.run("pytest", "scenarios", *args)


@nox.session
def bench(session: nox.Session) -> None:
    """Print the stack's start-to-healthy and teardown times, local and Docker side by side."""
    _prepare(session, docker=True)
    session.run("python", "tests/benchmarks/stack_lifecycle.py", *(session.posargs or ["5"]))


@nox.session
def tests(session: nox.Session) -> None:
    """The framework's own tests and the scenarios on the local stack, then on Docker."""
    _prepare(session, docker=True)
    session.run("fulsk-chaos", "images", "build", "--offline")
    docker_only = ["tests/test_docker.py", "tests/test_compose.py"]
    session.run("pytest", "tests", "scenarios", "--stack", "local", *(f"--ignore={t}" for t in docker_only),
                *session.posargs)
    session.run("pytest", "tests/test_stack.py", *docker_only, "scenarios", "--stack", "docker", *session.posargs)

"""bootstrap.sh installs every program the framework, its scenarios, the runbooks and the backup
tools run: the commands are derived from those files, not listed by hand, and each must be in
bootstrap.sh's COMMAND:PACKAGE tables (or be part of every Debian system).

A fresh machine without Docker once passed every scenario but the one whose runbook runs
iptables: only docker.io had brought it in.
"""
from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fulsk_chaos.runbooks import load_all
from fulsk_chaos.runbooks.model import PLACEHOLDER

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"

# Shell syntax and builtins, and the commands of Debian's Essential packages (coreutils, findutils,
# grep, sed, tar, gzip, dash, bash, util-linux, diffutils): on every Debian machine.
KEYWORDS = {"!", "{", "}", "do", "done", "if", "then", "else", "elif", "fi", "while", "until", "esac", "exec"}
BUILTINS = {"[", "[[", "echo", "exit", "test", "cd", "export", "true", "false", "read", "printf", "set", "trap", "wait",
            "kill", "shift", "command", "return", "local", "."}
ESSENTIAL = {"bash", "sh", "cat", "ls", "rm", "mkdir", "cp", "mv", "ln", "chmod", "chown", "head", "tail", "seq",
             "sleep", "date", "df", "du", "wc", "sort", "uniq", "tee", "touch", "env", "id", "stat", "dirname",
             "basename", "find", "xargs", "grep", "sed", "tar", "gzip", "gunzip", "diff", "cmp", "hostname"}
# The framework's own interpreter, and what pip installs beside it (pyproject.toml's dependencies).
PYTHON = {"python", "python3", "locust"}


def bootstrap_table(name: str) -> dict[str, str]:
    """COMMAND -> PACKAGE from a ``NAME=( ... )`` array of bootstrap.sh."""
    code = "\n".join(line.split("#", 1)[0] for line in BOOTSTRAP.read_text().splitlines())
    match = re.search(rf"^{name}=\(([^)]*)\)", code, re.M)
    assert match, f"bootstrap.sh has no {name}=( ... ) table"
    words = match[1].split()
    return dict(w.split(":", 1) for w in words)


def service_commands() -> dict[str, str]:
    """COMMAND -> PACKAGE as bootstrap.sh reads them from the catalogue (ServiceSpec.commands):
    before pip has installed anything, so with no site-packages at all."""
    done = subprocess.run([sys.executable, "-S", "-m", "fulsk_chaos.services", "--commands"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the catalogue needs more than the standard library to import: {done.stderr[-800:]}"
    return dict(line.split(":", 1) for line in done.stdout.split())


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# placeholders that stand for a program (the rest are addresses and paths)
PROGRAMS = {"ctl": "python3", "python": "python3", "compose": "docker-compose", "scripts": "./scripts"}


def substitutions(text: str) -> tuple[str, list[str]]:
    """``text`` with each ``$( ... )`` (balanced, quotes within included) replaced by a word, and
    what they ran."""
    inner, out, i = [], [], 0
    while (j := text.find("$(", i)) >= 0:
        depth, k = 1, j + 2
        while k < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            k += 1
        out.append(text[i:j] + "X")
        inner.append(text[j + 2:k - 1])
        i = k
    return "".join(out) + text[i:], inner


def shell_commands(command: str) -> set[str]:
    """The programs a shell command line runs: the first word of each simple command, inside
    pipelines, lists, ``$( )`` and ``for ... do`` bodies included (quotes respected)."""
    text = PLACEHOLDER.sub(lambda m: PROGRAMS.get(m[1], "X"), command)
    text, inner = substitutions(text)
    found: set[str] = set().union(*map(shell_commands, inner))
    lexer = shlex.shlex(text.replace("\n", " ; "), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""  # `$#` is no comment
    at_start, redirect = True, False
    for token in lexer:
        if token and set(token) <= set("<>&") and set(token) & set("<>"):
            redirect = True  # the next word is a file
            continue
        if redirect:
            redirect = False
            continue
        if token and set(token) <= set("|&;()"):
            at_start = True
            continue
        if not at_start or token in KEYWORDS or ASSIGNMENT.match(token):
            continue
        at_start = False  # `for i in ...`, `case x in`, `# a comment`: no command until the next separator
        if token not in BUILTINS and token not in ("for", "case") and not token.startswith(("-", "$", "#")):
            found.add(token)
    return found


def runbook_commands() -> dict[str, set[str]]:
    """Per provider, the commands the runbooks' steps, verifications and corrections run."""
    commands: dict[str, set[str]] = {"local": set(), "docker": set()}
    for runbook in load_all():
        for step in runbook.steps:
            # A documented command the runbook corrects is the guide's drift (htop, `pg_promote` as a
            # program, `npm run profile`): the drill records that it fails; what must run is the correction.
            for command in (None if step.corrected else step.command, step.verify,
                            step.corrected.command if step.corrected else None):
                if command is None:
                    continue
                for provider in commands:
                    commands[provider] |= shell_commands(command.for_provider(provider))
    return commands


def script_commands() -> set[str]:
    found: set[str] = set()
    for script in [*(ROOT / "fixtures" / "scripts").glob("*.sh"), ROOT / "fixtures" / "render.sh"]:
        body = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
        found |= {c.strip('"') for c in shell_commands(body)}
    return found


FINDERS = {"find_binary", "which", "exe", "tool"}  # a program looked up by name, then run
RUNNERS = {"run", "Popen", "check_output", "check_call", "call"}


def python_commands(*roots: Path) -> set[str]:
    """Programs the Python code runs: names given to find_binary, shutil.which, ctx.exe and the
    backup tools' tool(), and the literal first word of subprocess argv lists."""
    found: set[str] = set()
    for root in roots:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text())
            constants = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                         for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                first = node.args[0]
                if name in FINDERS:
                    if isinstance(first, ast.Starred) and isinstance(first.value, ast.Name):
                        first = constants.get(first.value.id)
                        first = first.elts[0] if isinstance(first, ast.Tuple) else None
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        found.add(first.value)
                elif name in RUNNERS and isinstance(first, ast.List) and first.elts:
                    head = first.elts[0]
                    if isinstance(head, ast.Constant) and isinstance(head.value, str):
                        found.add(head.value)
    return found


def missing(commands: set[str], *tables: dict[str, str]) -> list[str]:
    installed = set().union(*tables) | ESSENTIAL | PYTHON
    return sorted(c for c in commands if c not in installed and not c.startswith(("/", "./")))


def test_the_derivation_finds_what_the_files_run():
    """Guards the derivation itself: a parser that found nothing would pass everything."""
    runbooks = runbook_commands()
    assert {"iptables", "curl", "grep", "ss", "psql", "seq", "jq", "toxiproxy-cli"} <= runbooks["local"]
    assert not {"htop", "netstat", "npm", "pg_promote"} & runbooks["local"]  # the guide's drift, corrected
    assert {"docker-compose", "docker"} <= runbooks["docker"]
    assert {"initdb", "pg_dump", "redis-cli", "iptables", "mount", "toxiproxy-server", "nginx"} <= python_commands(
        ROOT / "fulsk_chaos")
    assert shell_commands("for i in $(seq 10); do curl -fsS x || exit 1; sleep 0.5; done") == {"seq", "curl", "sleep"}
    assert shell_commands("! FOO=1 iptables -A INPUT | grep -c x 2>&1 >> log") == {"iptables", "grep"}
    assert shell_commands("""jq -r '.a | map(x)' f | sed -e 's/a/b/;s/c/d/'""") == {"jq", "sed"}
    assert shell_commands('test "$(docker-compose ps x | grep -c Up)" -ge 3') == {"docker-compose", "grep"}


def test_bootstrap_installs_every_program_of_the_local_stack():
    """Without --docker, bootstrap.sh alone must bring every program the local stack's scenarios,
    runbooks (their local commands), backup tools and the framework's tests run."""
    local = bootstrap_table("LOCAL_COMMANDS") | service_commands()
    toxiproxy = {"toxiproxy-server": "go install", "toxiproxy-cli": "go install"}
    # wrk: the load generator benchmark's (--bench); chromium-browser: another distribution's name for chromium
    others = {"wrk": "--bench", "chromium-browser": "chromium"}
    needed = (runbook_commands()["local"] | script_commands()
              | python_commands(ROOT / "fulsk_chaos", ROOT / "tests", ROOT / "scenarios", ROOT / "loadtests"))
    docker_only = {"docker", "docker-compose", "debootstrap", "dockerd"}  # the Docker provider's, never local
    assert missing(needed - docker_only, local, toxiproxy, others) == [], (
        "run by the local stack but not installed by `bash scripts/bootstrap.sh`: declare it in its service "
        "spec's commands, or add COMMAND:PACKAGE to LOCAL_COMMANDS")


def test_bootstrap_docker_installs_what_the_docker_stack_runs():
    tables = (bootstrap_table("LOCAL_COMMANDS"), service_commands(), bootstrap_table("DOCKER_COMMANDS"),
              {"toxiproxy-cli": "go install"})
    needed = runbook_commands()["docker"] | {"docker", "docker-compose", "debootstrap", "dockerd"}
    assert missing(needed, *tables) == [], "not installed by `bash scripts/bootstrap.sh --docker`: add it to DOCKER_COMMANDS"


@pytest.mark.parametrize("table", ["LOCAL_COMMANDS", "DOCKER_COMMANDS"])
def test_every_table_entry_names_a_package(table):
    entries = bootstrap_table(table)
    assert entries and all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", p) for p in entries.values()), entries


def test_bootstrap_reads_the_servers_programs_from_their_specs():
    """A server's programs are declared once, by its spec: what bootstrap.sh reads is the
    catalogue's (every profile's included), and no spec's command is repeated in its tables."""
    from fulsk_chaos.services import CATALOGUE
    read = service_commands()
    assert read == CATALOGUE.commands() and {"postgres", "psql", "redis-server", "nginx", "promtool"} <= set(read)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", p) for p in read.values()), read
    repeated = set(read) & (set(bootstrap_table("LOCAL_COMMANDS")) | set(bootstrap_table("DOCKER_COMMANDS")))
    assert not repeated, f"declared by a service spec and repeated in bootstrap.sh: {sorted(repeated)}"
    assert "python3 -S -m fulsk_chaos.services --commands" in BOOTSTRAP.read_text()

"""The library's shape: data flows one way, a new service is one module, a new fault kind one entry."""
from __future__ import annotations

import ast
import signal
import sys
from pathlib import Path

import pytest
import requests

from fulsk_chaos.errors import FaultError, StackError
from fulsk_chaos.faults import CATALOGUE as FAULTS
from fulsk_chaos.faults import Catalogue as FaultCatalogue
from fulsk_chaos.faults import Family, FaultInjector
from fulsk_chaos.faults import network, process
from fulsk_chaos.services import CATALOGUE, Catalogue, ServiceContext, ServiceSpec, discover
from fulsk_chaos.cli import describe
from fulsk_chaos.stack import Stack

PACKAGE = Path(__file__).resolve().parents[1] / "fulsk_chaos"
# config -> stack -> faults and probes -> measurements -> load -> report, lowest first: a module imports
# from its own layer or below, never above. Verdicts are data (expectations, evidence) with no import
# of ours: at the bottom, so a fault kind can say what it must reach as an expectation.
LAYERS = [["errors", "verdict", "figures"], ["config", "contract", "wait", "lifecycle", "host"], ["services"], ["images", "backup"], ["stack"],
          ["probes"], ["faults"], ["checks"], ["load"], ["report"], ["drills"],
          ["runbooks"], ["hooks", "plugin", "cli", "contract_check", "docs"]]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every fulsk_chaos module ``path`` imports, at any depth (lazy imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fulsk_chaos")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("fulsk_chaos"):
                continue
            for alias in node.names:  # `from . import process` imports a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target)
    return found - {name}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return LAYER[top]


def test_every_module_has_a_layer():
    assert {m.split(".")[1] for m in GRAPH if "." in m} <= set(LAYER)


def test_no_module_imports_from_a_layer_above_it():
    upward = [f"{m} -> {i}" for m, targets in GRAPH.items() if "." in m for i in targets
              if "." in i and layer(i) > layer(m)]
    assert upward == []


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in GRAPH.get(node, ()):
            if target.startswith(node + "."):
                continue  # a package importing its own modules: they import it by being in it
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2
    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


# --- a new service is one module -----------------------------------------------------------------
class Echo(ServiceSpec):
    """A new server: Python's http.server, a client of redis (so that edge is proxied too)."""
    name = "echo"
    depends_on = ("redis",)
    registry_image = offline_image = "fulsk-chaos/echo:test"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [sys.executable, "-m", "http.server", str(ctx.port), "--bind", "127.0.0.1"]

    def check(self, ctx: ServiceContext) -> None:
        requests.get(f"http://127.0.0.1:{ctx.port}/", timeout=2).raise_for_status()


def test_a_new_service_gets_its_edge_and_its_place_from_its_spec_alone():
    catalogue = CATALOGUE.with_specs(Echo())
    assert "echo-redis" in {e.name for e in catalogue.edges}
    groups = catalogue.start_groups
    position = {name: i for i, group in enumerate(groups) for name in group}
    assert position["echo"] > position["redis"] and position["echo"] > position["toxiproxy"]


def test_a_new_service_module_is_found_by_the_catalogue(tmp_path, monkeypatch):
    package = tmp_path / "more_services"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "echo.py").write_text(
        "from fulsk_chaos.services import ServiceSpec\n"
        "class Echo(ServiceSpec):\n    name = 'echo'\n    depends_on = ('cache',)\n"
        "SPEC = Echo()\n")
    (package / "cache.py").write_text(
        "from fulsk_chaos.services import ServiceSpec\n"
        "class Cache(ServiceSpec):\n    name = 'cache'\n"
        "SPEC = Cache()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalogue = discover("more_services")
    assert catalogue.names == ["cache", "echo"] and catalogue.start_groups == (("cache",), ("echo",))


def test_a_catalogue_refuses_what_cannot_start():
    with pytest.raises(StackError, match="depends on 'nowhere'"):
        Catalogue((type("Bad", (ServiceSpec,), {"name": "bad", "depends_on": ("nowhere",)})(),))
    a = type("A", (ServiceSpec,), {"name": "a", "depends_on": ("b",)})()
    b = type("B", (ServiceSpec,), {"name": "b", "depends_on": ("a",)})()
    with pytest.raises(StackError, match="cycle"):
        Catalogue((a, b))


def test_a_stack_runs_a_new_service_through_its_proxy():
    with Stack(catalogue=CATALOGUE.with_specs(Echo())) as stack:
        assert requests.get(f"http://127.0.0.1:{stack.topology.ports['echo']}/", timeout=5).status_code == 200
        proxy = stack.toxiproxy.proxies()["echo-redis"]
        assert proxy["upstream"] == f"127.0.0.1:{stack.topology.ports['redis']}"
        # what `fulsk-chaos up --json` prints: the new service, where it says its users reach it
        assert describe(stack)["services"]["echo"] == {"address": f"127.0.0.1:{stack.topology.ports['echo']}"}
        # the schedule search draws what the kinds declare, on the services and edges the specs declare
        family = Family("signals")

        @family.kind("hangup", search_params={"sig": int(signal.SIGHUP)})
        def hangup(stack, target, sig=0):
            """A signal to the service's main process."""
            stack.service(target).kill(sig)
            return lambda: None

        @family.kind("shred", destroys_data=True)
        def shred(stack, target):
            """Destroys the service's data: a recovery drill's fault, never the search's."""
            raise AssertionError("never drawn")

        @family.kind("talk-mqtt", needs="mqtt")
        def talk_mqtt(stack, target):
            """Only for a service that serves MQTT."""
            raise AssertionError("never injected")

        from fulsk_chaos.drills.schedules import menu
        injector = FaultInjector(stack, [], FaultCatalogue(process.family, network.family, family))
        drawn = {str(step) for step in menu(injector)}
        assert {"hangup:echo", "kill:echo", "latency:echo-redis", "hangup:backend", "talk-mqtt:mqtt"} <= drawn
        assert not {s for s in drawn if s.startswith("shred:") or s.startswith("volume-loss:")}, drawn
        assert not {s for s in drawn if s.endswith((":toxiproxy", ":echo")) and s.startswith("talk-mqtt")}, drawn
        assert not {s for s in drawn if s.endswith(":toxiproxy")}, "the proxy is the instrument, never a target"
        with pytest.raises(FaultError, match="talk-mqtt acts on a service that serves mqtt, and echo does not"):
            injector.inject("talk-mqtt", "echo")


def test_services_declare_what_the_stack_needs_of_them():
    """The standby and the monitoring come with their profile's switch, nothing in the stack names
    them; every service of the guide's compose file declares its name there."""
    from fulsk_chaos.config import Settings, from_mapping
    from fulsk_chaos.stack.compose import SERVICES as COMPOSE
    plain = CATALOGUE.for_settings(Settings()).names
    full = CATALOGUE.for_settings(from_mapping({"stack": {"standby": True, "monitoring": True}})).names
    assert "postgres-standby" not in plain and "prometheus" not in plain and "backend" in plain
    assert {"postgres-standby", "prometheus", "alertmanager", "node-exporter"} <= set(full)
    assert set(COMPOSE) == {"postgres", "postgres-standby", "redis", "mqtt", "backend", "frontend"}
    assert all(CATALOGUE.get(s.name).compose_service == name for name, s in COMPOSE.items())
    odd = type("Odd", (ServiceSpec,), {"name": "odd", "profile": "nightly"})()
    with pytest.raises(StackError, match="profile 'nightly' is no \\[stack\\] switch"):
        CATALOGUE.with_specs(odd).for_settings(Settings())
    tree = ast.parse((PACKAGE / "stack" / "stack.py").read_text())
    named = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {"standby", "STANDBY", "monitoring", "MONITORING", "PROMETHEUS", "backup_conf"} & named, \
        "the stack names no particular service"


# --- a new fault kind is one entry ---------------------------------------------------------------
def test_a_new_fault_kind_is_one_entry_in_a_family(stack):
    family = Family("signals")

    @family.kind("hangup")
    def hangup(stack, target):
        """SIGHUP to the service's main process (nginx reloads its configuration)."""
        stack.service(target).kill(signal.SIGHUP)
        return stack.service(target).wait_healthy

    journal = []
    injector = FaultInjector(stack, journal, FaultCatalogue(process.family, family))
    with injector.inject("hangup", "frontend") as fault:
        assert stack.service("frontend").running
    assert [(r.kind, r.target) for r in journal] == [("hangup", "frontend")] and fault.record.ended is not None
    assert FaultCatalogue(process.family, family)["hangup"].summary.startswith("SIGHUP")


def test_provider_specific_kinds_are_refused_where_the_provider_lacks_them(stack):
    injector = FaultInjector(stack, [])
    if stack.provider == "docker":
        assert injector.supported("volume-loss", "postgres")
        return
    with pytest.raises(FaultError, match="volume-loss is not supported on the local provider"):
        injector.inject("volume-loss", "postgres")
    assert injector.journal == []
    with pytest.raises(FaultError, match="no fault kind 'meteor'"):
        injector.inject("meteor", "postgres")
    with pytest.raises(FaultError, match="kill takes sig; got signal"):
        injector.inject("kill", "postgres", signal=9)
    assert injector.journal == [] and stack.service("postgres").running


def test_the_catalogue_lists_the_process_family():
    assert {"kill", "stop", "pause", "restart", "volume-loss"} <= set(FAULTS)
    assert not FAULTS["volume-loss"].portable and FAULTS["kill"].portable


def test_only_the_experiment_drives_the_phase_machine():
    """One phase machine (drills.phases) under every drill: nothing outside drills/ subclasses it
    or the drill base (drills.base.Drill, the experiment), or moves a drill through its phases by
    hand."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "drills" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")) in ("Phases", "Phase", "Drill", "Experiment")
                                                      for b in node.bases):
                offenders.append(f"{path.name}: class {node.name}")
            if isinstance(node, ast.Attribute) and node.attr == "enter" and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "phases":
                offenders.append(f"{path.name}:{node.lineno}: phases.enter")
    assert offenders == []

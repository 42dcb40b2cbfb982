"""The reachable states, their coverage, the guidance and the corpus, on a simulated stack: what
the guided search does with what it observes, decided without servers (the real search runs in
scenarios/test_schedules.py and the benchmark, nox -s explorebench)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fulsk_chaos.config import ReachSettings, ScheduleProfile
from fulsk_chaos.errors import FulskChaosError, InstrumentError
from fulsk_chaos.faults import CATALOGUE
from fulsk_chaos.drills import corpus
from fulsk_chaos.drills.guide import Exploration
from fulsk_chaos.drills.reach import EFFECTS, REACHABLE, FaultView, Moment, ReachCatalogue, Reachable, Roles
from fulsk_chaos.drills.states import catalogue
from fulsk_chaos.drills.schedule_search import search
from fulsk_chaos.drills.search_result import found
from fulsk_chaos.drills.schedules import HEAL, ScheduleFailed, ScheduleStep as Step, Trial
from fulsk_chaos.plugin import duration_s
from fulsk_chaos.services.spec import Edge

ROLES = Roles(backend="backend", database="postgres", cache="redis", broker="mqtt")
EDGES = {name: Edge(name, *name.split("-"), 0) for name in ("backend-postgres", "backend-redis", "backend-mqtt")}
STACK = SimpleNamespace(topology=SimpleNamespace(edges=EDGES))
MENU = [Step(k, t) for k in ("kill", "pause") for t in ("backend", "mqtt", "postgres", "redis", "frontend")] + \
       [Step(k, e) for k in ("latency", "down") for e in EDGES] + [Step("flood", "mqtt")]


def view(text: str) -> FaultView:
    step = Step.parse(text)
    return FaultView.of(STACK, step.kind, step.target)


def moment(*active: str, schedule: tuple[str, ...] = (), healed: str | None = None, backlog: int | None = None,
           answered: int = 0) -> Moment:
    steps = tuple(Step.parse(s) for s in (schedule or active))
    return Moment(steps, tuple(view(a) for a in active), ROLES, view(healed) if healed else None, backlog, answered)


def test_every_fault_kind_of_the_catalogue_says_what_it_does():
    assert sorted(set(CATALOGUE) - set(EFFECTS)) == []


def test_a_state_is_reached_only_by_what_it_names_and_scored_by_how_close_it_came():
    states = catalogue(ReachSettings(backlog=400))
    both = states.items["cache-out-database-slow"]
    assert both.measure(moment("kill:redis", "latency:backend-postgres", answered=3)) == 1.0
    assert both.measure(moment("kill:redis", "latency:backend-postgres")) < 1.0  # nobody read meanwhile
    assert both.measure(moment("kill:redis", "kill:postgres", answered=3)) < 1.0  # out is not slow
    assert both.measure(moment("latency:backend-redis", "latency:backend-postgres", answered=1)) == 1.0
    backlog = states.items["ingest-back-with-backlog"]
    healed = ("kill:backend", "heal")
    assert backlog.measure(moment(schedule=healed, healed="kill:backend", backlog=400)) == 1.0
    assert backlog.measure(moment(schedule=healed, healed="kill:backend", backlog=200)) == 0.5
    assert backlog.measure(moment(schedule=healed, healed="kill:backend", backlog=None)) == 0.0  # unknown is not close
    assert backlog.measure(moment(schedule=("kill:redis", "heal"), healed="kill:redis", backlog=900)) == 0.0
    assert backlog.measure(moment(schedule=("down:backend-mqtt", "heal"), healed="down:backend-mqtt",
                                  backlog=900)) == 1.0


def test_coverage_names_the_first_schedule_that_reached_each_state():
    clock = iter(range(0, 1000, 10))
    exploration = Exploration(catalogue(), clock=lambda: next(clock))
    exploration.begin(ROLES, guided=False)
    exploration.observe(moment("kill:redis", answered=2))
    exploration.begin(ROLES, guided=False)
    exploration.observe(moment("pause:redis", answered=2))
    report = exploration.to_json()
    first = report["states"]["read-while-cache-out"]
    assert first["reached"] and first["first_schedule"] == ["kill:redis"] and first["first_example"] == 1
    assert report["declared"] == len(catalogue()) and report["reached"] == exploration.covered >= 1
    assert report["timeline"][0][1] == 1 and not report["states"]["three-at-once"]["reached"]


def test_a_guided_schedule_takes_the_steps_toward_its_focus_then_the_unexplored_ones():
    states = catalogue()
    exploration = Exploration(states, guidance=1.0, offset=list(states.items).index("cache-out-database-slow") - 1)
    exploration.begin(ROLES, guided=True)
    assert exploration.focus == "cache-out-database-slow"
    first = exploration.preferred(MENU, lambda s: FaultView.of(STACK, s.kind, s.target))
    toward = {"kill:redis", "pause:redis", "latency:backend-redis", "down:backend-redis", "latency:backend-postgres"}
    assert first and set(map(str, first)) <= toward  # of those, the ones that most other unreached states want too
    exploration.observe(moment("kill:redis"))
    assert [str(s) for s in exploration.preferred(MENU, lambda s: FaultView.of(STACK, s.kind, s.target))] == \
        ["latency:backend-postgres"]
    # unguided: every option
    exploration.begin(ROLES, guided=False)
    assert exploration.preferred(MENU, lambda s: FaultView.of(STACK, s.kind, s.target)) == MENU
    # nothing to focus on: the steps never taken from the faults now active
    unhinted = ReachCatalogue({"x": Reachable("x", "never", lambda m: 0.0)})
    exploration = Exploration(unhinted, guidance=1.0)
    exploration.begin(ROLES, guided=True)
    exploration.observe(moment("kill:redis"))
    exploration.begin(ROLES, guided=True)
    assert exploration.focus is None
    options = exploration.preferred(MENU, lambda s: FaultView.of(STACK, s.kind, s.target))
    assert Step("kill", "redis") not in options and len(options) == len(MENU) - 1


def test_users_declare_more_states_with_the_same_decorator():
    @REACHABLE.item("frontend-out", "the frontend out")
    def _(m: Moment) -> float:
        return float(m.any("out", "frontend"))
    try:
        assert catalogue().items["frontend-out"].measure(moment("kill:frontend")) == 1.0
        with pytest.raises(FulskChaosError, match="declared twice"):
            REACHABLE.item("frontend-out", "again")(lambda m: 0.0)
    finally:
        REACHABLE.items.pop("frontend-out")


class SimulatedStack:
    """The schedule runner's interface over a model of the stack: each step lasts one fault_s and
    the ingest backlog grows 150 readings per step while the ingest path is cut. ``bug``: a heal
    that ends such a cut with a backlog of ``shed_above`` or more fails, as the backlog-shed bug does."""

    def __init__(self, profile: ScheduleProfile, bug: bool = False, shed_above: int = 600) -> None:
        self.profile, self.bug, self.shed_above = profile, bug, shed_above
        self.roles, self.watch, self.steps_run = ROLES, None, 0
        self.active: list[FaultView] = []
        self.schedule: list[Step] = []
        self.cut = 0

    def view(self, step: Step) -> FaultView:
        return FaultView.of(STACK, step.kind, step.target)

    def applicable(self, steps: list[Step]) -> list[Step]:
        taken = {(f.kind, f.target) for f in self.active}
        return [s for s in steps if (s.kind, s.target) not in taken]

    def _moment(self, **kw) -> Moment:
        return Moment(tuple(self.schedule), tuple(self.active), ROLES, **kw)

    def inject(self, step: Step) -> None:
        self.schedule.append(step)
        self.active.append(self.view(step))
        self.steps_run += 1
        self.cut = self.cut + 150 if self._moment().ingest_out() else 0
        if self.watch:
            self.watch(self._moment(answered=1))

    def heal(self) -> None:
        healed = self.active.pop()
        self.schedule.append(Step(HEAL))
        backlog = self.cut
        if self.watch:
            self.watch(self._moment(healed=healed, backlog=backlog, answered=1))
        if not self._moment().ingest_out():
            self.cut = 0
            if self.bug and backlog >= self.shed_above:
                raise ScheduleFailed(f"lost readings of a backlog of {backlog}")

    def heal_all(self) -> None:
        while self.active:
            self.heal()

    def reset(self) -> None:
        self.active.clear()
        self.schedule.clear()
        self.cut = 0

    def run(self, steps: list[Step]) -> Trial:
        trial = Trial(list(steps))
        try:
            for step in steps:
                self.inject(step) if not step.is_heal else self.active and self.heal()
            self.heal_all()
        except ScheduleFailed as exc:
            trial.failure = str(exc)
        finally:
            self.reset()
        return trial

    def bites(self) -> tuple[int, list[str]]:
        return self.steps_run, []


def _search(seed: int, guidance: float, bug: bool = False):
    profile = ScheduleProfile(max_examples=8, max_steps=6, max_active=3, replays=3, guidance=guidance)
    return search(SimulatedStack(profile, bug), "drill", seed, lambda extra: "", steps=MENU)  # type: ignore[arg-type]


def test_guidance_reaches_more_states_than_chance_on_the_same_budget():
    guided = [_search(seed, 1.0).coverage["reached"] for seed in range(5)]
    unguided = [_search(seed, 0.0).coverage["reached"] for seed in range(5)]
    assert sum(guided) > sum(unguided), (guided, unguided)


def test_a_rare_state_bug_is_found_by_guidance_and_reported_with_how_often_it_reproduces():
    result = _search(3, 1.0, bug=True)
    assert result.minimal is not None and "backlog" in (result.failure or "")
    assert result.reproduced == "3 of 3" and not result.nondeterministic
    entries = found(result, {"seed": 3, "profile": "drill", "provider": "simulated"})
    failed = [e for e in entries if e.why == "failed"]
    assert failed and failed[0].steps == [str(s) for s in result.minimal] and failed[0].reproduced == "3 of 3"
    assert {n for e in entries for n in e.reached} == {n for n, s in result.coverage["states"].items() if s["reached"]}


def test_a_corpus_entry_reads_back_as_written_and_is_promoted_from_a_results_file(tmp_path):
    entry = corpus.CorpusEntry(["kill:backend", "latency:backend-postgres", "heal"], "failed", seed=7,
                               profile="drill", provider="local", verdict="fail", failure="lost 3",
                               reproduced="2 of 3")
    path = entry.write(tmp_path / "found")
    assert corpus.read(path) == entry and path.name.startswith("failed-")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"scenarios": [{"name": "fault_schedules",
                                                  "measurements": {"corpus": [entry.to_json()]}}]}))
    written = corpus.add(results, tmp_path / "committed")
    assert [corpus.read(p) for p in written] == [entry]
    assert corpus.entries(tmp_path / "committed")[0][1] == entry
    with pytest.raises(FulskChaosError, match="unknown keys \\['stpes'\\]"):
        corpus.CorpusEntry.from_json({"format": corpus.FORMAT, "steps": ["heal"], "why": "x", "stpes": []})
    with pytest.raises(FulskChaosError, match="no corpus entry"):
        corpus.from_results(tmp_path / "empty.json") if (tmp_path / "empty.json").write_text("{}") else None


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400)])
def test_a_budget_reads_as_a_duration(text, seconds):
    assert duration_s(text) == seconds


class OnceOnly(SimulatedStack):
    """Fails the first time its rare state is reached, never again: a failure of the moment."""

    def heal(self) -> None:
        try:
            super().heal()
        except ScheduleFailed:
            if getattr(self, "failed_once", False):
                return
            self.failed_once = True
            raise


def test_a_failure_that_never_reproduces_is_reported_as_nondeterministic():
    profile = ScheduleProfile(max_examples=8, max_steps=6, max_active=3, replays=3, guidance=1.0)
    result = search(OnceOnly(profile, bug=True), "drill", 3, lambda extra: "", steps=MENU)  # type: ignore[arg-type]
    assert result.minimal is not None and result.reproduced == "0 of 3" and result.nondeterministic
    assert result.to_json()["nondeterministic"] is True and result.found_after is not None


class HangingProxy(SimulatedStack):
    """Its proxy hangs on the first heal of a network fault (as Toxiproxy can removing a toxic
    from a connection whose peer died), and on every heal of ``always``."""

    def __init__(self, profile: ScheduleProfile, bug: bool = False, always: str = "") -> None:
        super().__init__(profile, bug)
        self.always, self.restarts, self.hung = always, 0, False

    def heal(self) -> None:
        last = self.active[-1]
        if last.kind in ("latency", "down") and (not self.hung or f"{last.kind}:{last.target}" == self.always):
            self.hung = True
            raise InstrumentError("toxiproxy DELETE: no answer within 30 s")
        super().heal()

    def spoil(self, trial: Trial, exc: Exception) -> None:
        trial.spoiled = str(exc)
        self.restarts += 1


def test_a_schedule_the_proxy_spoils_is_neither_a_failure_nor_a_pass_and_the_search_goes_on():
    profile = ScheduleProfile(max_examples=8, max_steps=6, max_active=3, replays=3, guidance=1.0)
    stack = HangingProxy(profile)
    result = search(stack, "drill", 0, lambda extra: "", steps=MENU)  # type: ignore[arg-type]
    assert result.minimal is None and result.failure is None  # the healthy stack: nothing found
    assert result.spoiled >= 1 and stack.restarts >= 1 and result.to_json()["spoiled"] == result.spoiled
    assert result.examples > result.spoiled  # the search went on after it



def test_the_observers_outlive_a_searchs_budget_and_what_follows_it():
    """Bounded at 15 minutes, the fleet of a 15-minute explore run stopped before the steady state
    after it: nothing acknowledged there, no evidence, an error."""
    from fulsk_chaos.drills.instruments import BOUND_S, bound_s
    assert bound_s(None) == BOUND_S >= 1800
    assert bound_s(900) >= BOUND_S + 2 * 900 and bound_s(3600) >= BOUND_S + 2 * 3600

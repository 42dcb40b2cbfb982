"""The stress search finds the knee, not a bracket: the ladder until a step breaks, then bisection
to within knee_resolution - judged here with fake judges (a stack whose knee is known), no stack."""
from __future__ import annotations

import json

import pytest

from fulsk_chaos import config
from fulsk_chaos.errors import ConfigError, FaultError
from fulsk_chaos.load import knee
from fulsk_chaos.load.knee import BISECT, BROKEN, HELD, INVALID, RAMP, SHORT, Search
from fulsk_chaos.load.profile import from_mapping
from fulsk_chaos.load.samples import LoadSample, LoadSamples
from fulsk_chaos.load.steering import CONTROL_FILE, LEAD_S, RateSchedule, Steering, read_plan
from fulsk_chaos.load.under_fault import FaultSpec, UnderFault, compare

LADDER = (50, 100, 200, 400, 800, 1200, 1600, 2400, 3200)


def search_against(knee_rps: float, ladder=LADDER, resolution: float = 0.1, **special: str) -> Search:
    """The whole search against a stack that holds every rate up to ``knee_rps``; ``special``:
    outcomes forced at given rates (``{"600": "invalid"}``)."""
    search = Search(tuple(ladder), resolution)
    for _ in range(50):
        step = search.next
        if step is None:
            return search
        search = search.then(special.get(f"{step.rate:g}", HELD if step.rate <= knee_rps else BROKEN))
    raise AssertionError(f"the search never ended: {search.judged}")


@pytest.mark.parametrize("knee_rps", [57, 99, 100, 101, 333, 401, 555, 799, 1000, 1500, 3000])
def test_the_search_brackets_the_knee_within_the_resolution(knee_rps):
    search = search_against(knee_rps)
    held, broken = search.bracket
    assert held <= knee_rps < broken
    assert (broken - held) / held <= 0.1, search.judged
    assert search.capacity == held
    assert search.ended.startswith("resolved")


def test_the_ladder_runs_until_a_step_breaks_then_bisects_in_between():
    search = search_against(555)
    phases = [(rate, phase) for rate, phase, _ in search.judged]
    assert phases[:5] == [(50, RAMP), (100, RAMP), (200, RAMP), (400, RAMP), (800, RAMP)]
    assert all(phase == BISECT and 400 < rate < 800 for rate, phase in phases[5:])
    # geometric midpoints: a factor of two is within 10 % after three halvings
    assert len(phases) - 5 <= knee.max_bisections(LADDER, 0.1)
    assert [r for r, _ in phases[5:]] == [566, 476, 519]  # 566 broke; 476 and 519 held
    assert search.bracket == (519, 566)


@pytest.mark.parametrize("resolution", [0.02, 0.05, 0.1, 0.25, 0.5])
def test_a_finer_resolution_takes_more_steps_and_never_more_than_the_bound(resolution):
    for knee_rps in (57, 150, 450, 999, 1300, 2500):
        search = search_against(knee_rps, resolution=resolution)
        held, broken = search.bracket
        bisections = sum(1 for _, phase, _ in search.judged if phase == BISECT)
        assert (broken - held) / held <= resolution + 1e-9
        assert bisections <= knee.max_bisections(LADDER, resolution)


def test_a_resolution_as_wide_as_the_ladder_never_bisects():
    search = search_against(555, resolution=1.0)
    assert search.bracket == (400, 800) and all(phase == RAMP for _, phase, _ in search.judged)


def test_the_first_step_broken_is_capacity_zero_and_no_bisection():
    search = search_against(10)
    assert search.judged == ((50, RAMP, BROKEN),)
    assert search.capacity == 0.0 and search.bracket == (0.0, 50)
    assert "the first step (50 req/s) broke" in search.ended


def test_a_ladder_that_always_holds_ends_with_the_knee_above_it():
    search = search_against(10_000)
    assert search.capacity == 3200 and search.bracket == (3200, None)
    assert "the knee is above 3200 req/s" in search.ended


def test_a_saturated_generator_ends_the_search_with_the_bracket_so_far_and_says_so():
    search = search_against(555, **{"519": INVALID})
    assert search.next is None
    assert search.bracket == (476, 566)  # what was known before the invalid step
    assert "the generator saturated at 519 req/s" in search.ended
    ramp = search_against(555, **{"200": INVALID})  # on the ladder: no bisection at all
    assert ramp.bracket == (100, None) and ramp.capacity == 100 and "saturated at 200" in ramp.ended


def test_too_little_evidence_ends_the_search_too():
    search = search_against(555, **{"476": SHORT})
    assert search.next is None and search.bracket == (400, 566) and "too little evidence at 476" in search.ended


def test_the_rate_after_a_step_that_holds_is_known_before_it_is_judged():
    search = search_against(555, **{"566": BROKEN})
    partial = Search(search.ladder, search.resolution, search.judged[:6])  # ladder, then 566 broke
    assert partial.next == knee.Next(476, BISECT)
    assert partial.ahead == knee.Next(519, BISECT)  # what follows 476 if it holds
    last = Search(search.ladder, search.resolution, search.judged[:-1])
    assert last.next is not None and last.ahead is None  # if it holds, the search is over


def test_rates_too_close_to_tell_apart_end_the_search():
    search = search_against(1.5, ladder=(1, 2), resolution=0.01)
    held, broken = search.bracket
    assert "cannot be told apart" in search.ended and held < broken


@pytest.mark.parametrize("ladder, resolution, message", [
    ((), 0.1, "rising positive rates"), ((100, 50), 0.1, "rising positive rates"), ((0, 50), 0.1, "rising"),
    ((50, 100), 0, "a fraction"), ((50, 100), 1.5, "a fraction")])
def test_a_bad_search_is_refused(ladder, resolution, message):
    with pytest.raises(ValueError, match=message):
        Search(ladder, resolution)


def test_an_ended_search_judges_nothing_more():
    search = search_against(10)
    with pytest.raises(ValueError, match="has ended"):
        search.then(HELD)
    with pytest.raises(ValueError, match="outcome is one of"):
        Search(LADDER, 0.1).then("fine")


@pytest.mark.parametrize("value, ok", [(0.1, True), (1, True), (0.01, True), (1.5, False), (0, False), (-0.1, False)])
def test_knee_resolution_must_be_a_fraction(value, ok):
    if ok:
        assert config.from_mapping({"load": {"knee_resolution": value}}).load.knee_resolution == value
    else:
        with pytest.raises(ConfigError, match="load.knee_resolution"):
            config.from_mapping({"load": {"knee_resolution": value}})


# --- the driver, on a fake clock ------------------------------------------------------------------
class FakeClock(knee.Clock):
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, s: float) -> None:
        self.t += s


def drive(tmp_path, knee_rps: float, *, recovers_after_s: float = 3.0, each_step=None, step_s: float = 10.0,
          clock: FakeClock | None = None):
    clock, steering, judged, plans = clock or FakeClock(), Steering(tmp_path), [], []
    original = steering.plan

    def plan(*changes):
        plans.append(changes)
        original(*changes)
    steering.plan = plan

    def judge(k, step, start, end):
        judged.append((k, step, start, end, clock.t))
        return (HELD if step.rate <= knee_rps else BROKEN), {"step": k + 1, "rate_rps": step.rate}

    broke_at: list[float] = []

    def recovered(start, end):
        broke_at.append(start) if not broke_at else None
        return end - broke_at[0] >= recovers_after_s
    found = knee.run(Search(LADDER, 0.1), steering, clock.t, step_s, judge, recovered=recovered,
                     cooldown_max=15.0, each_step=each_step, clock=clock)
    return found, judged, plans, steering


def test_steps_that_hold_follow_each_other_without_a_gap(tmp_path):
    found, judged, plans, _ = drive(tmp_path, 10_000)
    starts = [end - 10.0 for _, _, _, end, _ in judged]
    assert starts == [1000.0 + 10 * k for k in range(len(LADDER))]  # the ladder's own timing
    for (_, _, start, end, at), k in zip(judged, range(len(judged))):
        assert start == end - 10.0 + 1.0  # a second of settling, as the ladder had
        assert at >= end + knee.FLUSH_S  # judged once its samples are written
    # each step tells the generator ahead what follows it if it holds
    assert plans[0] == ((1000.0, 50), (1010.0, 100))
    assert found.capacity == 3200 and found.steps[-1]["phase"] == RAMP


def test_a_broken_step_is_followed_by_a_rest_at_the_first_rate_until_the_stack_recovers(tmp_path):
    found, judged, plans, steering = drive(tmp_path, 555)
    assert found.capacity == 519 and found.bracket == [519, 566]
    assert found.ended.startswith("resolved")
    broken_800 = next(j for j in judged if j[1].rate == 800)
    after = judged[judged.index(broken_800) + 1]
    rest = next(p for p in plans if p == ((broken_800[4] + LEAD_S, 50),))  # at the first rate, planned ahead
    assert after[3] - 10.0 >= rest[0][0] + 3.0  # the next step began once the rest had lasted
    assert found.steps[judged.index(after)]["rested_s"] == pytest.approx(3.0)
    # the plan the generator reads is the whole plan, in order
    written = json.loads((tmp_path / CONTROL_FILE).read_text())
    assert written == sorted(written) and written[-1][1] in (50, 519)


def test_a_stack_that_never_recovers_ends_the_search(tmp_path):
    found, _, _, _ = drive(tmp_path, 555, recovers_after_s=60.0)
    assert "did not answer 50 req/s within its baseline 15 s after the broken step at 800" in found.ended
    assert found.bracket == [400, 800]


def test_a_fault_repeated_every_step_is_applied_as_each_step_begins_and_judged_from_then(tmp_path):
    clock, applied = FakeClock(), []
    found, judged, _, _ = drive(tmp_path, 555, each_step=lambda: applied.append(clock.t), clock=clock)
    assert len(applied) == len(judged) == len(found.steps)
    assert [start for _, _, start, _, _ in judged] == applied  # each step judged from its fault on
    for (_, step, start, end, _), rested in zip(judged, [s.get("rested_s") for s in found.steps]):
        if rested is None and step.rate != 50:  # planned ahead: confirmed once the step before was judged
            assert start >= end - 10.0 + knee.FLUSH_S
        else:  # after a rest (or the first): at the window's start, after a second of settling
            assert start == end - 10.0 + 1.0


def test_answers_within_needs_every_due_request_answered_within_the_baseline():
    def api(n, ms, ok=True, start=0.0):
        return [LoadSample(start + i / n, "GET", "/api/x", ms, ok) for i in range(n)]
    assert knee.answers_within(LoadSamples(api(50, 5)), 0, 1, 50, 500, 0.05)
    assert not knee.answers_within(LoadSamples(api(20, 5)), 0, 1, 50, 500, 0.05)  # the rest still queued
    assert not knee.answers_within(LoadSamples(api(50, 900)), 0, 1, 50, 500, 0.05)
    assert not knee.answers_within(LoadSamples(api(40, 5) + api(10, 5, ok=False)), 0, 1, 50, 500, 0.05)


def test_the_run_bound_covers_the_ladder_and_every_bisection():
    profile = from_mapping({"api": {"steps": list(LADDER), "step_s": 15}, "warmup_s": 3})
    bound = knee.run_bound_s(profile, 0.1)
    per = 15 + knee.cooldown_max_s(profile.timeout_s)
    assert bound >= 3 + len(LADDER) * 15 + knee.max_bisections(LADDER, 0.1) * per


# --- the control channel --------------------------------------------------------------------------
def test_the_generator_follows_the_ladder_until_steered_then_the_plan(tmp_path):
    profile = from_mapping({"api": {"steps": [10, 20, 40], "step_s": 5}})
    schedule = RateSchedule(profile.rate_at)
    assert [schedule.rate(100 + t, 100) for t in (0, 5, 10, 15)] == [10, 20, 40, 0]
    steering = Steering(tmp_path)
    steering.plan((105.0, 20), (110.0, 30))
    steering.plan((110.0, 25), (115.0, 10))  # a later decision replaces what was planned from then on
    schedule.steer(json.loads(read_plan(tmp_path)))
    assert [schedule.rate(100 + t, 100) for t in (0, 5, 9.99, 10, 14, 15, 99)] == [10, 20, 20, 25, 25, 10, 10]


# --- under fault ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, target, params, every, scale", [
    ("latency:backend-postgres,latency_ms=100", "latency", "backend-postgres", {"latency_ms": 100}, False, None),
    ("latency:backend-postgres,backend-redis,jitter_ms=0,stream=both", "latency", "backend-postgres,backend-redis",
     {"jitter_ms": 0, "stream": "both"}, False, None),
    ("flushall:redis,every=step", "flushall", "redis", {}, True, None),
    ("kill:backend,scale=3", "kill", "backend", {}, False, 3),
    ("latency:backend-postgres,toxicity=0.5", "latency", "backend-postgres", {"toxicity": 0.5}, False, None),
])
def test_an_under_fault_spec_reads_kind_target_and_parameters(text, kind, target, params, every, scale):
    spec = FaultSpec.parse(text)
    assert (spec.kind, spec.target, spec.params, spec.every_step, spec.scale) == (kind, target, params, every, scale)
    assert FaultSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, message", [
    ("latency", "KIND:TARGET"), ("latency:", "KIND:TARGET"), (":redis", "KIND:TARGET"),
    ("nope:redis", "no fault kind 'nope'"), ("flushall:redis,every=minute", "every=step"),
    ("latency:backend-postgres,scale=3", "acts on edges"), ("kill:backend,scale=two", "number of instances")])
def test_a_bad_under_fault_spec_says_what_is_wrong(text, message):
    with pytest.raises(FaultError, match=message):
        FaultSpec.parse(text)


class FakeInjector:
    def __init__(self) -> None:
        self.stack = self
        self.log: list[str] = []

    def scale(self, name, n):
        self.log.append(f"scale {name} {n}")

    def inject(self, kind, target, **params):
        self.log.append(f"inject {kind} {target} {params}")
        log = self.log

        class Held:
            def rollback(self):
                log.append(f"rollback {kind}")
        return Held()


def test_a_held_fault_is_rolled_back_and_scaled_back_however_the_search_ends():
    injector = FakeInjector()
    under = UnderFault(FaultSpec.parse("kill:backend,scale=3"), injector)
    with pytest.raises(RuntimeError):
        with under.holding(lambda _: None) as each_step:
            assert each_step is None
            raise RuntimeError("the search broke")
    assert injector.log == ["scale backend 3", "inject kill backend {}", "rollback kill", "scale backend 1"]


def test_a_fault_every_step_is_injected_anew_at_each_step():
    injector = FakeInjector()
    under = UnderFault(FaultSpec.parse("flushall:redis,every=step"), injector)
    with under.holding(lambda _: None) as each_step:
        assert injector.log == []  # nothing until the first step begins
        each_step()
        each_step()
    assert injector.log == ["inject flushall redis {}", "rollback flushall", "inject flushall redis {}",
                            "rollback flushall"]


def test_the_capacity_under_fault_is_compared_with_what_is_known_and_says_with_what():
    spec = FaultSpec.parse("flushall:redis,every=step")
    same_run = {"capacity_rps": 800, "capacity_bracket_rps": [800, 860], "source": "this run's healthy search"}
    stored = {"capacity_rps": 700, "capacity_bracket_rps": [700, 760], "source": "the stored stress baseline"}
    found = compare(400, [400, 430], UnderFault(spec, FakeInjector(), same_run), stored)
    assert found.capacity_ratio == 0.5 and found.healthy_capacity["source"] == "this run's healthy search"
    assert found.capacity_ratio_bracket == [round(400 / 860, 3), round(430 / 800, 3)]
    assert compare(400, [400, 430], UnderFault(spec, FakeInjector()), stored).capacity_ratio == round(400 / 700, 3)
    alone = compare(400, [400, 430], UnderFault(spec, FakeInjector()), None, "no stress baseline is stored")
    assert "capacity_ratio" not in alone.to_json()
    assert alone.capacity_ratio_not_computed.endswith("and no stress baseline is stored")
    assert alone.under_fault == {"fault": "flushall:redis", "params": {}, "every_step": True, "scale": None}

"""The backend contract as data: read with the configuration's strict checks, and translating
between the framework's canonical readings and what a backend publishes, answers and stores."""
from __future__ import annotations

import json

import pytest

from fulsk_chaos import contract
from fulsk_chaos.contract import Contract, from_mapping
from fulsk_chaos.errors import ConfigError

# A backend a Node team would write: other names, no sequence number, ISO 8601 times, kilowatts.
NODE = {
    "name": "node",
    "publish": {"topic": "solar/{inverter_id}/telemetry",
                "fields": {"inverter_id": "deviceId", "seq": "", "site_id": "siteId", "ts": "recordedAt",
                           "power_w": "powerKw", "energy_wh": "energyKwh"},
                "units": {"timestamp": "iso8601", "power": "kW", "energy": "kWh"}},
    "reads": {"latest": {"path": "/api/v1/devices/{inverter}/telemetry/latest", "items": "",
                         "fields": {"inverter_id": "device.id", "seq": "", "ts": "recordedAt", "power_w": "powerKw",
                                    "energy_wh": "energyKwh", "site_id": "device.site"},
                         "units": {"timestamp": "iso8601", "power": "kW", "energy": "kWh"}}},
    "ledger": {"query": "SELECT device_id AS inverter_id, recorded_at AS ts FROM telemetry "
                        "WHERE device_id = ANY(%(ids)s)", "identity": "ts"},
}


def test_the_reference_backends_contract_is_its_file():
    found = contract.load()
    assert found.name == "reference" and found.capabilities.instance_header == "X-Fulsk-Instance"
    assert found.reads.history.items == "readings" and found.reads.listing.fields.last_seen == "last_seen"
    assert found.publish == Contract().publish and found.reads == Contract().reads and found.ledger == Contract().ledger


@pytest.mark.parametrize("data, said", [
    ({"publish": {"topik": "x"}}, "publish.topik: unknown key"),
    ({"publish": {"qos": "1"}}, "publish.qos: expected an integer"),
    ({"publish": {"units": {"power": "MW"}}}, "publish.units.power: 'MW' is not one of W, kW"),
    ({"reads": {"history": {"units": {"timestamp": "rfc822"}}}}, "reads.history.units.timestamp"),
    ({"ledger": {"identity": "uuid"}}, "ledger.identity: 'uuid'"),
    ({"publish": {"fields": {"seq": ""}}}, "ledger.identity is seq, but publish.fields.seq is empty"),
    ({"ledger": {"query": "SELECT * FROM readings"}}, "ledger.query must use %(ids)s"),
    ({"ledger": {"delete_site": "DELETE FROM readings"}}, "ledger.delete_site must use %(site)s"),
])
def test_a_wrong_contract_is_one_line_naming_what_is_wrong(data, said):
    with pytest.raises(ConfigError, match=None) as caught:
        from_mapping(data)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_contract_file_that_is_not_there_or_not_toml_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no such contract file"):
        contract.load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("publish = {")
    with pytest.raises(ConfigError, match="not TOML"):
        contract.load(tmp_path / "bad.toml")


def test_a_reading_is_published_as_the_backend_wants_it():
    reading = {"inverter_id": "inv-1", "seq": 7, "site_id": "s1", "ts": 1764892800.25, "power_w": 4200.0,
               "energy_wh": 1.1667}
    assert Contract().publish.payload(reading) == reading  # the reference backend takes it as it is
    node = from_mapping(NODE)
    assert node.publish.payload(reading) == {"deviceId": "inv-1", "siteId": "s1",
                                             "recordedAt": "2025-12-05T00:00:00.250Z", "powerKw": 4.2,
                                             "energyKwh": 0.0011667}
    assert node.key(reading) == ("inv-1", 1764892800250) and Contract().key(reading) == ("inv-1", 7)


def test_an_answer_is_read_back_into_canonical_readings():
    node = from_mapping(NODE)
    answer = {"device": {"id": "inv-1", "site": "s1"}, "recordedAt": "2025-12-05T00:00:00.250Z", "powerKw": 4.2,
              "energyKwh": 0.0011667}
    (row,) = node.reads.latest.rows(answer)
    assert row == {"inverter_id": "inv-1", "site_id": "s1", "ts": 1764892800.25, "power_w": 4200.0,
                   "energy_wh": pytest.approx(1.1667)}
    history = Contract().reads.history.rows({"readings": [{"seq": 1, "ts": 1.5, "power_w": 3}]})
    assert history == [{"seq": 1, "ts": 1.5, "power_w": 3.0}]
    with pytest.raises(KeyError):
        Contract().reads.history.rows({"rows": []})  # not where the contract says the readings are
    with pytest.raises(ValueError):
        Contract().reads.history.rows({"readings": {"seq": 1}})


def test_the_ledger_reads_a_backend_of_other_tables_names_units_and_identity(stack):
    """A table keyed by (device, time) with kilowatts: the contract's query returns it under
    canonical names, and each row is keyed by its timestamp in milliseconds."""
    import psycopg
    from fulsk_chaos.checks.ledger import check_ledger, read_stored, stored_keys, stored_with_prefix

    node = from_mapping({**NODE, "ledger": {
        "identity": "ts",
        "query": "SELECT device_id AS inverter_id, site AS site_id, recorded_at AS ts, power_kw * 1000 AS power_w, "
                 "energy_kwh * 1000 AS energy_wh FROM contract_telemetry WHERE device_id = ANY(%(ids)s)",
        "inverters": "SELECT DISTINCT device_id AS inverter_id FROM contract_telemetry"}})
    dsn = stack.endpoints.database_dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS contract_telemetry")
        conn.execute("CREATE TABLE contract_telemetry (device_id text, site text, recorded_at timestamptz, "
                     "power_kw double precision, energy_kwh double precision)")
        conn.execute("INSERT INTO contract_telemetry VALUES ('dev-1', 's1', to_timestamp(1764892800.25), 4.2, 0.0011667),"
                     " ('dev-1', 's1', to_timestamp(1764892801.25), 4.3, 0.0011944),"
                     " ('dev-1', 's1', to_timestamp(1764892801.25), 4.3, 0.0011944)")  # the second, stored twice
    try:
        sent = {("dev-1", 1764892800250): {"site_id": "s1", "ts": 1764892800.25, "power_w": 4200.0,
                                           "energy_wh": 1.1667},
                ("dev-1", 1764892801250): {"site_id": "s1", "ts": 1764892801.25, "power_w": 4300.0,
                                           "energy_wh": 1.1944}}
        assert dict(stored_keys(dsn, ["dev-1"], contract=node)) == {("dev-1", 1764892800250): 1,
                                                                    ("dev-1", 1764892801250): 2}
        result = check_ledger(sent, sent, read_stored(dsn, ["dev-1"], contract=node))
        assert result.lost == [] and result.altered == [] and result.duplicates == [("dev-1", 1764892801250)]
        assert stored_with_prefix(dsn, "dev-", contract=node) == ["dev-1"]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE contract_telemetry")


def _reference_with(**changes) -> Contract:
    """The reference backend's contract with some items wrong."""
    import dataclasses
    found = contract.load()
    for path, value in changes.items():
        parts = path.split("__")
        def replaced(obj, names):
            if len(names) == 1:
                return dataclasses.replace(obj, **{names[0]: value})
            return dataclasses.replace(obj, **{names[0]: replaced(getattr(obj, names[0]), names[1:])})
        found = replaced(found, parts)
    return found


def test_contract_check_passes_the_reference_backend_and_names_each_wrong_item(stack):
    """One line per item: the reference contract holds on its backend; a wrong JSON path, a wrong
    unit and a wrong ledger query are each caught on the item they break."""
    from fulsk_chaos.contract import Fields, Units
    from fulsk_chaos.contract_check import check
    right = {i.name: i for i in check(stack)}
    assert all(i.ok for i in right.values()), [i.line() for i in right.values()]
    assert set(right) == {"publish", "ledger", "reads.latest", "reads.history", "reads.listing", "reads.generation",
                          "feed", "health"}

    wrong_path = {i.name: i for i in check(stack, _reference_with(reads__history__items="rows"))}
    assert not wrong_path["reads.history"].ok and "reads.history" in wrong_path["reads.history"].line()
    assert wrong_path["reads.latest"].ok and wrong_path["ledger"].ok

    wrong_unit = {i.name: i for i in check(stack, _reference_with(
        reads__latest__units=Units(power="kW")))}
    assert not wrong_unit["reads.latest"].ok and "power_w" in wrong_unit["reads.latest"].said
    assert wrong_unit["ledger"].ok

    wrong_query = {i.name: i for i in check(stack, _reference_with(
        ledger__query="SELECT inverter_id, seq, site, ts, power_w, energy_wh FROM readings "
                      "WHERE inverter_id = ANY(%(ids)s)"))}
    assert not wrong_query["ledger.query"].ok and "ledger" in wrong_query["ledger.query"].said
    assert wrong_query["reads.latest"].ok

    wrong_feed = {i.name: i for i in check(stack, _reference_with(feed__fields=Fields(seq="sequence")))}
    assert not wrong_feed["feed"].ok and "feed.fields" in wrong_feed["feed"].said


def test_the_backend_under_test_is_chosen_by_its_contract_and_a_wrong_one_stops_the_run(pytester, tmp_path):
    from fulsk_chaos.plugin import SETTINGS
    chosen = pytester.parseconfigure("--backend", "reference", "--report-dir", str(tmp_path))
    assert chosen.stash[SETTINGS].backend.contract == str(contract.REFERENCE)
    with pytest.raises(pytest.UsageError, match="no backend of that name"):
        pytester.parseconfigure("--backend", "nope", "--report-dir", str(tmp_path))
    wrong = tmp_path / "contract.toml"
    wrong.write_text('[publish]\ntopik = "x"\n')
    with pytest.raises(pytest.UsageError, match="publish.topik: unknown key"):
        pytester.parseconfigure("--backend", str(tmp_path), "--report-dir", str(tmp_path))


NEEDS_SCALE_OUT = '''
import pytest

@pytest.mark.needs("instance_header")
def test_scaled_out():
    pass

def test_any_backend():
    pass
'''


def test_a_scenario_that_needs_what_the_backend_lacks_is_skipped_saying_which(pytester, tmp_path):
    pytester.makepyfile(test_needs=NEEDS_SCALE_OUT)
    on_node = pytester.runpytest("--backend", "node", "--report-dir", str(tmp_path / "node"), "-rs", "-p",
                                 "no:cacheprovider")
    on_node.assert_outcomes(passed=1, skipped=1)
    on_node.stdout.fnmatch_lines(["*the node backend declares no instance_header (capabilities.instance_header*"])
    on_reference = pytester.runpytest("--backend", "reference", "--report-dir", str(tmp_path / "ref"),
                                      "-p", "no:cacheprovider")
    on_reference.assert_outcomes(passed=2)


def test_the_node_backends_contract_says_how_to_run_it_and_speaks_its_own_words():
    node = contract.load(contract.resolve("node"))
    assert node.run.command[0] == "node" and node.home.endswith("backends/node")
    assert node.ledger.identity == "ts" and not node.publish.fields.seq  # no sequence number
    reading = {"inverter_id": "inv-1", "seq": 7, "site_id": "s", "ts": 1796441820.5, "power_w": 1500.0,
               "energy_wh": 250.0}
    assert node.publish.payload(reading) == {"deviceId": "inv-1", "siteId": "s", "timestamp": "2026-12-05T03:37:00.500Z",
                                             "powerKw": 1.5, "energyKwh": 0.25}
    assert node.key(reading) == ("inv-1", 1796441820500)
    assert node.health.dependency("postgres") == "database"


def test_malformed_telemetry_is_sent_in_the_backends_own_words():
    """Garbage a backend would refuse for the wrong reason (an unknown field name) tests nothing."""
    from fulsk_chaos.faults.clients import malformed_payloads
    node = contract.load(contract.resolve("node"))
    first_round = [next(g) for g in [malformed_payloads("p", 4, node)] for _ in range(15)]
    cases = {case: json.loads(payload) for case, _, payload in first_round
             if case not in ("not-json", "truncated", "oversized")}
    assert not any(case.startswith("seq-") for case in cases)  # the node backend's readings have none
    assert cases["power-as-text"]["powerKw"] == "1234.5" and cases["power-as-text"]["deviceId"] == "p-power-as-text-1"
    assert "powerKw" not in cases["missing-field"] and cases["missing-field"]["energyKwh"] == 0.00034
    assert cases["ts-far-past"]["timestamp"] == "1970-01-02T00:00:00.000Z"


def test_a_drill_with_a_contract_that_misreads_the_backend_is_an_error_not_a_finding(run_scenario, tmp_path):
    """A wrong JSON path makes every latest answer unreadable: that is the contract's fault (error,
    the contract named), not wrong answers blamed on the stack (fail), and never pass."""
    wrong = tmp_path / "contract.toml"
    text = contract.REFERENCE.read_text()
    assert 'path = "/api/inverters/{inverter}/latest"' in text
    wrong.write_text(text.replace('path = "/api/inverters/{inverter}/latest"',
                                  'path = "/api/inverters/{inverter}/latest"\nfields = { seq = "sequence" }', 1))
    run = run_scenario("scenarios/test_cache.py -k flushall", f'[backend]\ncontract = "{wrong}"\n')
    scenario = run.scenario
    assert scenario["verdict"] == "error", run.output[-2000:]
    assert "contract does not describe its answers" in scenario["reason"] and "latest" in scenario["reason"]

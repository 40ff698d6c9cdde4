"""ml.drift on simulator ground truth: thresholds are set in include/config/local.yaml
(calibrated on seed 1); these tests use held-out seeds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from ml import drift as D
from ml import registry
from ml.drift.reference import storable
from ml.features import SchemaError, load_schema
from ml.simulate import simulate
from ml.warehouse import DuckDBWarehouse
from tests.ml.test_drift_check import _tiny_csv

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "include/schemas/traffic.yaml"
TINY = Path(__file__).parent / "data/tiny_schema.yaml"
CONFIG = yaml.safe_load((ROOT / "include/config/local.yaml").read_text())["drift"]
START = dt.date(2024, 3, 4)
SEED = 3  # held out: thresholds were set on seed 1
# scenario → features that must be flagged (drift or label checks)
EXPECTED = {
    "road_closure": {"vehicle_count", "avg_speed_kmh", "occupancy"},
    "new_sensors": {"sensor_id"},
    "weather_model_shift": {"forecast_temp_c"},
    "event_spike": {"scheduled_event"},
    "flood": {"congested"},
    "leaky_feature": {"scheduled_event"},
}
PLAN = {START + dt.timedelta(days=14 + 4 * i + 2): name for i, name in enumerate(EXPECTED)}
DAYS = 14 + 30


def _day(out, day):
    return [out / "landing" / f"dt={day}"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift")
    truth = simulate(out, START, DAYS, SEED, sensors=60, scenarios=PLAN, forecast_days=0)
    reference = D.build_reference([_day(out, START + dt.timedelta(days=i))[0] for i in range(14)], SCHEMA, CONFIG)
    results = {}
    for i in range(14, DAYS):
        day = START + dt.timedelta(days=i)
        results[day] = D.check_drift(reference, _day(out, day), SCHEMA, config=CONFIG)
    return out, truth, reference, results


def test_normal_days_raise_no_alarm(world):
    _, _, _, results = world
    normal = {day: r for day, r in results.items() if day not in PLAN}
    assert len(normal) >= 20
    alarms = {str(day): [(s["feature"], s["slice"], s["metric"], round(s["value"], 3)) for s in r["breaches"]]
              for day, r in normal.items() if not r["ok"]}
    assert alarms == {}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_scenario_is_caught_on_the_right_features(world, scenario):
    _, truth, _, results = world
    day = next(d for d, name in PLAN.items() if name == scenario)
    result = results[day]
    flagged = set(result["drifted"]) | set(result["leakage"])
    assert not result["ok"]
    assert EXPECTED[scenario] <= flagged, (scenario, flagged)
    touched = set(next(e for e in truth["days"] if e["date"] == day.isoformat())["features"])
    assert touched & flagged
    if scenario == "leaky_feature":
        assert result["leakage"] == ["scheduled_event"]
    else:
        assert result["leakage"] == []


def test_event_spike_and_flood_change_the_relation_to_the_label(world):
    _, _, _, results = world
    by_name = {name: results[day] for day, name in PLAN.items()}

    def value(result, feature, metric):
        return next(s["value"] for s in result["scores"]
                    if s["feature"] == feature and s["slice"] == "all" and s["metric"] == metric)

    assert value(by_name["event_spike"], "scheduled_event", "label_mi_delta") > 0.1
    assert value(by_name["flood"], "occupancy", "label_mi_delta") > 0.1
    normal = next(r for d, r in results.items() if d not in PLAN)
    assert value(normal, "occupancy", "label_mi_delta") < 0.1


def test_reference_statistics_content(world):
    _, _, reference, _ = world
    stats = reference["stats"]
    speed = stats["features"]["avg_speed_kmh"]
    for key in ("count", "nulls", "min", "q1", "median", "q3", "max", "mean", "std", "skewness", "n_modes",
                "edges", "hist", "label_mi", "quantiles"):
        assert key in speed
    assert speed["min"] <= speed["q1"] <= speed["median"] <= speed["q3"] <= speed["max"]
    # quantile bins of the reference: each holds about 1/bins of the values, none is empty
    assert sum(speed["hist"]) == speed["count"] and len(speed["hist"]) == len(speed["edges"]) + 1
    assert max(speed["hist"]) < 2 * speed["count"] / len(speed["hist"]) and min(speed["hist"]) > 0
    road = stats["features"]["road_type"]
    assert road["cardinality"] == 4 and road["top_k"][0][1] == max(road["values"].values())
    assert set(stats["slices"]["values"]) == {"arterial", "highway", "collector", "residential"}
    assert "thresholds" not in reference  # statistics only: thresholds come from the config at each check
    thresholds = D.resolve_thresholds(load_schema(str(SCHEMA)), CONFIG)
    assert thresholds["features"]["forecast_temp_c"]["wasserstein_std"] == 4.0
    assert thresholds["features"]["day_of_week"]["monitor"] is False
    assert reference["values"].num_rows == stats["rows"]  # under the cap: every value stored
    json.dumps(storable(reference))


def test_registry_warehouse_alerts_and_report(world, tmp_path):
    out, _, reference, _ = world
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x")
    root = tmp_path / "registry"
    version = registry.register(root, model, {"metrics": {"auc": 0.8}})
    refs = [_day(out, START + dt.timedelta(days=i))[0] for i in range(14)]
    D.store_reference(registry.FolderRegistry(root), version, refs, SCHEMA, CONFIG)
    stored = D.load_reference(registry.FolderRegistry(root), version)
    assert stored["stats"]["features"] == reference["stats"]["features"]
    assert "reference_stats" in registry.get(root, version)["attachments"]
    assert registry.attachment_path(root, version, D.VALUES_ATTACHMENT).stat().st_mode & 0o222 == 0  # read-only
    day = next(d for d, name in PLAN.items() if name == "weather_model_shift")
    with DuckDBWarehouse(tmp_path / "w.duckdb", "prodml") as warehouse:
        warehouse.ensure_tables()
        result = D.check_drift(stored, _day(out, day), SCHEMA, config=CONFIG, warehouse=warehouse, run_id="r1",
                               data_date=day, model_version=version, report_path=tmp_path / "report.html")
        normal = D.check_drift(stored, _day(out, day - dt.timedelta(days=1)), SCHEMA, config=CONFIG,
                               warehouse=warehouse,
                               run_id="r0", data_date=day - dt.timedelta(days=1), model_version=version)
        rows = warehouse.query("SELECT run_id, count(*) AS n FROM prodml.drift_scores GROUP BY 1").to_pylist()
        counts = {r["run_id"]: r["n"] for r in rows}
        assert counts == {"r1": len(result["scores"]), "r0": len(normal["scores"])}  # always stored
        breached = warehouse.query("SELECT DISTINCT feature FROM prodml.drift_scores "
                                   "WHERE breached AND run_id = 'r1'").column("feature").to_pylist()
        assert breached == ["forecast_temp_c"]
        alerts = warehouse.query("SELECT message FROM prodml.alerts").column("message").to_pylist()
        assert len(alerts) == 1 and "forecast_temp_c" in alerts[0]
    html = Path(result["report"]).read_text()
    assert "forecast_temp_c" in html and "data:image/png;base64," in html and "<table>" in html


def test_event_and_after_features_cannot_be_model_inputs(tmp_path):
    text = TINY.read_text().replace(
        "- {name: items, type: int, kind: numeric, known: ahead",
        "- {name: items, type: int, kind: numeric, known: event")
    bad = tmp_path / "bad_schema.yaml"
    bad.write_text(text)
    with pytest.raises(SchemaError, match="items.*cannot be a model input"):
        load_schema(str(bad))
    schema = load_schema(str(SCHEMA))
    assert all(f.known == "ahead" for f in schema.model_inputs)


def test_cli_on_another_schema(tmp_path, capsys):
    ref = _tiny_csv(tmp_path / "ref.csv", 2000, 1)
    same = _tiny_csv(tmp_path / "same.csv", 800, 2)
    shifted = _tiny_csv(tmp_path / "shifted.csv", 800, 3, basket_scale=60.0, channel_app=0.7)
    saved = tmp_path / "ref.json"
    assert D.main(["--schema", str(TINY), "--reference", str(ref), "--current", str(same),
                   "--save-reference", str(saved)]) == 0
    assert "OK" in capsys.readouterr().out
    assert D.main(["--schema", str(TINY), "--reference", str(saved), "--current", str(shifted),
                   "--report", str(tmp_path / "r.html")]) == 1
    text = capsys.readouterr().out
    assert "basket_eur" in text and "channel" in text and "FAIL" in text
    assert "coupon_code" not in text  # all-NULL optional column: no alarm, no crash
    assert (tmp_path / "r.html").exists()

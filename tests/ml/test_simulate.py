"""The traffic simulator: deterministic, laid out as the pipeline expects, true to the
feature contract, learnable without leaks, and every scenario leaves the trace it claims."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from scipy.optimize import minimize
from scipy.stats import rankdata

from ml.features import load_schema, split_bucket
from ml.simulate import SCENARIOS, default_schema_path, main, make_sensors, simulate

SCHEMA = load_schema(str(default_schema_path()))
AHEAD = [f.name for f in SCHEMA.features if f.known == "ahead"]
START = "2024-03-04"  # a Monday


def run(out, days=2, seed=7, sensors=30, **kwargs) -> dict:
    return simulate(out, START, days, seed, sensors=sensors, **kwargs)


def read(path) -> dict[str, np.ndarray]:
    """A landed csv as {column: 1-D array}; nulls are NaN (numbers) or None (strings)."""
    # Only empty fields are null: pyarrow's defaults would also swallow "n/a".
    options = pacsv.ConvertOptions(column_types={"sensor_id": pa.string(), "date": pa.string()},
                                   null_values=[""], strings_can_be_null=True)
    table = pacsv.read_csv(path, convert_options=options)
    return {name: col.to_numpy(zero_copy_only=False) for name, col in zip(table.column_names,
                                                                          table.columns, strict=True)}


def part(root, table: str, day: str):
    return root / table / f"dt={day}" / "part-00000.csv"


def auc(score, label) -> float:
    """Mann-Whitney AUC from ranks (ties averaged)."""
    ranks = rankdata(score)
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def numeric(values) -> np.ndarray:
    """Floats with nulls imputed by the mean, as the model's transform does."""
    x = np.asarray(values, dtype=float)
    return np.where(np.isnan(x), np.nanmean(x), x)


def as_key(values) -> np.ndarray:
    return np.asarray([str(v) for v in values])


# ------------------------------------------------------------------ determinism and layout


def test_same_arguments_give_identical_bytes_and_a_new_seed_changes_them(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    run(a, forecast_days=1)
    run(b, forecast_days=1)
    run(c, seed=8, forecast_days=1)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert part(a, "landing", START).read_bytes() != part(c, "landing", START).read_bytes()


def test_a_day_and_a_sensor_do_not_depend_on_start_date_or_sensor_count(tmp_path):
    run(tmp_path / "a", days=2, forecast_days=0)
    simulate(tmp_path / "b", "2024-03-05", 1, 7, sensors=30, forecast_days=0)
    assert part(tmp_path / "a", "landing", "2024-03-05").read_bytes() == \
        part(tmp_path / "b", "landing", "2024-03-05").read_bytes()
    small, large = make_sensors(7, 30), make_sensors(7, 60)
    for name, values in small.items():
        np.testing.assert_array_equal(values, large[name][:30])


def test_layout_success_markers_and_ground_truth(tmp_path):
    truth = run(tmp_path.as_uri(), days=2, forecast_days=3)  # a file:// URI works too
    for day in ("2024-03-04", "2024-03-05"):
        folder = tmp_path / "landing" / f"dt={day}"
        assert sorted(p.name for p in folder.iterdir()) == ["_SUCCESS", "part-00000.csv"]
        assert (folder / "_SUCCESS").stat().st_size == 0
    forecast = sorted(p.name for p in (tmp_path / "forecast").iterdir())
    assert forecast == [f"dt=2024-03-{d:02d}" for d in range(4, 9)]  # 2 landed + 3 ahead
    assert all((tmp_path / "forecast" / d / "_SUCCESS").exists() for d in forecast)
    assert not list(tmp_path.rglob("*.tmp"))
    written = json.loads((tmp_path / "ground_truth.json").read_text())
    assert written == truth
    assert (written["seed"], written["sensors"], written["start_date"]) == (7, 30, START)
    assert [d["date"] for d in written["days"]] == ["2024-03-04", "2024-03-05"]
    assert all(d["scenario"] == "normal" and d["features"] == [] for d in written["days"])


def test_landing_and_forecast_follow_the_contract(tmp_path):
    run(tmp_path, days=1, forecast_days=1)
    header = part(tmp_path, "landing", START).read_text().splitlines()[0]
    assert header.split(",") == SCHEMA.columns
    landing = read(part(tmp_path, "landing", START))
    assert len(landing["hour"]) == 30 * 24
    for f in SCHEMA.features:
        values = landing[f.name]
        present = ~np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values])
        assert present.mean() >= f.presence, f.name
        values = values[present]
        if f.vocabulary:
            assert set(values.tolist()) <= set(f.vocabulary), f.name
        if f.range:
            assert f.range[0] <= values.min() and values.max() <= f.range[1], f.name
        if f.pattern:
            assert all(re.fullmatch(f.pattern, v) for v in values), f.name
    assert set(landing["congested"].tolist()) == {0, 1}

    for day in (START, "2024-03-05"):  # a landed day and a day ahead
        header = part(tmp_path, "forecast", day).read_text().splitlines()[0]
        assert header.split(",") == AHEAD
        assert len(read(part(tmp_path, "forecast", day))["hour"]) == 30 * 24
    forecast = read(part(tmp_path, "forecast", START))
    for name in AHEAD:  # what batch prediction scores is what then lands
        np.testing.assert_array_equal(forecast[name], landing[name], err_msg=name)


# ---------------------------------------------------------------- label and learnability


@pytest.fixture(scope="module")
def normal_rows(tmp_path_factory) -> dict[str, np.ndarray]:
    """100 sensors x 3 weekdays of normal data, concatenated."""
    root = tmp_path_factory.mktemp("normal")
    simulate(root, START, 3, 11, sensors=100, forecast_days=0)
    days = [read(part(root, "landing", f"2024-03-0{d}")) for d in (4, 5, 6)]
    return {name: np.concatenate([d[name] for d in days]) for name in days[0]}


def test_label_rate_is_calibrated(normal_rows):
    rate = normal_rows["congested"].mean()
    assert 0.10 <= rate <= 0.20, rate


def single_feature_auc(name: str, values, label) -> float:
    """Numeric: the better direction; categorical: the in-sample rate of each value."""
    if SCHEMA.feature(name).is_numeric:
        a = auc(numeric(values), label)
        return max(a, 1 - a)
    _, index = np.unique(as_key(values), return_inverse=True)
    rate = np.bincount(index, weights=label) / np.bincount(index)
    return auc(rate[index], label)


def test_no_single_ahead_feature_gives_the_label_away(normal_rows):
    label = normal_rows["congested"]
    scores = {f: single_feature_auc(f, normal_rows[f], label) for f in AHEAD if f != "date"}
    assert max(scores.values()) <= 0.9, scores
    assert scores["hour"] > 0.65  # the rush hours carry signal


def design_matrix(rows) -> np.ndarray:
    """One-hot categoricals, standardised numerics, an intercept: the model inputs except the
    per-sensor hash (a new sensor in the eval split has no learned embedding anyway)."""
    blocks = [np.ones((len(rows["hour"]), 1))]
    for f in SCHEMA.model_inputs:
        if f.transform == "hash":
            continue
        if f.is_numeric:
            x = numeric(rows[f.name])
            blocks.append(((x - x.mean()) / (x.std() or 1.0))[:, None])
        else:
            _, index = np.unique(as_key(rows[f.name]), return_inverse=True)
            blocks.append(np.eye(index.max() + 1)[index])
    return np.hstack(blocks)


def test_logistic_regression_on_ahead_features_generalises_to_new_sensors(normal_rows):
    x, y = design_matrix(normal_rows), normal_rows["congested"].astype(float)
    held_out = split_bucket(normal_rows["sensor_id"], 0.3)

    def loss(w):
        z = x[~held_out] @ w
        p = 1 / (1 + np.exp(-z))
        l2 = 1e-3
        value = np.mean(np.logaddexp(0, z) - y[~held_out] * z) + l2 * w @ w / 2
        return value, x[~held_out].T @ (p - y[~held_out]) / len(z) + l2 * w

    w = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 300}).x
    assert auc(x[held_out] @ w, y[held_out]) >= 0.75


# ---------------------------------------------------------------------------- scenarios

DAY_OF = {name: (dt.date(2024, 3, 5) + dt.timedelta(days=i)).isoformat()
          for i, name in enumerate(s for s in SCENARIOS if s != "normal")}


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory):
    """Day 1 normal, then one scenario a day, 40 sensors."""
    root = tmp_path_factory.mktemp("scenarios")
    truth = simulate(root, START, 1 + len(DAY_OF), 5, sensors=40, forecast_days=0,
                     scenarios={day: name for name, day in DAY_OF.items()})
    return root, {d["date"]: d for d in truth["days"]}


@pytest.mark.parametrize("name", sorted(DAY_OF))
def test_ground_truth_records_each_scenario(scenario_run, name):
    entry = scenario_run[1][DAY_OF[name]]
    assert entry["scenario"] == name
    assert entry["features"] and set(entry["features"]) <= set(SCHEMA.columns)
    assert entry["rows_touched_fraction"] >= 0.10
    assert scenario_run[1][START]["scenario"] == "normal"


def landed(scenario_run, name):
    root, truth = scenario_run
    day = DAY_OF[name]
    rows = read(part(root, "landing", day))
    return rows, truth[day]["details"], read(part(root, "forecast", day))


def test_road_closure_reads_zero(scenario_run):
    rows, details, _ = landed(scenario_run, "road_closure")
    zero = (rows["vehicle_count"] == 0) & (rows["avg_speed_kmh"] == 0) & (rows["occupancy"] == 0)
    assert zero.mean() >= 0.10
    assert set(rows["sensor_id"][zero]) == set(details["sensor_ids"])


def test_new_sensors_are_out_of_vocabulary(scenario_run):
    rows, _, _ = landed(scenario_run, "new_sensors")
    known = set(make_sensors(5, 40)["sensor_id"])
    new = ~np.isin(rows["sensor_id"], list(known))
    assert new.mean() >= 0.10
    assert all(re.fullmatch(SCHEMA.feature("sensor_id").pattern, s) for s in rows["sensor_id"])


def test_logging_format_change_breaks_the_format(scenario_run):
    rows, details, _ = landed(scenario_run, "logging_format_change")
    assert "avg_speed_mph" in rows and "avg_speed_kmh" not in rows
    assert details["renamed"] == {"avg_speed_kmh": "avg_speed_mph"}
    assert np.isnan(rows["forecast_temp_c"]).mean() >= 0.2
    assert (rows["vehicle_count"] == "n/a").mean() >= 0.10


def test_weather_model_shift_reports_fahrenheit(scenario_run):
    rows, _, forecast = landed(scenario_run, "weather_model_shift")
    both = ~np.isnan(rows["forecast_temp_c"]) & ~np.isnan(forecast["forecast_temp_c"])
    np.testing.assert_allclose(rows["forecast_temp_c"][both], forecast["forecast_temp_c"][both] * 1.8 + 32,
                               atol=0.11)
    assert np.nanmean(rows["forecast_temp_c"]) - np.nanmean(forecast["forecast_temp_c"]) > 10


def test_event_spike_congests_the_event_sensors(scenario_run):
    rows, details, forecast = landed(scenario_run, "event_spike")
    spiked = np.isin(rows["sensor_id"], details["sensor_ids"]) & np.isin(rows["hour"], details["hours"])
    assert spiked.mean() >= 0.05 and rows["scheduled_event"].mean() > 2 * forecast["scheduled_event"].mean()
    assert rows["congested"][spiked].mean() > 2 * rows["congested"][~spiked].mean()
    assert np.nanmean(rows["vehicle_count"][spiked]) > 1.5 * np.nanmean(rows["vehicle_count"][~spiked])


def test_flood_contaminates_labels_and_freezes_readings(scenario_run):
    rows, details, _ = landed(scenario_run, "flood")
    block = np.isin(rows["sensor_id"], details["sensor_ids"]) & np.isin(rows["hour"], details["hours"])
    assert block.mean() >= 0.10 and rows["congested"][block].all()
    for sensor in details["sensor_ids"]:
        stuck = rows["occupancy"][block & (rows["sensor_id"] == sensor)]
        assert len(np.unique(stuck[~np.isnan(stuck)])) == 1


def test_leaky_feature_copies_the_label(scenario_run):
    rows, _, _ = landed(scenario_run, "leaky_feature")
    np.testing.assert_array_equal(rows["scheduled_event"], rows["congested"])
    assert single_feature_auc("scheduled_event", rows["scheduled_event"], rows["congested"]) > 0.9


# ---------------------------------------------------------------------------------- CLI


def test_cli_writes_the_layout_and_prints_a_line_per_day(tmp_path, capsys):
    truth = main(["--out", str(tmp_path), "--start-date", START, "--days", "2", "--seed", "3",
                  "--sensors", "10", "--forecast-days", "1", "--scenario", "2024-03-05=flood"])
    assert [d["scenario"] for d in truth["days"]] == ["normal", "flood"]
    assert part(tmp_path, "landing", "2024-03-05").exists()
    assert (tmp_path / "forecast" / "dt=2024-03-06" / "_SUCCESS").exists()
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


@pytest.mark.parametrize("scenario", ["2024-03-05=tsunami", "2024-04-01=flood", "flood"])
def test_cli_rejects_a_bad_scenario(tmp_path, capsys, scenario):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--start-date", START, "--days", "2", "--seed", "3",
              "--scenario", scenario])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    if "tsunami" in scenario:
        assert all(name in err for name in SCENARIOS)
    assert not (tmp_path / "landing").exists()

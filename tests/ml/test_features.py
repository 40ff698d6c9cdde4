"""The feature contract, and the proof that training and serving run the same transform."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from ml import features as F


def test_schema_builds_model_inputs_from_known_ahead_features_only(schema):
    inputs = {f.name for f in schema.model_inputs}
    assert {"sensor_id", "hour", "road_type", "forecast_temp_c", "scheduled_event"} <= inputs
    assert all(f.known == "ahead" for f in schema.model_inputs)
    for observed in ("vehicle_count", "avg_speed_kmh", "occupancy", "incident_reports", "congested"):
        assert observed not in inputs
    assert schema.columns[-1] == schema.label == "congested"
    assert schema.split_key == "sensor_id"


def test_a_feature_known_only_after_the_event_cannot_be_a_model_input(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nlabel: {name: y}\nfeatures:\n"
        "  - {name: incidents, type: int, kind: numeric, known: after, transform: normalize}\n")
    with pytest.raises(F.SchemaError, match="incidents.*known only 'after'.*cannot be a model input"):
        F.load_schema(path)


def test_schema_errors_name_the_feature(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nlabel: {name: y}\nfeatures:\n  - {name: x, type: decimal, kind: numeric, known: ahead}\n")
    with pytest.raises(F.SchemaError, match=r"features\[0\]: type must be"):
        F.load_schema(path)


def test_split_is_deterministic_and_by_group():
    keys = np.array([f"S{i:04d}" for i in range(500)] * 3)
    a = F.split_bucket(keys, 0.2)
    assert np.array_equal(a, F.split_bucket(keys, 0.2))
    # every row of one sensor is on the same side
    for key in np.unique(keys)[:50]:
        assert len(set(a[keys == key])) == 1
    assert 0.1 < a.mean() < 0.3


def test_to_model_inputs_types_and_missing_values(schema):
    n = 3
    columns = {f.name: [None] * n for f in schema.model_inputs}
    out = F.to_model_inputs(schema, columns)
    assert out["forecast_temp_c"].dtype == np.float32 and np.isnan(out["forecast_temp_c"]).all()
    assert out["sensor_id"].shape == (n, 1) and out["sensor_id"][0, 0] == ""


def test_training_path_and_serving_path_give_equal_predictions(static_training_run, schema, config):
    """Rows that went through Beam → TFRecord → tf.data parsing, and the same rows read raw from
    the landed CSV and fed to the exported SavedModel, score identically: no training/serving skew."""
    from ml.evaluate import read_eval_examples
    from ml.predict import load_model, score_columns
    from ml.storage import to_path

    run_dir = to_path(static_training_run["run_dir"])
    model = load_model(str(run_dir / "candidate" / "model"))
    tf_columns, _ = read_eval_examples(str(run_dir / "transform" / "eval" / "part-*.tfrecord"), schema)
    training_path = score_columns(model, tf_columns)

    # The same rows, raw from the CSVs the transform read: the eval side of the same split.
    inputs = json.loads((run_dir / "transform" / "summary.json").read_text())["input_files"]
    options = pacsv.ConvertOptions(column_types=F.arrow_types(schema), null_values=[""])
    table = pa.concat_tables([pacsv.read_csv(p, convert_options=options) for p in inputs])
    is_eval = F.split_bucket(table.column("sensor_id").to_pylist(), config["training"]["eval_fraction"])
    raw = table.filter(pa.array(is_eval))
    serving_path = score_columns(model, F.to_model_inputs(schema, {c: raw.column(c) for c in raw.column_names}))

    # Beam shards rows in no particular order: compare the sorted score vectors row for row.
    assert len(training_path) == raw.num_rows > 0
    np.testing.assert_allclose(np.sort(training_path), np.sort(serving_path), rtol=1e-5, atol=1e-6)
    assert np.std(serving_path) > 0.01  # a real model, not a constant
